package faultserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// With no faults the wrapper is a conforming server.
func TestConformance(t *testing.T) {
	gridtest.TestServer(t, func(t *testing.T) grid.Server {
		return faultserver.New(memserver.New("fault-test"))
	})
}

func lease() grid.Lease { return gridtest.NewLease("l", time.Now().Add(time.Hour)) }

func setup(t *testing.T) (*faultserver.Server, [16]byte, []byte) {
	t.Helper()
	s := faultserver.New(memserver.New("f"))
	si := gridtest.SI()
	data := gridtest.Data(1, 1000)
	if err := s.WriteShare(t.Context(), si, 0, 1000, bytes.NewReader(data), lease()); err != nil {
		t.Fatal(err)
	}
	return s, si, data
}

func TestVanish(t *testing.T) {
	s, si, data := setup(t)
	s.Set(faultserver.Faults{Vanish: true})
	ctx := t.Context()
	errs := map[string]error{}
	_, errs["ReadShare"] = s.ReadShare(ctx, si, 0, 0, 10)
	_, errs["ListShares"] = s.ListShares(ctx, si)
	errs["WriteShare"] = s.WriteShare(ctx, si, 1, 1, bytes.NewReader([]byte{1}), lease())
	errs["AddLease"] = s.AddLease(ctx, si, lease())
	_, errs["ReadSlot"] = s.ReadSlot(ctx, si)
	errs["WriteSlot"] = s.WriteSlot(ctx, si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1}}, lease())
	_, errs["Stat"] = s.Stat(ctx)
	errs["CancelLease"] = s.CancelLease(ctx, si, lease().CancelSecret)
	for m, err := range errs {
		if !errors.Is(err, faultserver.ErrVanished) {
			t.Errorf("%s while vanished: %v, want ErrVanished", m, err)
		}
		if grid.IsPermanent(err) {
			t.Errorf("%s while vanished: IsPermanent(%v) = true, want transient", m, err)
		}
	}
	if s.ID() != "f" {
		t.Errorf("ID() while vanished = %q", s.ID())
	}
	s.Reset()
	got, err := s.ReadShare(ctx, si, 0, 0, 1000)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after Reset ReadShare = %d bytes, %v", len(got), err)
	}
	if n := s.Calls("ReadShare"); n != 2 {
		t.Errorf("Calls(ReadShare) = %d, want 2", n)
	}
	if l, err := s.ListShares(ctx, si); err != nil || len(l) != 1 {
		t.Fatalf("the refused WriteShare reached the inner server: %v, %v", l, err)
	}
}

func TestHangUntilCtx(t *testing.T) {
	s, si, _ := setup(t)
	s.Set(faultserver.Faults{Hang: true})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := s.ReadShare(ctx, si, 0, 0, 10)
		done <- err
	}()
	// The call must not return on its own; give it a moment to prove it,
	// then end its context.
	select {
	case err := <-done:
		t.Fatalf("hung call returned before its context ended: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("hung call: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hung call did not return after its context ended")
	}
}

