package gridtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
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
// with grid.ErrNoSpace before reading the data, and accepts what does, and
// that metadata is counted: each share, slot and lease is charged
// (grid.ShareCharge, grid.SlotCharge, grid.LeaseCharge) beside its bytes.
// newServer must return an empty server whose quota is the given number
// of bytes.
func TestQuota(t *testing.T, newServer func(t *testing.T, quota int64) grid.Server) {
	const quota = 10_000
	s := newServer(t, quota)
	ctx := ctxT(t)
	si := SI()
	var used int64 // what the server should count
	writeShare(t, s, si, 0, Data(1, 5000), farLease("a"))
	used += 5000 + grid.ShareCharge + grid.LeaseCharge
	err := s.WriteShare(ctx, si, 1, 5000, failReader{t}, farLease("a"))
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare over quota: %v, want ErrNoSpace", err)
	}
	if !grid.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	wantNoShare(t, s, si, 1)
	writeShare(t, s, si, 1, Data(2, 2000), farLease("a"))
	used += 2000 + grid.ShareCharge
	// A slot may use what is left, exactly: its data, the slot, its share
	// and its lease.
	slot := SI()
	slotData := quota - used - grid.SlotCharge - grid.ShareCharge - grid.LeaseCharge
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: Data(3, int(slotData))}}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot filling the quota exactly: %v", err)
	}
	used = quota
	// Full: a 1-byte share, a growing slot and a new lease are refused;
	// the same share again under a held lease and a shrinking slot are fine.
	if err := s.WriteShare(ctx, SI(), 0, 1, failReader{t}, farLease("a")); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare of 1 byte on a full server: %v, want ErrNoSpace", err)
	}
	err = s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 2, Data: Data(4, int(slotData)+1)}}, farLease("a"))
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteSlot growing past the quota: %v, want ErrNoSpace", err)
	}
	if got := readSlot(t, s, slot); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("refused slot write changed the slot: %s", fmtSlot(got))
	}
	if err := s.AddLease(ctx, si, farLease("b")); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("a new lease on a full server: %v, want ErrNoSpace (leases are charged)", err)
	}
	writeShare(t, s, si, 0, Data(1, 5000), farLease("a"))
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 3, Data: Data(5, int(slotData)-500)}}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot shrinking: %v", err)
	}
	used -= 500
	writeShare(t, s, si, 0, Data(1, 5000), farLease("b")) // a second lease, now that it fits
	used += grid.LeaseCharge
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Quota != quota || got.Used != used || got.Shares != 3 {
			t.Fatalf("Stat = %+v, want Quota %d Used %d Shares 3", got, quota, used)
		}
	}
	if lc, ok := s.(grid.LeaseCanceller); ok {
		if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).CancelSecret); err != nil {
			t.Fatal(err)
		}
		if err := lc.CancelLease(ctx, si, NewLease("b", time.Time{}).CancelSecret); err != nil {
			t.Fatal(err)
		}
		// 7000 bytes of data and their metadata freed.
		writeShare(t, s, SI(), 0, Data(7, 7000), farLease("a"))
	}
}

