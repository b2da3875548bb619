package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// A node whose store is damaged still starts and serves: the store answers
// every call with a permanent error naming it, and Status names it.
func TestDamagedStoreIsContained(t *testing.T) {
	psk := newPSK(t)
	dir := filepath.Join(t.TempDir(), "storage")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "store.db"), bytes.Repeat([]byte{0x5a}, 16384), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, Config{GridKey: psk, StorageDir: dir})
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatalf("Status with a failed store: %v", err)
	}
	if len(st.FailedStores) != 1 || st.FailedStores[0].Dir != dir || st.FailedStores[0].Error == "" {
		t.Fatalf("Status.FailedStores = %+v, want the damaged store %s", st.FailedStores, dir)
	}
	_, err = storageClient(t, psk, n.Node).ListShares(context.Background(), caps.StorageIndex{1})
	if err == nil || !grid.IsPermanent(err) || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("ListShares on a failed store over the wire: %v, want a permanent error saying it failed", err)
	}
	if errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("a failed store must not say 'not found': %v", err)
	}
}

// One peer floods a node's store over the storage protocol with tiny shares
// and thousands of distinct leases: the node refuses once its quota is
// used, its disk use stays within the quota, and an honest client's
// renewals and reads go on.
func TestLeaseFloodOverTheWire(t *testing.T) {
	psk := newPSK(t)
	dir := filepath.Join(t.TempDir(), "storage")
	const quota = 256 << 10
	n := startNode(t, Config{GridKey: psk, StorageDir: dir, Quota: quota})
	sis := gridtest.TestLeaseFlood(t, storageClient(t, psk, n.Node), quota)
	var disk int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				disk += st.Blocks * 512
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d storage indexes flooded; %d bytes on disk for a quota of %d", len(sis), disk, quota)
	if disk > quota+128<<10 {
		t.Fatalf("store takes %d bytes on disk, quota %d", disk, quota)
	}
}
