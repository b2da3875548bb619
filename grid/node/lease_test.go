package node

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// storageClient is a p2p client of n from a fresh client host.
func storageClient(t *testing.T, psk []byte, n *Node) *p2p.Client {
	t.Helper()
	ck, err := ClientKey(n.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewClientHost(ck, psk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	return p2p.NewClient(h, n.ID(), p2p.ClientOptions{RequestTimeout: 10 * time.Second})
}

func TestLeaseSweeperWithInjectedClock(t *testing.T) {
	psk := newPSK(t)
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), Now: clock.Now, Grace: time.Hour, LeaseTerm: 24 * time.Hour, SweepEvery: 20 * time.Millisecond})
	srv := storageClient(t, psk, n.Node)
	ctx := context.Background()
	data := []byte("share")
	var kept, dropped caps.StorageIndex
	kept[0], dropped[0] = 1, 2
	lease := func(b byte, exp time.Time) grid.Lease {
		var l grid.Lease
		l.RenewSecret[0], l.CancelSecret[0], l.Expires = b, b, exp
		return l
	}
	day := 24 * time.Hour // what the client asks for; the node's term decides
	for _, si := range []caps.StorageIndex{kept, dropped} {
		if err := srv.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), lease(si[0], clock.Now().Add(day))); err != nil {
			t.Fatal(err)
		}
	}
	// Both shares' leases (a 24 h term) end within 7 days: status says so.
	if st, err := n.Status(ctx); err != nil || st.ExpiringSoon != 2 {
		t.Fatalf("Status.ExpiringSoon = %d, %v; want 2", st.ExpiringSoon, err)
	}
	// A delete without the lease secret is refused.
	if err := srv.CancelLease(ctx, dropped, [32]byte{9}); !errors.Is(err, grid.ErrUnauthorized) {
		t.Fatalf("cancel with a wrong secret: %v, want ErrUnauthorized", err)
	}
	// Renew one lease half a day later (the server dates it: it now ends
	// at 36 h), then move past the other's expiry + grace.
	clock.Add(12 * time.Hour)
	if err := srv.AddLease(ctx, kept, lease(kept[0], clock.Now())); err != nil {
		t.Fatal(err)
	}
	clock.Add(14 * time.Hour)
	waitFor(t, "the sweeper to collect the unrenewed share", func() bool {
		l, err := srv.ListShares(ctx, dropped)
		return err == nil && len(l) == 0
	})
	l, err := srv.ListShares(ctx, kept)
	if err != nil || len(l) != 1 {
		t.Fatalf("renewed share: %v, %v; want kept", l, err)
	}
}

func TestRestartKeepsShares(t *testing.T) {
	psk := newPSK(t)
	dir := t.TempDir()
	cfg := Config{Identity: newKey(t), GridKey: psk, StorageDir: filepath.Join(dir, "storage")}
	a := startNode(t, cfg)
	data := []byte("kept across restarts")
	var si caps.StorageIndex
	si[5] = 5
	ctx := context.Background()
	if err := storageClient(t, psk, a.Node).WriteShare(ctx, si, 1, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	a.stop()
	a2 := startNode(t, cfg)
	got, err := storageClient(t, psk, a2.Node).ReadShare(ctx, si, 1, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

func TestQuotaRefusesWhenFull(t *testing.T) {
	psk := newPSK(t)
	n := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), Quota: 64})
	srv := storageClient(t, psk, n.Node)
	ctx := context.Background()
	data := make([]byte, 100)
	var si caps.StorageIndex
	err := srv.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("share beyond the quota: %v, want ErrNoSpace", err)
	}
	st, err := n.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Quota != 64 || st.Shares != 0 {
		t.Fatalf("status %+v: want quota 64, no shares", st)
	}
}