// TestSweep checks lease expiry with server-dated leases: a server built
// with the given clock and grace period, and the default lease term, dates
// every added or renewed lease now + grid.DefaultLeaseTerm whatever the
// client asks (a lease asking for the year 2261 or for the past lasts the
// term), and Sweep deletes exactly the shares whose leases all expired
// more than grace ago.
func TestSweep(t *testing.T, newServer func(t *testing.T, now func() time.Time, grace time.Duration) (grid.Server, Sweeper)) {
	const grace = 24 * time.Hour
	const term = grid.DefaultLeaseTerm
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := NewClock(t0)
	s, sw := newServer(t, clk.Now, grace)
	ctx := ctxT(t)
	forever := time.Date(2261, 1, 1, 0, 0, 0, 0, time.UTC)
	past := t0.Add(-time.Hour)
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
	writeShare(t, s, a, 0, data, NewLease("x", forever)) // asks for 2261: gets the term
	writeShare(t, s, a, 1, data, NewLease("x", past))
	writeShare(t, s, b, 0, data, NewLease("x", past)) // asks for the past: gets the term
	if err := s.WriteSlot(ctx, c, Enabler("w"), []grid.SlotShare{{Shnum: 2, Seq: 1, Data: data}}, NewLease("x", forever)); err != nil {
		t.Fatal(err)
	}
	writeShare(t, s, d, 0, data, NewLease("x", forever))

	sweep(0)
	clk.Advance(10 * 24 * time.Hour)
	if err := s.AddLease(ctx, b, NewLease("x", past)); err != nil { // renew: b now ends at 10d + term
		t.Fatal(err)
	}
	clk.Advance(10 * 24 * time.Hour)
	writeShare(t, s, d, 0, data, NewLease("y", past)) // a second lease by rewrite: d ends at 20d + term
	sweep(0)

	clk.Advance(term + grace - 20*24*time.Hour - time.Minute) // a and c expired, but within grace
	sweep(0)
	clk.Advance(2 * time.Minute)
	sweep(3) // a's two shares and c's slot share: 2261 was not honoured
	wantNoShare(t, s, a, 0)
	wantNoShare(t, s, a, 1)
	if got := readSlot(t, s, c); len(got) != 0 {
		t.Fatalf("expired slot still held: %s", fmtSlot(got))
	}
	if err := s.AddLease(ctx, a, NewLease("x", forever)); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("AddLease on a swept si: %v, want ErrNotFound", err)
	}
	if got := readAll(t, s, b, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("renewed share b lost")
	}
	if got := readAll(t, s, d, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("share d with a live second lease lost")
	}
	clk.Advance(10 * 24 * time.Hour) // b's renewed lease is past grace; d's is not
	sweep(1)
	wantNoShare(t, s, b, 0)
	if got := readAll(t, s, d, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("share d lost before its second lease expired")
	}
	clk.Advance(10 * 24 * time.Hour)
	sweep(1)
	wantNoShare(t, s, d, 0)
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

// TestExpiringSoon checks Stat.ExpiringSoon: the shares whose last lease
// ends within grid.ExpiringWindow. newServer gets a clock; its lease term
// is the default.
func TestExpiringSoon(t *testing.T, newServer func(t *testing.T, now func() time.Time) grid.Server) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := NewClock(t0)
	s := newServer(t, clk.Now)
	st, ok := s.(grid.Statter)
	if !ok {
		t.Skip("server does not implement grid.Statter")
	}
	ctx := ctxT(t)
	soon := func(want int) {
		t.Helper()
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.ExpiringSoon != want {
			t.Fatalf("ExpiringSoon at %v = %d, want %d", clk.Now().Sub(t0), got.ExpiringSoon, want)
		}
	}
	old, fresh := SI(), SI()
	writeShare(t, s, old, 0, Data(1, 10), farLease("a"))
	writeShare(t, s, old, 1, Data(2, 10), farLease("a"))
	soon(0)
	clk.Advance(grid.DefaultLeaseTerm - grid.ExpiringWindow - time.Hour)
	writeShare(t, s, fresh, 0, Data(3, 10), farLease("a"))
	soon(0)
	clk.Advance(2 * time.Hour) // old's lease ends within the window
	soon(2)
	if err := s.AddLease(ctx, old, farLease("a")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // past any cache of the count (a minute at most)
	soon(0)
}

// Failing is a server that can be taken out of service, as a store that
// found itself damaged takes itself out.
type Failing interface {
	grid.Server
	Fail(cause error) error
}

