package boltserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// damageGrid is ten bolt stores under one directory and a client over them.
type damageGrid struct {
	t      *testing.T
	root   string
	stores []*boltserver.Server
	c      *grid.Client
	files  map[string][]byte // cap string -> content
	caps   map[string]caps.Cap
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newDamageGrid(t *testing.T) *damageGrid {
	t.Helper()
	g := &damageGrid{t: t, root: t.TempDir(), stores: make([]*boltserver.Server, 10), files: map[string][]byte{}, caps: map[string]caps.Cap{}}
	for i := range g.stores {
		g.open(i)
	}
	t.Cleanup(func() {
		for _, s := range g.stores {
			s.Close()
		}
	})
	servers := make([]grid.Server, len(g.stores))
	for i := range servers {
		servers[i] = serverAt{g, i}
	}
	c, err := grid.NewClient(grid.ClientConfig{
		Servers: servers, Convergence: bytes.Repeat([]byte{7}, 32), LeaseSecret: [32]byte{7}, RequestTimeout: 5 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.c = c
	// Shares inline in bbolt (small files) and in files of their own.
	for i, size := range []int{200, 5_000, 60_000, 300_000, 1_500_000} {
		data := gridtest.Data(uint64(100+i), size)
		cp, err := c.Upload(t.Context(), bytes.NewReader(data), int64(size), grid.UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g.files[cp.String()] = data
		g.caps[cp.String()] = cp
	}
	return g
}

// serverAt lets the client keep its server list while a store is closed
// and reopened under it.
type serverAt struct {
	g *damageGrid
	i int
}

func (s serverAt) srv() *boltserver.Server { return s.g.stores[s.i] }
func (s serverAt) ID() grid.ServerID       { return grid.ServerID(fmt.Sprint("store-", s.i)) }
func (s serverAt) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, l grid.Lease) error {
	return s.srv().WriteShare(ctx, si, shnum, size, r, l)
}
func (s serverAt) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, n int64) ([]byte, error) {
	return s.srv().ReadShare(ctx, si, shnum, off, n)
}
func (s serverAt) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	return s.srv().ListShares(ctx, si)
}
func (s serverAt) AddLease(ctx context.Context, si caps.StorageIndex, l grid.Lease) error {
	return s.srv().AddLease(ctx, si, l)
}
func (s serverAt) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	return s.srv().ReadSlot(ctx, si)
}
func (s serverAt) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, w []grid.SlotShare, l grid.Lease) error {
	return s.srv().WriteSlot(ctx, si, we, w, l)
}
func (s serverAt) Stat(ctx context.Context) (grid.Stat, error) { return s.srv().Stat(ctx) }

// open opens store i; a store Open finds damaged becomes a failed stand-in,
// as the node does.
func (g *damageGrid) open(i int) {
	dir := filepath.Join(g.root, fmt.Sprint("s", i))
	id := grid.ServerID(fmt.Sprint("store-", i))
	s, err := boltserver.Open(dir, boltserver.Options{ID: id, Logger: quiet})
	switch {
	case errors.Is(err, boltserver.ErrInUse):
		g.t.Fatalf("open store %d: %v", i, err)
	case err != nil: // damage, or a damaged id or version: contained
		s = boltserver.NewFailed(dir, id, err)
	}
	g.stores[i] = s
}

