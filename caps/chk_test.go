package caps

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// testData returns n deterministic pseudo-random bytes.
func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testKey(seed byte) [16]byte {
	var k [16]byte
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func smallParams(k, n, seg int) Params { return Params{K: k, Happy: k, N: n, SegmentSize: seg} }

// encodeShares encodes data and fails the test on error.
func encodeShares(t testing.TB, key [16]byte, p Params, data []byte) ([][]byte, CHKCap) {
	t.Helper()
	shares, c, err := EncodeBytes(key, p, data)
	if err != nil {
		t.Fatalf("encode %d bytes: %v", len(data), err)
	}
	return shares, c
}

func TestRoundTrip(t *testing.T) {
	const seg = 4096
	sizes := []int{0, 1, 55, 56, seg - 1, seg, seg + 1, 5*seg + 17, 8 * seg}
	params := []Params{smallParams(3, 10, seg), smallParams(1, 1, seg), smallParams(2, 2, seg), smallParams(1, 3, seg), smallParams(7, 255, seg)}
	for _, p := range params {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("k%d-n%d-size%d", p.K, p.N, size), func(t *testing.T) {
				data := testData(size, uint64(size))
				shares, c := encodeShares(t, testKey(1), p, data)
				if c.Size != uint64(size) || c.K != p.K || c.N != p.N {
					t.Fatalf("cap k=%d n=%d size=%d, want %d %d %d", c.K, c.N, c.Size, p.K, p.N, size)
				}
				l := Layout{K: p.K, N: p.N, Size: uint64(size), SegmentSize: seg}
				for i, sh := range shares {
					if int64(len(sh)) != l.ShareSize() {
						t.Fatalf("share %d: %d bytes, layout says %d", i, len(sh), l.ShareSize())
					}
				}
				got, err := DecodeBytes(c, shares)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("decoded %d bytes differ from %d encoded", len(got), len(data))
				}
				// Only the last k shares: forces reconstruction when n > k.
				only := make([][]byte, p.N)
				copy(only[p.N-p.K:], shares[p.N-p.K:])
				got, err = DecodeBytes(c, only)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("decode from last k shares: err=%v equal=%v", err, bytes.Equal(got, data))
				}
			})
		}
	}
}

func TestRoundTripDefaultParams(t *testing.T) {
	p := DefaultParams()
	for _, size := range []int{p.SegmentSize - 1, p.SegmentSize, p.SegmentSize + 1} {
		data := testData(size, 7)
		shares, c := encodeShares(t, testKey(2), p, data)
		got, err := DecodeBytes(c, shares)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: err=%v equal=%v", size, err, bytes.Equal(got, data))
		}
	}
}

// TestEverySubset decodes a small file from every subset of exactly k shares.
func TestEverySubset(t *testing.T) {
	p := smallParams(3, 6, 64)
	data := testData(200, 3) // 4 segments, the last short
	shares, c := encodeShares(t, testKey(3), p, data)
	count := 0
	for mask := 0; mask < 1<<p.N; mask++ {
		if popcount(mask) != p.K {
			continue
		}
		sub := make([][]byte, p.N)
		for i := range p.N {
			if mask&(1<<i) != 0 {
				sub[i] = shares[i]
			}
		}
		got, err := DecodeBytes(c, sub)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("subset %06b: err=%v equal=%v", mask, err, bytes.Equal(got, data))
		}
		count++
	}
	if count != 20 { // C(6,3)
		t.Fatalf("tried %d subsets, want 20", count)
	}
	// k-1 shares must fail, not invent data.
	sub := make([][]byte, p.N)
	copy(sub[:p.K-1], shares)
	if _, err := DecodeBytes(c, sub); err == nil {
		t.Fatal("decoded from k-1 shares")
	}
}

