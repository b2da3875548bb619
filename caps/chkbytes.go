package caps

import "fmt"

// EncodeBytes encodes a whole in-memory plaintext under key and returns the
// n complete shares (header || blocks || trailer) and the read cap. It is
// the simple path for tests and small files; uploads of large files drive
// an Encoder segment by segment instead.
func EncodeBytes(key [16]byte, p Params, plaintext []byte) ([][]byte, CHKCap, error) {
	e, err := NewEncoder(key, p, uint64(len(plaintext)))
	if err != nil {
		return nil, CHKCap{}, err
	}
	l := e.Layout()
	shares := make([][]byte, l.N)
	for i := range shares {
		shares[i] = make([]byte, 0, l.ShareSize())
		shares[i] = append(shares[i], e.ShareHeader(i)...)
	}
	for seg := range l.NumSegments() {
		off := seg * l.SegmentSize
		blocks, err := e.EncodeSegment(seg, plaintext[off:off+l.SegmentLen(seg)])
		if err != nil {
			return nil, CHKCap{}, err
		}
		for i, b := range blocks {
			shares[i] = append(shares[i], b...)
		}
	}
	trailers, c, err := e.Finish()
	if err != nil {
		return nil, CHKCap{}, err
	}
	for i, t := range trailers {
		shares[i] = append(shares[i], t...)
	}
	return shares, c, nil
}

// DecodeBytes checks and decodes complete shares (shares[shnum], nil where
// missing) into the plaintext. Shares that fail a check are skipped; it
// fails only if fewer than k good blocks remain for some segment.
func DecodeBytes(c CHKCap, shares [][]byte) ([]byte, error) {
	d := NewDecoder(c)
	type good struct {
		l     Layout
		data  []byte
		proof *ShareProof
	}
	var ok []good
	var lastErr error
	for shnum, sh := range shares {
		if sh == nil {
			continue
		}
		if len(sh) < ShareHeaderSize {
			lastErr = fmt.Errorf("share %d: %d bytes, shorter than a header: %w", shnum, len(sh), ErrFormat)
			continue
		}
		l, err := d.ParseHeader(shnum, sh[:ShareHeaderSize])
		if err != nil {
			lastErr = err
			continue
		}
		if int64(len(sh)) != l.ShareSize() {
			lastErr = fmt.Errorf("share %d: want %d bytes, have %d: %w", shnum, l.ShareSize(), len(sh), ErrFormat)
			continue
		}
		proof, err := d.VerifyTrailer(shnum, l, sh[l.TrailerOffset():])
		if err != nil {
			lastErr = err
			continue
		}
		ok = append(ok, good{l, sh, proof})
	}
	if len(ok) < c.K {
		return nil, fmt.Errorf("decode: %d good shares of %d needed (last error: %v): %w", len(ok), c.K, lastErr, ErrIntegrity)
	}
	l := ok[0].l
	out := make([]byte, 0, c.Size)
	blocks := make([][]byte, c.N)
	for seg := range l.NumSegments() {
		clear(blocks)
		have := 0
		for _, g := range ok {
			off := g.l.BlockOffset(seg)
			b := g.data[off : off+int64(g.l.BlockSize(seg))]
			if err := g.proof.CheckBlock(seg, b); err != nil {
				lastErr = err
				continue
			}
			blocks[g.proof.Shnum()] = b
			if have++; have == c.K {
				break
			}
		}
		pt, err := d.DecodeSegment(l, seg, blocks)
		if err != nil {
			return nil, fmt.Errorf("decode (last share error: %v): %w", lastErr, err)
		}
		out = append(out, pt...)
	}
	return out, nil
}