func TestHangReleasedBySet(t *testing.T) {
	s, si, data := setup(t)
	s.Set(faultserver.Faults{Hang: true})
	done := make(chan []byte, 1)
	go func() {
		b, err := s.ReadShare(t.Context(), si, 0, 0, 1000)
		if err != nil {
			t.Errorf("released call: %v", err)
		}
		done <- b
	}()
	for s.Calls("ReadShare") == 0 { // bounded by the test timeout
		time.Sleep(time.Millisecond)
	}
	s.Reset()
	select {
	case b := <-done:
		if !bytes.Equal(b, data) {
			t.Fatal("released call returned wrong data")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call still hung after Hang was switched off")
	}
}

func TestLatencyCutByCtx(t *testing.T) {
	s, si, data := setup(t)
	s.Set(faultserver.Faults{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.ReadShare(ctx, si, 0, 0, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadShare with an hour of latency and a short deadline: %v", err)
	}
	s.Set(faultserver.Faults{Latency: time.Millisecond})
	if got, err := s.ReadShare(t.Context(), si, 0, 0, 1000); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadShare with small latency: %v", err)
	}
}

func TestFlipEvery(t *testing.T) {
	s, si, data := setup(t)
	s.Set(faultserver.Faults{Flip: faultserver.FlipEvery})
	for _, r := range []struct{ off, n int64 }{{0, 1000}, {10, 1}, {500, 100}} {
		got, err := s.ReadShare(t.Context(), si, 0, r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		want := data[r.off : r.off+r.n]
		if diff := bitDiff(got, want); diff != 1 {
			t.Errorf("ReadShare(%d, %d) differs in %d bits, want 1", r.off, r.n, diff)
		}
	}
	if err := s.WriteSlot(t.Context(), si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: data[:50]}, {Shnum: 1, Seq: 1, Data: data[50:60]}}, lease()); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadSlot(t.Context(), si)
	if err != nil || len(got) != 2 {
		t.Fatalf("ReadSlot: %v, %v", got, err)
	}
	if bitDiff(got[0].Data, data[:50]) != 1 || bitDiff(got[1].Data, data[50:60]) != 1 {
		t.Error("ReadSlot shares not flipped by exactly one bit each")
	}
	s.Reset()
	if got, _ := s.ReadShare(t.Context(), si, 0, 0, 1000); !bytes.Equal(got, data) {
		t.Error("flipping corrupted the stored share, not just the read")
	}
}

func TestFlipAtOffset(t *testing.T) {
	s, si, data := setup(t)
	s.Set(faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: 700})
	for _, r := range []struct {
		off, n int64
		bits   int
	}{{0, 1000, 1}, {700, 1, 1}, {600, 101, 1}, {0, 700, 0}, {701, 200, 0}} {
		got, err := s.ReadShare(t.Context(), si, 0, r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := bitDiff(got, data[r.off:r.off+r.n]); diff != r.bits {
			t.Errorf("ReadShare(%d, %d) differs in %d bits, want %d", r.off, r.n, diff, r.bits)
		}
		if r.bits == 1 && got[700-r.off] == data[700] {
			t.Errorf("ReadShare(%d, %d): byte 700 not the one flipped", r.off, r.n)
		}
	}
}

func bitDiff(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		for x := a[i] ^ b[i]; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

func TestFull(t *testing.T) {
	s, si, _ := setup(t)
	s.Set(faultserver.Faults{Full: true})
	ctx := t.Context()
	r := &panicReader{}
	if err := s.WriteShare(ctx, si, 1, 10, r, lease()); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare on a full server: %v, want ErrNoSpace", err)
	}
	if err := s.WriteSlot(ctx, si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1}}, lease()); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteSlot on a full server: %v, want ErrNoSpace", err)
	}
	st, err := s.Stat(ctx)
	if err != nil || st.Quota == 0 || st.Used < st.Quota {
		t.Fatalf("Stat on a full server = %+v, %v; want Used >= Quota > 0", st, err)
	}
	// Reads still work.
	if _, err := s.ReadShare(ctx, si, 0, 0, 10); err != nil {
		t.Fatalf("ReadShare on a full server: %v", err)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("a full server read the data") }

func TestStaleSlot(t *testing.T) {
	s := faultserver.New(memserver.New("f"))
	si := gridtest.SI()
	ctx := t.Context()
	we := gridtest.Enabler("w")
	v := func(seq uint64) []grid.SlotShare {
		return []grid.SlotShare{{Shnum: 0, Seq: seq, Data: gridtest.Data(seq, 20)}}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.WriteSlot(ctx, si, we, v(seq), lease()); err != nil {
			t.Fatal(err)
		}
	}
	s.Set(faultserver.Faults{Stale: true})
	got, err := s.ReadSlot(ctx, si)
	if err != nil || len(got) != 1 || got[0].Seq != 1 || !bytes.Equal(got[0].Data, v(1)[0].Data) {
		t.Fatalf("stale ReadSlot = %+v, %v; want version 1", got, err)
	}
	s.Reset()
	if got, err := s.ReadSlot(ctx, si); err != nil || got[0].Seq != 3 {
		t.Fatalf("ReadSlot after Reset = %+v, %v; want version 3", got, err)
	}
	// A slot changed behind the wrapper's back is remembered when read.
	other := gridtest.SI()
	if err := s.Inner().WriteSlot(ctx, other, we, v(7), lease()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadSlot(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := s.Inner().WriteSlot(ctx, other, we, v(8), lease()); err != nil {
		t.Fatal(err)
	}
	s.Set(faultserver.Faults{Stale: true})
	if got, err := s.ReadSlot(ctx, other); err != nil || got[0].Seq != 7 {
		t.Fatalf("stale ReadSlot of a slot written behind the wrapper = %+v, %v; want seq 7", got, err)
	}
	// With no older version, stale mode passes the current one through.
	fresh := gridtest.SI()
	if err := s.WriteSlot(ctx, fresh, we, v(1), lease()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadSlot(ctx, fresh); err != nil || len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("stale ReadSlot with no history = %+v, %v", got, err)
	}
}

// Faults switch safely while calls are in flight (run with -race).
func TestSwitchConcurrently(t *testing.T) {
	s, si, data := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for range 200 {
				c, cl := context.WithTimeout(ctx, 5*time.Millisecond)
				b, err := s.ReadShare(c, si, 0, 0, 1000)
				cl()
				if err == nil && len(b) != len(data) {
					t.Errorf("worker %d: short read %d", w, len(b))
				}
			}
		})
	}
	modes := []faultserver.Faults{{Vanish: true}, {Hang: true}, {Flip: faultserver.FlipEvery}, {Latency: time.Millisecond}, {}}
	for i := range 100 {
		s.Set(modes[i%len(modes)])
		s.Update(func(f *faultserver.Faults) { f.Stale = !f.Stale })
	}
	s.Reset()
	wg.Wait()
	if got, err := s.ReadShare(ctx, si, 0, 0, 1000); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after switching: %v", err)
	}
}

