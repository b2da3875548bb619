package home

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testClient(t *testing.T, servers []grid.Server, seqs grid.SeqStore) *grid.Client {
	t.Helper()
	c, err := grid.NewClient(grid.ClientConfig{
		Servers: servers, Params: caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 4096},
		Convergence: bytes.Repeat([]byte{3}, 32), LeaseSecret: [32]byte{4},
		SeqStore: seqs, RequestTimeout: 5 * time.Second, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A client restarted on the same home still refuses a version older than
// one an earlier process saw.
func TestSeqDBRollbackAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := Init(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	servers, faults := gridtest.NewFaultGrid(10)

	seqs, err := h.OpenSeqDB(quiet())
	if err != nil {
		t.Fatal(err)
	}
	c := testClient(t, servers, seqs)
	cp, err := c.CreateMutable(ctx, []byte("v1"), false)
	if err != nil {
		t.Fatal(err)
	}
	wc := cp.(caps.MutableWriteCap)
	for _, s := range []string{"v2", "v3"} {
		if _, err := c.Publish(ctx, wc, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := seqs.Close(); err != nil {
		t.Fatal(err)
	}

	// The servers now serve the oldest version they saw.
	for _, f := range faults {
		f.Set(faultserver.Faults{Stale: true})
	}
	seqs2, err := h.OpenSeqDB(quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer seqs2.Close()
	if got := seqs2.Seen(wc.StorageIndex()); got != 3 {
		t.Fatalf("reopened state has seq %d, want 3", got)
	}
	c2 := testClient(t, servers, seqs2)
	if got, _, err := c2.Retrieve(ctx, wc.ReadCap()); !errors.Is(err, grid.ErrRollback) {
		t.Fatalf("restarted client read %q, %v; want ErrRollback", got, err)
	}
	// A client without the home's state is fooled: the test can fail.
	c3 := testClient(t, servers, nil)
	if got, _, err := c3.Retrieve(ctx, wc.ReadCap()); err != nil || string(got) != "v1" {
		t.Fatalf("fresh client read %q, %v; want the stale v1", got, err)
	}
}

// Two processes' stores on one file (a mount and a CLI command) both
// write, neither blocks the other, and each keeps the higher number.
func TestSeqDBShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	a, err := OpenSeqDB(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenSeqDB(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	si1, si2 := caps.StorageIndex{1}, caps.StorageIndex{2}
	a.Observe(si1, 5)
	b.Observe(si1, 3) // lower: must not win
	b.Observe(si2, math.MaxUint64)
	a.Observe(si1, 4)   // not higher than 5: ignored
	for i := range 50 { // one batch of many records
		a.Observe(caps.StorageIndex{9, byte(i)}, uint64(100+i))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := OpenSeqDB(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Seen(si1); got != 5 {
		t.Errorf("si1: %d, want 5", got)
	}
	if got := c.Seen(si2); got != math.MaxUint64 {
		t.Errorf("si2: %d, want max", got)
	}
	for i := range 50 {
		if got := c.Seen(caps.StorageIndex{9, byte(i)}); got != uint64(100+i) {
			t.Errorf("record %d: %d, want %d", i, got, 100+i)
		}
	}
}

func TestSeqDBDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xff}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSeqDB(path, quiet()); err == nil {
		t.Fatal("opened a damaged state file")
	}
}