func popcount(x int) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestBitFlip flips every bit of every share in turn (a small file) and
// checks the flip is caught by the step responsible for that region and
// never yields wrong plaintext.
func TestBitFlip(t *testing.T) {
	p := smallParams(2, 4, 64)
	data := testData(150, 4) // 3 segments
	shares, c := encodeShares(t, testKey(4), p, data)
	d := NewDecoder(c)
	l := Layout{K: 2, N: 4, Size: 150, SegmentSize: 64}
	for sh := range shares {
		for bit := 0; bit < 8*len(shares[sh]); bit++ {
			bad := bytes.Clone(shares[sh])
			bad[bit/8] ^= 1 << (bit % 8)
			caught := checkShare(d, sh, bad, l)
			if caught == nil {
				t.Fatalf("share %d bit %d: flip not caught", sh, bit)
			}
			// And whole-file decoding with the bad share among only k
			// shares must fail or (if another share saved it) be correct.
			sub := make([][]byte, p.N)
			sub[sh] = bad
			sub[(sh+1)%p.N] = shares[(sh+1)%p.N]
			got, err := DecodeBytes(c, sub)
			if err == nil {
				t.Fatalf("share %d bit %d: decoded %d bytes from a corrupt share", sh, bit, len(got))
			}
			if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrFormat) {
				t.Fatalf("share %d bit %d: error %v wraps neither ErrIntegrity nor ErrFormat", sh, bit, err)
			}
		}
	}
}

// checkShare runs every check on one complete share and returns the first
// error.
func checkShare(d *Decoder, sh int, share []byte, want Layout) error {
	if len(share) < ShareHeaderSize {
		return ErrFormat
	}
	l, err := d.ParseHeader(sh, share[:ShareHeaderSize])
	if err != nil {
		return err
	}
	if l != want {
		return fmt.Errorf("layout %+v, want %+v", l, want)
	}
	proof, err := d.VerifyTrailer(sh, l, share[l.TrailerOffset():])
	if err != nil {
		return err
	}
	for seg := range l.NumSegments() {
		off := l.BlockOffset(seg)
		if err := proof.CheckBlock(seg, share[off:off+int64(l.BlockSize(seg))]); err != nil {
			return err
		}
	}
	return nil
}

// TestDecodeUncheckedBlocks feeds DecodeSegment corrupted blocks that were
// never checked: the AEAD must refuse them.
func TestDecodeUncheckedBlocks(t *testing.T) {
	p := smallParams(3, 5, 128)
	data := testData(300, 5)
	e, err := NewEncoder(testKey(5), p, uint64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	l := e.Layout()
	var all [][][]byte
	for seg := range l.NumSegments() {
		off := seg * l.SegmentSize
		b, err := e.EncodeSegment(seg, data[off:off+l.SegmentLen(seg)])
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b)
	}
	trailers, c, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder(c)
	if _, err := d.DecodeSegment(l, 0, all[0]); err == nil {
		t.Fatal("DecodeSegment before any VerifyTrailer succeeded")
	}
	if _, err := d.VerifyTrailer(4, l, trailers[4]); err != nil {
		t.Fatal(err)
	}
	bad := l
	bad.SegmentSize++
	if _, err := d.DecodeSegment(bad, 0, all[0]); err == nil {
		t.Fatal("DecodeSegment with an unverified layout succeeded")
	}
	for seg, blocks := range all {
		for sh := range blocks {
			for bit := 0; bit < 8*len(blocks[sh]); bit += 3 {
				// data shares only (join path) and with parity (reconstruct path)
				for _, useParity := range []bool{false, true} {
					in := make([][]byte, p.N)
					copy(in, blocks)
					if useParity {
						in[(sh+1)%p.K] = nil
					}
					if in[sh] == nil {
						continue
					}
					bad := bytes.Clone(in[sh])
					bad[bit/8] ^= 1 << (bit % 8)
					in[sh] = bad
					pt, err := d.DecodeSegment(l, seg, in)
					if sh >= p.K && !useParity {
						// unused parity block: must decode correctly
						if err != nil {
							t.Fatalf("seg %d: unused corrupt parity %d broke decoding: %v", seg, sh, err)
						}
						continue
					}
					if err == nil {
						if !useParity || !bytes.Equal(pt, data[seg*l.SegmentSize:seg*l.SegmentSize+len(pt)]) {
							t.Fatalf("seg %d share %d bit %d parity=%v: corrupt block decoded", seg, sh, bit, useParity)
						}
						continue // the corrupt block was not among those used
					}
					if !errors.Is(err, ErrIntegrity) {
						t.Fatalf("seg %d share %d: error %v does not wrap ErrIntegrity", seg, sh, err)
					}
				}
			}
		}
	}
}

