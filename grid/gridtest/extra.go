package gridtest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid"
)

// Clock is a manual clock for lease tests: Now returns the set time, which
// moves only by Advance. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to start.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Sweeper is what servers that collect expired shares offer: Sweep deletes
// every share whose leases all expired more than the server's grace period
// ago and returns how many shares (immutable and slot shares) it deleted.
type Sweeper interface {
	Sweep(ctx context.Context) (deleted int, err error)
}

// TestQuota checks that a server built with quota refuses what does not fit
// with grid.ErrNoSpace before reading the data, and accepts what does.
// newServer must return an empty server whose quota is the given number of
// bytes of share data.
func TestQuota(t *testing.T, newServer func(t *testing.T, quota int64) grid.Server) {
	const quota = 10_000
	s := newServer(t, quota)
	ctx := ctxT(t)
	si := SI()
	writeShare(t, s, si, 0, Data(1, 6000), farLease("a"))
	err := s.WriteShare(ctx, si, 1, 5000, failReader{t}, farLease("a"))
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare over quota: %v, want ErrNoSpace", err)
	}
	if !grid.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	wantNoShare(t, s, si, 1)
	writeShare(t, s, si, 1, Data(2, 3000), farLease("a"))
	// A slot may use what is left, exactly.
	slot := SI()
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: Data(3, 1000)}}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot filling the quota exactly: %v", err)
	}
	// Full: a 1-byte share and a growing slot are refused; the same share
	// again and a shrinking slot are fine.
	if err := s.WriteShare(ctx, SI(), 0, 1, failReader{t}, farLease("a")); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare of 1 byte on a full server: %v, want ErrNoSpace", err)
	}
	err = s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 2, Data: Data(4, 1001)}}, farLease("a"))
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteSlot growing past the quota: %v, want ErrNoSpace", err)
	}
	if got := readSlot(t, s, slot); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("refused slot write changed the slot: %s", fmtSlot(got))
	}
	writeShare(t, s, si, 0, Data(1, 6000), farLease("b"))
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 3, Data: Data(5, 500)}}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot shrinking: %v", err)
	}
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Quota != quota || got.Used != 9500 || got.Shares != 3 {
			t.Fatalf("Stat = %+v, want Quota %d Used 9500 Shares 3", got, quota)
		}
	}
	writeShare(t, s, SI(), 0, Data(6, 500), farLease("a"))
	if lc, ok := s.(grid.LeaseCanceller); ok {
		if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).CancelSecret); err != nil {
			t.Fatal(err)
		}
		if err := lc.CancelLease(ctx, si, NewLease("b", time.Time{}).CancelSecret); err != nil {
			t.Fatal(err)
		}
		// 9000 bytes freed.
		writeShare(t, s, SI(), 0, Data(7, 9000), farLease("a"))
	}
}

// TestSweep checks lease expiry: a server built with the given clock and
// grace period deletes, on Sweep, exactly the shares whose leases all
// expired more than grace ago; renewing keeps a share; renewing to an
// earlier time does not shorten a lease.
func TestSweep(t *testing.T, newServer func(t *testing.T, now func() time.Time, grace time.Duration) (grid.Server, Sweeper)) {
	const grace = 24 * time.Hour
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := NewClock(t0)
	s, sw := newServer(t, clk.Now, grace)
	ctx := ctxT(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	sweep := func(want int) {
		t.Helper()
		n, err := sw.Sweep(ctx)
		if err != nil {
			t.Fatalf("Sweep at %v: %v", clk.Now().Sub(t0), err)
		}
		if n != want {
			t.Fatalf("Sweep at %v deleted %d shares, want %d", clk.Now().Sub(t0), n, want)
		}
	}
	a, b, c, d := SI(), SI(), SI(), SI()
	data := Data(1, 100)
	writeShare(t, s, a, 0, data, NewLease("x", at(time.Hour)))
	writeShare(t, s, a, 1, data, NewLease("x", at(time.Hour)))
	writeShare(t, s, b, 0, data, NewLease("x", at(time.Hour)))
	if err := s.AddLease(ctx, b, NewLease("x", at(10*time.Hour))); err != nil { // renew
		t.Fatal(err)
	}
	if err := s.AddLease(ctx, b, NewLease("x", at(2*time.Hour))); err != nil { // must not shorten
		t.Fatal(err)
	}
	if err := s.WriteSlot(ctx, c, Enabler("w"), []grid.SlotShare{{Shnum: 2, Seq: 1, Data: data}}, NewLease("x", at(time.Hour))); err != nil {
		t.Fatal(err)
	}
	writeShare(t, s, d, 0, data, NewLease("x", at(time.Hour)))
	writeShare(t, s, d, 0, data, NewLease("y", at(5*time.Hour))) // second lease by rewrite

	sweep(0)
	clk.Advance(time.Hour + grace - time.Minute) // expired, but within grace
	sweep(0)
	clk.Advance(2 * time.Minute)
	sweep(3) // a's two shares and c's slot share
	wantNoShare(t, s, a, 0)
	wantNoShare(t, s, a, 1)
	if got := readSlot(t, s, c); len(got) != 0 {
		t.Fatalf("expired slot still held: %s", fmtSlot(got))
	}
	if err := s.AddLease(ctx, a, NewLease("x", at(100*time.Hour))); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("AddLease on a swept si: %v, want ErrNotFound", err)
	}
	if got := readAll(t, s, b, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("renewed share b lost")
	}
	if got := readAll(t, s, d, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("share d with a live second lease lost")
	}
	clk.Advance(4*time.Hour + time.Minute) // now 5h+grace+1m: d's last lease is past grace
	sweep(1)
	wantNoShare(t, s, d, 0)
	if got := readAll(t, s, b, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("share b lost before its renewed lease expired")
	}
	clk.Advance(5 * time.Hour)
	sweep(1)
	wantNoShare(t, s, b, 0)
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Used != 0 || got.Shares != 0 {
			t.Fatalf("Stat after sweeping everything = %+v", got)
		}
	}
}
