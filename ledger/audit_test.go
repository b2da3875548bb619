package ledger

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sphere-grid/sphere/caps"
)

func TestAudit(t *testing.T) {
	data := make([]byte, 10000)
	rand.Read(data)
	p := caps.Params{K: 3, Happy: 5, N: 6, SegmentSize: 1024}
	shares, c, err := caps.EncodeBytes([16]byte{7}, p, data)
	if err != nil {
		t.Fatal(err)
	}
	vc := c.VerifyCap()
	answer := func(ch Challenge, share []byte) (hdr, trailer, block []byte) {
		l, err := caps.NewVerifier(vc).ParseHeader(ch.Shnum, share[:caps.ShareHeaderSize])
		if err != nil {
			t.Fatal(err)
		}
		bo, bl, to, tl := ch.Ranges(l)
		return share[:caps.ShareHeaderSize], share[to : to+int64(tl)], share[bo : bo+int64(bl)]
	}
	segsHit := map[uint64]bool{}
	for range 40 {
		ch, err := NewChallenge(rand.Reader, vc, 4)
		if err != nil {
			t.Fatal(err)
		}
		h, tr, b := answer(ch, shares[4])
		if err := CheckAudit(vc, ch, h, tr, b); err != nil {
			t.Fatalf("genuine share failed: %v", err)
		}
		segsHit[ch.Pick%10] = true
		// A storer that kept another share, or flipped a bit, fails.
		_, _, other := answer(Challenge{SI: ch.SI, Shnum: 5, Pick: ch.Pick}, shares[5])
		if err := CheckAudit(vc, ch, h, tr, other); !errors.Is(err, caps.ErrIntegrity) {
			t.Fatalf("block of another share passed: %v", err)
		}
		bad := append([]byte(nil), b...)
		bad[len(bad)/2] ^= 1
		if err := CheckAudit(vc, ch, h, tr, bad); !errors.Is(err, caps.ErrIntegrity) {
			t.Fatalf("flipped block passed: %v", err)
		}
		if err := CheckAudit(vc, ch, h, tr[:len(tr)-1], b); err == nil {
			t.Fatal("short trailer passed")
		}
	}
	if len(segsHit) < 3 {
		t.Fatalf("challenges hit only %d segments", len(segsHit))
	}
}