// TestFailed checks what a failed store does: every call answers a
// permanent error that errors.Is grid.ErrFailed and names the store, Stat
// too, and grid.Failer reports it.
func TestFailed(t *testing.T, newServer func(t *testing.T) Failing) {
	s := newServer(t)
	ctx := ctxT(t)
	si, slot := SI(), SI()
	writeShare(t, s, si, 0, Data(1, 100), farLease("a"))
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: Data(2, 10)}}, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if f, ok := grid.Server(s).(grid.Failer); ok && f.Failure() != nil {
		t.Fatalf("Failure of a healthy store = %v", f.Failure())
	}
	if err := s.Fail(errors.New("test damage")); err == nil {
		t.Fatal("Fail returned nil")
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, grid.ErrFailed) || !grid.IsPermanent(err) {
			t.Errorf("%s on a failed store: %v, want a permanent grid.ErrFailed", what, err)
		}
		if err != nil && !strings.Contains(err.Error(), "test damage") {
			t.Errorf("%s on a failed store: %q does not say why", what, err)
		}
	}
	_, err := s.ReadShare(ctx, si, 0, 0, 10)
	check("ReadShare", err)
	_, err = s.ListShares(ctx, si)
	check("ListShares", err)
	check("WriteShare", s.WriteShare(ctx, SI(), 0, 10, failReader{t}, farLease("a")))
	check("AddLease", s.AddLease(ctx, si, farLease("a")))
	_, err = s.ReadSlot(ctx, slot)
	check("ReadSlot", err)
	check("WriteSlot", s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 2}}, farLease("a")))
	if st, ok := grid.Server(s).(grid.Statter); ok {
		_, err := st.Stat(ctx)
		check("Stat", err)
	}
	if lc, ok := grid.Server(s).(grid.LeaseCanceller); ok {
		check("CancelLease", lc.CancelLease(ctx, si, farLease("a").CancelSecret))
	}
	if f, ok := grid.Server(s).(grid.Failer); ok {
		check("Failure", f.Failure())
	}
}

// TestLeaseFlood plays one hostile client against a server with quota:
// thousands of distinct lease secrets over many storage indexes, each with
// a tiny share. The server must refuse cleanly (ErrNoSpace) once its quota
// is used, never count more than its quota, and keep serving an honest
// client's renewals and reads. It returns the storage indexes stored, so
// the caller can check what it can see beyond Stat (disk use).
func TestLeaseFlood(t *testing.T, s grid.Server, quota int64) []caps.StorageIndex {
	ctx := ctxT(t)
	honest := SI()
	writeShare(t, s, honest, 0, Data(1, 1000), farLease("honest"))
	var sis []caps.StorageIndex
	refused := 0
	const maxSIs = 5000
	for i := 0; i < maxSIs && refused < 50; i++ {
		si := SI()
		err := s.WriteShare(ctx, si, 0, 1, bytes.NewReader([]byte{byte(i)}), farLease(fmt.Sprint("flood-", i, "-0")))
		if err != nil {
			if !errors.Is(err, grid.ErrNoSpace) {
				t.Fatalf("flood write %d: %v, want nil or ErrNoSpace", i, err)
			}
			refused++
			continue
		}
		sis = append(sis, si)
		for j := 1; j <= grid.MaxLeases+4; j++ {
			err := s.AddLease(ctx, si, farLease(fmt.Sprint("flood-", i, "-", j)))
			if err != nil && !errors.Is(err, grid.ErrNoSpace) {
				t.Fatalf("flood lease %d on si %d: %v, want nil or ErrNoSpace", j, i, err)
			}
		}
	}
	if refused == 0 {
		t.Fatalf("%d storage indexes with %d leases each fit a quota of %d bytes: metadata is not counted", len(sis), grid.MaxLeases, quota)
	}
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Used > quota {
			t.Fatalf("after the flood Stat = %+v: more than the quota %d used", got, quota)
		}
	}
	if err := s.AddLease(ctx, honest, farLease("honest")); err != nil {
		t.Fatalf("honest renewal after the flood: %v", err)
	}
	if got := readAll(t, s, honest, 0, 1000); !bytes.Equal(got, Data(1, 1000)) {
		t.Fatal("honest share damaged by the flood")
	}
	return sis
}
