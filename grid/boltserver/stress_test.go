package boltserver_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// Writers, readers, cancellers and sweeps race on a few storage indexes.
// Every successful read must return the one content a share can have, and
// the store's invariants must hold at the end (run with -race).
func TestStressMixed(t *testing.T) {
	clk := gridtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := open(t, fastDir(t), boltserver.Options{Now: clk.Now, OpenFiles: 4})
	sis := []caps.StorageIndex{{1}, {2}, {3}}
	content := func(si caps.StorageIndex, shnum int) []byte {
		return gridtest.Data(uint64(si[0])<<8|uint64(shnum), 1000+int(si[0])*100+shnum)
	}
	ops := 150
	if testing.Short() {
		ops = 30
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			ctx := t.Context()
			for range ops {
				si, shnum := sis[r.IntN(len(sis))], r.IntN(3)
				l := gridtest.NewLease(string(rune('a'+r.IntN(2))), clk.Now().Add(time.Duration(r.IntN(120))*time.Minute))
				switch r.IntN(6) {
				case 0, 1:
					d := content(si, shnum)
					if err := s.WriteShare(ctx, si, shnum, int64(len(d)), bytes.NewReader(d), l); err != nil {
						t.Errorf("WriteShare: %v", err)
					}
				case 2, 3:
					want := content(si, shnum)
					got, err := s.ReadShare(ctx, si, shnum, 0, int64(len(want)))
					if err != nil && !errors.Is(err, grid.ErrNotFound) {
						t.Errorf("ReadShare: %v", err)
					}
					if err == nil && !bytes.Equal(got, want) {
						t.Errorf("ReadShare returned %d bytes of wrong content", len(got))
					}
				case 4:
					err := s.CancelLease(ctx, si, l.CancelSecret)
					if err != nil && !errors.Is(err, grid.ErrNotFound) && !errors.Is(err, grid.ErrUnauthorized) {
						t.Errorf("CancelLease: %v", err)
					}
				case 5:
					if w == 0 {
						clk.Advance(10 * time.Minute)
					}
					if _, err := s.Sweep(ctx); err != nil {
						t.Errorf("Sweep: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Verify(t.Context()); err != nil {
		t.Fatalf("store after the race: %v", err)
	}
}
