package caps

import (
	"bytes"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts prints back to the
// same string (there is one canonical form per cap).
func FuzzParse(f *testing.F) {
	c := sampleCHK()
	for _, s := range []string{
		"", "sphere:", "sphere:lit:", "sphere:lit:mzxw6ytb", c.String(), c.VerifyCap().String(),
		"sphere:chk:a:b:3:10:5", "sphere:chk-verify::::::", "sphere:dir-rw:abc", "URI:CHK:x:y:3:10:5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("Parse(%q) accepted, prints back as %q", s, c.String())
		}
		again, err := Parse(c.String())
		if err != nil || again.String() != s {
			t.Fatalf("reparse of %q: %v", s, err)
		}
	})
}

// fuzzFile is the genuine file FuzzShare forges shares of: 3-of-5, three
// segments of 64 bytes (the last short).
var fuzzFile = struct {
	data   []byte
	shares [][]byte
	cap    CHKCap
	l      Layout
}{}

func init() {
	p := smallParams(3, 5, 64)
	fuzzFile.data = testData(150, 11)
	var err error
	fuzzFile.shares, fuzzFile.cap, err = EncodeBytes(testKey(11), p, fuzzFile.data)
	if err != nil {
		panic(err)
	}
	fuzzFile.l = Layout{K: 3, N: 5, Size: 150, SegmentSize: 64}
}

// FuzzShare feeds arbitrary bytes as share shnum of a known file through
// ParseHeader, VerifyTrailer, CheckBlock and DecodeSegment. Nothing may
// panic, every check that passes must have been given the genuine bytes, and
// DecodeSegment (even on unchecked blocks) may only ever return the genuine
// plaintext.
func FuzzShare(f *testing.F) {
	for i, sh := range fuzzFile.shares {
		f.Add(uint8(i), sh)
		bad := bytes.Clone(sh)
		bad[len(bad)/2] ^= 0x10
		f.Add(uint8(i), bad)
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(200), fuzzFile.shares[0][:ShareHeaderSize])
	f.Fuzz(func(t *testing.T, shnum8 uint8, share []byte) {
		ff := &fuzzFile
		shnum := int(shnum8) % 8 // include numbers beyond n
		d := NewDecoder(ff.cap)
		genuine := shnum < ff.l.N && bytes.Equal(share, ff.shares[shnum])

		// DecodeSegment on unchecked blocks cut from the fuzzed share, with
		// genuine blocks of other shares: never wrong plaintext.
		for seg := range ff.l.NumSegments() {
			blocks := make([][]byte, ff.l.N)
			off := ff.l.BlockOffset(seg)
			bs := int64(ff.l.BlockSize(seg))
			if shnum < ff.l.N && int64(len(share)) >= off+bs {
				blocks[shnum] = share[off : off+bs]
			}
			for i := 0; i < ff.l.N && countNonNil(blocks) < ff.l.K; i++ {
				if blocks[i] == nil && i != (shnum+1)%ff.l.N {
					blocks[i] = ff.shares[i][off : off+bs]
				}
			}
			pt, err := d.DecodeSegment(ff.l, seg, blocks)
			want := ff.data[seg*ff.l.SegmentSize : seg*ff.l.SegmentSize+ff.l.SegmentLen(seg)]
			if err == nil && !bytes.Equal(pt, want) {
				t.Fatalf("segment %d decoded to wrong plaintext", seg)
			}
		}

		if len(share) < ShareHeaderSize {
			return
		}
		l, err := d.ParseHeader(shnum, share[:ShareHeaderSize])
		if err != nil {
			return
		}
		if l != ff.l {
			// A header claiming another segment size may pass ParseHeader;
			// VerifyTrailer must then refuse.
			if int64(len(share)) >= l.ShareSize() {
				if _, err := d.VerifyTrailer(shnum, l, share[l.TrailerOffset():l.ShareSize()]); err == nil {
					t.Fatalf("forged layout %+v verified", l)
				}
			}
			return
		}
		if int64(len(share)) < l.ShareSize() {
			return
		}
		proof, err := d.VerifyTrailer(shnum, l, share[l.TrailerOffset():l.ShareSize()])
		if err != nil {
			return
		}
		allOK := true
		for seg := range l.NumSegments() {
			off := l.BlockOffset(seg)
			if proof.CheckBlock(seg, share[off:off+int64(l.BlockSize(seg))]) != nil {
				allOK = false
			}
		}
		if allOK && !genuine && !bytes.Equal(share[:l.ShareSize()], ff.shares[shnum]) {
			t.Fatalf("forged share %d passed every check", shnum)
		}
	})
}

func countNonNil(b [][]byte) int {
	n := 0
	for _, x := range b {
		if x != nil {
			n++
		}
	}
	return n
}
