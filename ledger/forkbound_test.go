package ledger

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// forkOf is a valid fork proof convicting k.
func forkOf(t *testing.T, k, other []byte) *ForkProof {
	t.Helper()
	a, b := testKey(k[0]), testKey(other[0])
	e1, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 0)[3])
	e2, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 1)[2])
	p, err := NewForkProof(e1.Encode(), e2.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestForkProofsBounded: a flood of valid fork proofs (each one costs a
// hostile peer only a throwaway identity) fills the store only up to its
// bound; a proof already held is still recognised, and the bound holds
// after a reopen.
func TestForkProofsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	opt := Options{Now: func() time.Time { return t0.Add(time.Hour) }, MaxForkProofs: 3}
	s, err := Open(path, testKey(1), opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range byte(3) {
		if isNew, err := s.AddForkProof(forkOf(t, []byte{10 + i}, []byte{2})); err != nil || !isNew {
			t.Fatalf("proof %d: new %v, %v", i, isNew, err)
		}
	}
	if isNew, err := s.AddForkProof(forkOf(t, []byte{10}, []byte{2})); err != nil || isNew {
		t.Fatalf("a proof held again: new %v, %v", isNew, err)
	}
	for i := range byte(20) {
		if isNew, err := s.AddForkProof(forkOf(t, []byte{20 + i}, []byte{2})); !errors.Is(err, ErrTooManyForkProofs) || isNew {
			t.Fatalf("proof over the bound: new %v, %v", isNew, err)
		}
	}
	s.Close()
	if s, err = Open(path, testKey(1), opt); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AddForkProof(forkOf(t, []byte{50}, []byte{2})); !errors.Is(err, ErrTooManyForkProofs) {
		t.Fatalf("after reopen: %v", err)
	}
	if ps, err := s.ForkProofs(); err != nil || len(ps) != 3 {
		t.Fatalf("%d proofs held, want 3 (%v)", len(ps), err)
	}
}
