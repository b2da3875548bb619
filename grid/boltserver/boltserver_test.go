package boltserver_test

import (
	"context"
	"os"
	"path/filepath"
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
