package boltserver_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func open(t *testing.T, dir string, opts boltserver.Options) *boltserver.Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "store.db")); opts.ID == "" && err != nil {
		opts.ID = "bolt-test" // a new store needs an id
	}
	s, err := boltserver.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Verify(context.Background()); err != nil {
			t.Errorf("store invariants after the test: %v", err)
		}
		if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(ents) != 0 {
			t.Errorf("temp files left after the test: %d, %v", len(ents), err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	gridtest.TestServer(t, func(t *testing.T) grid.Server { return open(t, t.TempDir(), boltserver.Options{}) })
}

func TestConformanceNoFDCache(t *testing.T) {
	gridtest.TestServer(t, func(t *testing.T) grid.Server {
		return open(t, t.TempDir(), boltserver.Options{OpenFiles: -1})
	})
}

// TestConformanceFiles runs the suite with every share in a file (the
// default keeps the suite's small shares inline).
func TestConformanceFiles(t *testing.T) {
	gridtest.TestServer(t, func(t *testing.T) grid.Server {
		return open(t, t.TempDir(), boltserver.Options{InlineMax: -1})
	})
}

func TestQuota(t *testing.T) {
	gridtest.TestQuota(t, func(t *testing.T, quota int64) grid.Server {
		return open(t, t.TempDir(), boltserver.Options{Quota: quota})
	})
}

func TestSweep(t *testing.T) {
	gridtest.TestSweep(t, func(t *testing.T, now func() time.Time, grace time.Duration) (grid.Server, gridtest.Sweeper) {
		s := open(t, t.TempDir(), boltserver.Options{Now: now, Grace: grace})
		return s, s
	})
}

func TestExpiringSoon(t *testing.T) {
	gridtest.TestExpiringSoon(t, func(t *testing.T, now func() time.Time) grid.Server {
		return open(t, t.TempDir(), boltserver.Options{Now: now})
	})
}

func TestFailed(t *testing.T) {
	gridtest.TestFailed(t, func(t *testing.T) gridtest.Failing {
		s, err := boltserver.Open(t.TempDir(), boltserver.Options{ID: "bolt-failed"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestLeaseFlood floods a store with leases and tiny shares and checks,
// beyond what Stat says, that the disk the store takes stays within its
// quota plus bbolt's fixed overhead.
func TestLeaseFlood(t *testing.T) {
	const quota = 512 << 10 // about 120 storage indexes, 2,000 leases
	dir := t.TempDir()
	s := open(t, dir, boltserver.Options{Quota: quota})
	sis := gridtest.TestLeaseFlood(t, s, quota)
	disk := diskUse(t, dir)
	t.Logf("%d storage indexes with up to %d leases each: %d bytes on disk for a quota of %d", len(sis), grid.MaxLeases, disk, quota)
	const slack = 128 << 10 // bbolt's meta and freelist pages, and its file growing in steps
	if disk > quota+slack {
		t.Fatalf("store takes %d bytes on disk, quota %d (+%d slack)", disk, quota, slack)
	}
}

// diskUse sums the blocks allocated to the files under dir.
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
