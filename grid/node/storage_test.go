package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
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