// flip changes n random bytes in every file of store i.
func (g *damageGrid) flip(rng *rand.Rand, i, n int) {
	g.t.Helper()
	dir := filepath.Join(g.root, fmt.Sprint("s", i))
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.Size() == 0 {
			return err
		}
		for range n {
			off := rng.Int64N(st.Size())
			b := []byte{0}
			if _, err := f.ReadAt(b, off); err != nil {
				return err
			}
			b[0] ^= byte(1 + rng.IntN(255))
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
}

// getAll reads every file: each must come back whole and right, or fail
// with an error. It returns how many came back.
func (g *damageGrid) getAll(what string) (ok int) {
	g.t.Helper()
	for s, data := range g.files {
		var buf bytes.Buffer
		err := g.c.Download(g.t.Context(), g.caps[s], &buf, nil)
		switch {
		case err == nil && !bytes.Equal(buf.Bytes(), data):
			g.t.Fatalf("%s: file of %d bytes read back WRONG (%d bytes) without an error", what, len(data), buf.Len())
		case err == nil:
			ok++
		}
	}
	return ok
}

func (g *damageGrid) failed() []int {
	var out []int
	for i, s := range g.stores {
		if s.Failure() != nil {
			out = append(out, i)
		}
	}
	return out
}

// TestDamageContained flips random bytes in every file of one store, then
// of several at once, in a ten-store grid, both under running stores and
// before they are opened again: every get returns the right bytes or an
// error, never wrong bytes and never a panic (which would end the test
// binary). With at most n-k stores damaged every file still reads.
func TestDamageContained(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, tc := range []struct {
		name     string
		damaged  []int
		reopen   bool
		allRead  bool
		flipsPer int
	}{
		{"one store, running", []int{3}, false, true, 40},
		{"one store, reopened", []int{5}, true, true, 40},
		{"three stores, running", []int{0, 4, 8}, false, true, 40},
		{"seven stores, reopened", []int{0, 1, 2, 3, 4, 5, 6}, true, true, 40},
		{"all ten, reopened", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, true, false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newDamageGrid(t)
			if ok := g.getAll("before damage"); ok != len(g.files) {
				t.Fatalf("only %d of %d files read before any damage", ok, len(g.files))
			}
			if tc.reopen {
				for _, i := range tc.damaged {
					g.stores[i].Close()
				}
			}
			for _, i := range tc.damaged {
				g.flip(rng, i, tc.flipsPer)
			}
			if tc.reopen {
				for _, i := range tc.damaged {
					g.open(i)
				}
			}
			for round := range 2 { // the second round meets stores the first one failed
				ok := g.getAll(fmt.Sprintf("round %d", round))
				if tc.allRead && ok != len(g.files) {
					t.Fatalf("round %d: %d of %d files read with %d of 10 stores damaged", round, ok, len(g.files), len(tc.damaged))
				}
				t.Logf("round %d: %d of %d files read; failed stores %v", round, ok, len(g.files), g.failed())
			}
			// sphere store fsck --rebuild on every damaged store brings it
			// back into service; the files still read.
			for _, i := range tc.damaged {
				g.stores[i].Close()
				dir := filepath.Join(g.root, fmt.Sprint("s", i))
				rep, err := boltserver.Fsck(t.Context(), dir, boltserver.FsckOptions{Rebuild: true, ID: grid.ServerID(fmt.Sprint("store-", i)), Logger: quiet})
				if err != nil {
					t.Errorf("fsck --rebuild of store %d: %v (%+v)", i, err, rep)
				}
				g.open(i)
				if f := g.stores[i].Failure(); f != nil {
					t.Errorf("store %d still failed after a rebuild: %v", i, f)
				}
			}
			ok := g.getAll("after fsck --rebuild")
			if tc.allRead && ok != len(g.files) {
				t.Fatalf("after rebuilding: %d of %d files read", ok, len(g.files))
			}
			// Every store, damaged or not, answers a call without panicking,
			// and a failed one says which store it is.
			for i, s := range g.stores {
				_, err := s.Stat(t.Context())
				if f := s.Failure(); f != nil {
					if !errors.Is(err, grid.ErrFailed) {
						t.Errorf("store %d failed (%v) but Stat says %v", i, f, err)
					}
					if want := filepath.Join(g.root, fmt.Sprint("s", i)); !bytes.Contains([]byte(f.Error()), []byte(want)) {
						t.Errorf("failure of store %d does not name it: %v", i, f)
					}
				}
				_, _ = s.Sweep(t.Context())
				_ = s.Verify(t.Context())
			}
		})
	}
}

// TestOpenDamagedNeverPanics flips a few random bytes of a store's bbolt
// file, many times over, and opens it: Open returns a store or an error
// (grid.ErrFailed for damage), and whatever opens answers every call
// without a panic escaping.
func TestOpenDamagedNeverPanics(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	dir := t.TempDir()
	s, err := boltserver.Open(dir, boltserver.Options{ID: "d", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var sis []caps.StorageIndex
	ctx := t.Context()
	for i := range 300 {
		si := gridtest.SI()
		sis = append(sis, si)
		if err := s.WriteShare(ctx, si, i%4, 300, bytes.NewReader(gridtest.Data(uint64(i), 300)), gridtest.NewLease(fmt.Sprint(i%5), time.Time{})); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := s.WriteSlot(ctx, si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: gridtest.Data(uint64(i), 100)}}, gridtest.NewLease("x", time.Time{})); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	db := filepath.Join(dir, "store.db")
	clean, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	opened, failed := 0, 0
	const rounds = 120
	for round := range rounds {
		b := bytes.Clone(clean)
		for range 1 + rng.IntN(8) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := boltserver.Open(dir, boltserver.Options{Logger: quiet, LockTimeout: time.Second})
		if err != nil {
			if !errors.Is(err, grid.ErrFailed) {
				t.Logf("round %d: Open: %v (not reported as damage)", round, err)
			}
			failed++
			continue
		}
		opened++
		for _, si := range sis[:40] {
			_, _ = s.ListShares(ctx, si)
			_, _ = s.ReadShare(ctx, si, 0, 0, 300)
			_, _ = s.ReadSlot(ctx, si)
		}
		_ = s.AddLease(ctx, sis[rng.IntN(len(sis))], gridtest.NewLease("r", time.Time{}))
		_ = s.WriteShare(ctx, gridtest.SI(), 0, 10, bytes.NewReader(make([]byte, 10)), gridtest.NewLease("n", time.Time{}))
		_, _ = s.Stat(ctx)
		_, _ = s.Sweep(ctx)
		_ = s.Verify(ctx)
		_ = s.CancelLease(ctx, sis[1], gridtest.NewLease("1", time.Time{}).CancelSecret)
		s.Close()
		// Open rebuilds nothing: put the clean file back for the next round.
	}
	t.Logf("%d rounds: %d damaged files opened, %d refused", rounds, opened, failed)
}
