package caps

import (
	"bytes"
	"errors"
	"testing"
)

// rebuilderFor verifies share 0's trailer with a keyless decoder and
// returns a Rebuilder for fuzzFile.
func rebuilderFor(t testing.TB) *Rebuilder {
	t.Helper()
	ff := &fuzzFile
	d := NewKeylessDecoder(ff.cap.VerifyCap())
	sh := ff.shares[0]
	if _, err := d.VerifyTrailer(0, ff.l, sh[ff.l.TrailerOffset():]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DecodeSegment(ff.l, 0, [][]byte{sh[ff.l.BlockOffset(0) : ff.l.BlockOffset(0)+int64(ff.l.BlockSize(0))]}); !errors.Is(err, ErrFormat) {
		t.Fatalf("keyless DecodeSegment: %v, want an error", err) // one block of three, and no key
	}
	rb, err := d.NewRebuilder()
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// segBlocks cuts the blocks of seg from the shares listed in have.
func segBlocks(seg int, have []int) [][]byte {
	ff := &fuzzFile
	off, bs := ff.l.BlockOffset(seg), int64(ff.l.BlockSize(seg))
	blocks := make([][]byte, ff.l.N)
	for _, sh := range have {
		blocks[sh] = bytes.Clone(ff.shares[sh][off : off+bs])
	}
	return blocks
}

func TestRebuilderReproducesShares(t *testing.T) {
	ff := &fuzzFile
	for _, have := range [][]int{{0, 1, 2}, {2, 3, 4}, {0, 3, 4}, {1, 2, 3, 4}} {
		rb := rebuilderFor(t)
		rebuilt := make([][]byte, ff.l.N)
		for sh := range rebuilt {
			rebuilt[sh] = rb.ShareHeader(sh)
		}
		for seg := range ff.l.NumSegments() {
			all, err := rb.Rebuild(seg, segBlocks(seg, have))
			if err != nil {
				t.Fatalf("from %v: %v", have, err)
			}
			for sh, b := range all {
				rebuilt[sh] = append(rebuilt[sh], b...)
			}
		}
		trailers, err := rb.Finish()
		if err != nil {
			t.Fatal(err)
		}
		for sh := range rebuilt {
			if !bytes.Equal(append(rebuilt[sh], trailers[sh]...), ff.shares[sh]) {
				t.Fatalf("from %v: share %d differs from the uploaded one", have, sh)
			}
		}
	}
}

// FuzzRebuild: whatever blocks a server sends, Rebuild returns the genuine
// blocks of every share or an error.
func FuzzRebuild(f *testing.F) {
	f.Add(uint8(0), uint8(0b00111), []byte{})
	f.Add(uint8(1), uint8(0b11100), []byte{1, 2, 3})
	f.Add(uint8(2), uint8(0b10101), bytes.Repeat([]byte{0}, 30))
	f.Fuzz(func(t *testing.T, seg8, mask uint8, forged []byte) {
		ff := &fuzzFile
		seg := int(seg8) % ff.l.NumSegments()
		var have []int
		for sh := range ff.l.N {
			if mask&(1<<sh) != 0 {
				have = append(have, sh)
			}
		}
		blocks := segBlocks(seg, have)
		if len(have) > 0 {
			blocks[have[0]] = forged // one server lies
		}
		rb := rebuilderFor(t)
		all, err := rb.Rebuild(seg, blocks)
		if err != nil {
			return
		}
		off, bs := ff.l.BlockOffset(seg), int64(ff.l.BlockSize(seg))
		for sh, b := range all {
			if !bytes.Equal(b, ff.shares[sh][off:off+bs]) {
				t.Fatalf("segment %d: rebuilt block of share %d is not the genuine one", seg, sh)
			}
		}
	})
}