func TestFaultGrid(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(5)
	ids := map[grid.ServerID]bool{}
	for i, s := range servers {
		ids[s.ID()] = true
		if grid.Server(faults[i]) != s {
			t.Fatalf("servers[%d] is not faults[%d]", i, i)
		}
	}
	if len(ids) != 5 {
		t.Fatalf("ids not distinct: %v", ids)
	}
	faults[2].Set(faultserver.Faults{Vanish: true})
	if _, err := servers[2].ListShares(t.Context(), gridtest.SI()); !errors.Is(err, faultserver.ErrVanished) {
		t.Fatalf("vanished grid member: %v", err)
	}
	if _, err := servers[1].ListShares(t.Context(), gridtest.SI()); err != nil {
		t.Fatalf("healthy grid member: %v", err)
	}
}

// plain is a server with none of the optional abilities.
type plain struct{ inner grid.Server }

func (p plain) ID() grid.ServerID { return p.inner.ID() }
func (p plain) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, l grid.Lease) error {
	return p.inner.WriteShare(ctx, si, shnum, size, r, l)
}
func (p plain) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, n int64) ([]byte, error) {
	return p.inner.ReadShare(ctx, si, shnum, off, n)
}
func (p plain) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	return p.inner.ListShares(ctx, si)
}
func (p plain) AddLease(ctx context.Context, si caps.StorageIndex, l grid.Lease) error {
	return p.inner.AddLease(ctx, si, l)
}
func (p plain) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	return p.inner.ReadSlot(ctx, si)
}
func (p plain) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, w []grid.SlotShare, l grid.Lease) error {
	return p.inner.WriteSlot(ctx, si, we, w, l)
}

// The wrapper claims exactly the optional abilities of the server it wraps.
func TestAsServerClaimsOnlyInnerAbilities(t *testing.T) {
	v := faultserver.New(plain{memserver.New("p")}).AsServer()
	if _, ok := v.(grid.Statter); ok {
		t.Error("wrapper of a server without Stat claims grid.Statter")
	}
	if _, ok := v.(grid.LeaseCanceller); ok {
		t.Error("wrapper of a server without CancelLease claims grid.LeaseCanceller")
	}
	full := faultserver.New(memserver.New("m")).AsServer()
	if _, ok := full.(grid.Statter); !ok {
		t.Error("wrapper of a memserver lost grid.Statter")
	}
	if _, ok := full.(grid.LeaseCanceller); !ok {
		t.Error("wrapper of a memserver lost grid.LeaseCanceller")
	}
}

// Servers whose wrapper answers Stat with errors.ErrUnsupported (the
// *Server itself, or a remote peer that cannot say) still get shares: an
// upload to ten of them is happy.
func TestUnsupportedStatKeepsServerInPlacement(t *testing.T) {
	for _, name := range []string{"*Server", "AsServer"} {
		t.Run(name, func(t *testing.T) {
			servers := make([]grid.Server, 10)
			for i := range servers {
				f := faultserver.New(plain{memserver.New(grid.ServerID(fmt.Sprint("p", i)))})
				servers[i] = f
				if name == "AsServer" {
					servers[i] = f.AsServer()
				}
			}
			c, err := grid.NewClient(grid.ClientConfig{Servers: servers, Convergence: bytes.Repeat([]byte{1}, 32), LeaseSecret: [32]byte{1}})
			if err != nil {
				t.Fatal(err)
			}
			data := gridtest.Data(3, 10_000)
			if _, err := c.Upload(t.Context(), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{}); err != nil {
				t.Fatalf("upload to servers whose Stat is unsupported: %v", err)
			}
		})
	}
}