func TestEncoderMisuse(t *testing.T) {
	p := smallParams(2, 3, 64)
	e, err := NewEncoder(testKey(6), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EncodeSegment(0, make([]byte, 63)); err == nil {
		t.Error("short segment accepted")
	}
	if _, err := e.EncodeSegment(2, make([]byte, 36)); err == nil {
		t.Error("segment beyond the end accepted")
	}
	if _, err := e.EncodeSegment(0, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.EncodeSegment(0, make([]byte, 64)); err == nil {
		t.Error("segment encoded twice")
	}
	if _, _, err := e.Finish(); err == nil {
		t.Error("Finish with a missing segment succeeded")
	}
	for _, bad := range []Params{
		{K: 0, Happy: 1, N: 1, SegmentSize: 64}, {K: 3, Happy: 2, N: 10, SegmentSize: 64},
		{K: 3, Happy: 7, N: 256, SegmentSize: 64}, {K: 3, Happy: 7, N: 10, SegmentSize: 63},
		{K: 3, Happy: 7, N: 10, SegmentSize: MaxSegmentSize + 1},
	} {
		if _, err := NewEncoder(testKey(6), bad, 10); !errors.Is(err, ErrFormat) {
			t.Errorf("params %+v: err=%v, want ErrFormat", bad, err)
		}
	}
	if _, err := NewEncoder(testKey(6), DefaultParams(), MaxFileSize+1); err == nil {
		t.Error("size over MaxFileSize accepted")
	}
}

// TestConcurrentEncode encodes segments from many goroutines, out of order,
// and checks the result equals a sequential encoding.
func TestConcurrentEncode(t *testing.T) {
	p := smallParams(3, 10, 1024)
	data := testData(37*1024+5, 8)
	want, wantCap := encodeShares(t, testKey(8), p, data)

	e, err := NewEncoder(testKey(8), p, uint64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	l := e.Layout()
	blocks := make([][][]byte, l.NumSegments())
	var wg sync.WaitGroup
	errs := make(chan error, l.NumSegments())
	for w := range 8 {
		wg.Go(func() {
			for seg := l.NumSegments() - 1 - w; seg >= 0; seg -= 8 {
				off := seg * l.SegmentSize
				b, err := e.EncodeSegment(seg, data[off:off+l.SegmentLen(seg)])
				if err != nil {
					errs <- err
					return
				}
				blocks[seg] = b
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	trailers, c, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if c != wantCap {
		t.Fatalf("concurrent cap %s differs from sequential %s", c.String(), wantCap.String())
	}
	for sh := range l.N {
		got := e.ShareHeader(sh)
		for seg := range blocks {
			got = append(got, blocks[seg][sh]...)
		}
		got = append(got, trailers[sh]...)
		if !bytes.Equal(got, want[sh]) {
			t.Fatalf("share %d differs between concurrent and sequential encoding", sh)
		}
	}
}

func TestKeyHasher(t *testing.T) {
	p := DefaultParams()
	data := testData(1000, 9)
	key := func(secret []byte, p Params, chunks ...[]byte) [16]byte {
		h := NewKeyHasher(secret, p)
		for _, c := range chunks {
			h.Write(c)
		}
		return h.Key()
	}
	base := key([]byte("secret"), p, data)
	if got := key([]byte("secret"), p, data[:300], data[300:]); got != base {
		t.Error("key depends on how the plaintext is chunked")
	}
	if got := key([]byte("secret2"), p, data); got == base {
		t.Error("key does not depend on the secret")
	}
	p2 := p
	p2.SegmentSize = 1 << 17
	if got := key([]byte("secret"), p2, data); got == base {
		t.Error("key does not depend on the segment size")
	}
	p3 := p
	p3.Happy = 5
	if got := key([]byte("secret"), p3, data); got != base {
		t.Error("key depends on happy, which does not change the shares")
	}
	d2 := bytes.Clone(data)
	d2[999] ^= 1
	if got := key([]byte("secret"), p, d2); got == base {
		t.Error("key does not depend on the content")
	}
	h := NewKeyHasher([]byte("secret"), p)
	h.Write(data)
	if k1, k2 := h.Key(), h.Key(); k1 != k2 {
		t.Error("Key changes the hasher's state")
	}
}

func TestLayout(t *testing.T) {
	// 1 MiB file, 3-of-10, 1 MiB segments: the worked example in docs/spec/chk.md.
	l := Layout{K: 3, N: 10, Size: 1 << 20, SegmentSize: 1 << 20}
	if l.NumSegments() != 1 || l.BlockSize(0) != (1<<20+16+2)/3 {
		t.Fatalf("segments=%d block=%d", l.NumSegments(), l.BlockSize(0))
	}
	if got, want := l.TrailerSize(), 2*32+4*32+83; got != want {
		t.Fatalf("trailer %d, want %d", got, want)
	}
	if got, want := l.ShareSize(), int64(ShareHeaderSize+349531+275); got != want {
		t.Fatalf("share size %d, want %d", got, want)
	}
	// 1 GiB, 3-of-10: 1024 segments.
	g := Layout{K: 3, N: 10, Size: 1 << 30, SegmentSize: 1 << 20}
	if g.NumSegments() != 1024 || g.TrailerOffset() != int64(ShareHeaderSize)+1024*349531 || g.ShareSize() != 357985511 {
		t.Fatalf("1 GiB: segments=%d trailer at %d share %d", g.NumSegments(), g.TrailerOffset(), g.ShareSize())
	}
	e := Layout{K: 3, N: 10, Size: 0, SegmentSize: 1 << 20}
	if e.NumSegments() != 1 || e.SegmentLen(0) != 0 || e.BlockSize(0) != 6 {
		t.Fatalf("empty: segments=%d len=%d block=%d", e.NumSegments(), e.SegmentLen(0), e.BlockSize(0))
	}
}

// TestInconsistentUploader: a malicious uploader (who holds the key) makes
// data shares from one plaintext and parity shares from another, with
// trailers that hash-check. Readers using different shares must not see
// different files: the segment hashes let only the data shares' ciphertext
// through.
func TestInconsistentUploader(t *testing.T) {
	p := smallParams(3, 6, 64)
	a, b := testData(100, 20), testData(100, 21)
	key := testKey(20)
	encode := func(data []byte) (*Encoder, [][][]byte) {
		e, err := NewEncoder(key, p, uint64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var out [][][]byte
		for seg := range e.l.NumSegments() {
			off := seg * p.SegmentSize
			blk, err := e.EncodeSegment(seg, data[off:off+e.l.SegmentLen(seg)])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, blk)
		}
		return e, out
	}
	ea, blocksA := encode(a)
	eb, blocksB := encode(b)
	l := ea.l
	// Shares 0..2 from a, 3..5 from b.
	hashes := make([][32]byte, len(ea.hashes))
	blocks := make([][][]byte, l.NumSegments())
	for seg := range blocks {
		blocks[seg] = make([][]byte, l.N)
		for sh := range l.N {
			src, bl := ea, blocksA
			if sh >= l.K {
				src, bl = eb, blocksB
			}
			hashes[seg*l.N+sh] = src.hashes[seg*l.N+sh]
			blocks[seg][sh] = bl[seg][sh]
		}
	}
	segHashes := make([][32]byte, l.NumSegments())
	for seg := range segHashes {
		segHashes[seg] = segmentHash(hashes[seg*l.N : seg*l.N+l.K])
	}
	trailers, ueb := buildTrailers(l, hashes, segHashes)
	c := CHKCap{Key: key, Root: uebRoot(ueb), K: l.K, N: l.N, Size: l.Size}
	d := NewDecoder(c)
	for sh := range l.N {
		proof, err := d.VerifyTrailer(sh, l, trailers[sh])
		if err != nil {
			t.Fatalf("forged trailer %d does not verify (test setup): %v", sh, err)
		}
		for seg := range blocks {
			if err := proof.CheckBlock(seg, blocks[seg][sh]); err != nil {
				t.Fatalf("forged block %d/%d does not check (test setup): %v", sh, seg, err)
			}
		}
	}
	for seg := range blocks {
		want := a[seg*p.SegmentSize : seg*p.SegmentSize+l.SegmentLen(seg)]
		got, err := d.DecodeSegment(l, seg, blocks[seg][:l.K])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("segment %d from data shares: err=%v", seg, err)
		}
		parity := make([][]byte, l.N)
		copy(parity[l.K:], blocks[seg][l.K:])
		if got, err := d.DecodeSegment(l, seg, parity); err == nil {
			t.Fatalf("segment %d from parity shares decoded to other plaintext (equal to b: %v)",
				seg, bytes.Equal(got, b[seg*p.SegmentSize:seg*p.SegmentSize+len(got)]))
		} else if !errors.Is(err, ErrIntegrity) {
			t.Fatalf("segment %d: %v does not wrap ErrIntegrity", seg, err)
		}
	}
}

// TestLayoutConsistent checks, over many parameter sets, that blocks tile the
// share exactly and that the sizes agree with a real encoding.
func TestLayoutConsistent(t *testing.T) {
	for _, k := range []int{1, 2, 3, 7} {
		for _, n := range []int{k, k + 1, 10, 255} {
			if n < k {
				continue
			}
			for _, seg := range []int{64, 100, 4096} {
				for _, size := range []uint64{0, 1, 63, 64, 65, 1000, 3*4096 + 1} {
					l := Layout{K: k, N: n, Size: size, SegmentSize: seg}
					if err := l.check(); err != nil {
						t.Fatalf("%+v: %v", l, err)
					}
					total := 0
					off := int64(ShareHeaderSize)
					for s := range l.NumSegments() {
						if l.BlockOffset(s) != off {
							t.Fatalf("%+v: segment %d at %d, want %d", l, s, l.BlockOffset(s), off)
						}
						if l.BlockSize(s)*k < l.SegmentLen(s)+16 || (l.BlockSize(s)-1)*k >= l.SegmentLen(s)+16 {
							t.Fatalf("%+v: block size %d for segment of %d", l, l.BlockSize(s), l.SegmentLen(s))
						}
						off += int64(l.BlockSize(s))
						total += l.SegmentLen(s)
					}
					if uint64(total) != size || l.TrailerOffset() != off || l.ShareSize() != off+int64(l.TrailerSize()) {
						t.Fatalf("%+v: segments cover %d bytes, trailer at %d (want %d)", l, total, l.TrailerOffset(), off)
					}
				}
			}
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	p := smallParams(3, 5, 64)
	shares, c := encodeShares(t, testKey(30), p, testData(200, 30))
	v := NewVerifier(c.VerifyCap())
	good := shares[2][:ShareHeaderSize]
	if l, err := v.ParseHeader(2, good); err != nil || l != (Layout{K: 3, N: 5, Size: 200, SegmentSize: 64}) {
		t.Fatalf("good header: %+v %v", l, err)
	}
	mod := func(f func(h []byte)) []byte {
		h := bytes.Clone(good)
		f(h)
		return h
	}
	cases := []struct {
		name  string
		shnum int
		hdr   []byte
		want  string
	}{
		{"short", 2, good[:19], "want 20 bytes, have 19"},
		{"magic", 2, mod(func(h []byte) { h[0] = 'X' }), "want magic"},
		{"version", 2, mod(func(h []byte) { h[4] = 2 }), "want version 1, have 2"},
		{"shnum", 3, good, "claims share number 2"},
		{"k", 2, mod(func(h []byte) { h[6] = 2 }), "cap has k=3"},
		{"size", 2, mod(func(h []byte) { h[19] ^= 1 }), "cap has k=3 n=5 size=200"},
		{"segsize small", 2, mod(func(h []byte) { h[11] = 63 }), "want segment size in [64"},
		{"segsize huge", 2, mod(func(h []byte) { h[8] = 0xff }), "want segment size in"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.ParseHeader(tc.shnum, tc.hdr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// A header claiming a different (valid) segment size passes ParseHeader
	// but not VerifyTrailer.
	l, err := v.ParseHeader(2, mod(func(h []byte) { h[11] = 128 }))
	if err != nil {
		t.Fatal(err)
	}
	orig := Layout{K: 3, N: 5, Size: 200, SegmentSize: 64}
	tr := shares[2][orig.TrailerOffset():]
	if l.TrailerSize() == len(tr) {
		t.Fatal("test needs layouts with different trailer sizes")
	}
	if _, err := v.VerifyTrailer(2, l, shares[2][len(shares[2])-l.TrailerSize():]); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("trailer under a forged segment size: %v", err)
	}
}
