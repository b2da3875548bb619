package grid_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func mutCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mutClient(t testing.TB, servers []grid.Server) *grid.Client {
	t.Helper()
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:        servers,
		Convergence:    bytes.Repeat([]byte{5}, 32),
		LeaseSecret:    [32]byte{5},
		Params:         caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 4096},
		RequestTimeout: 2 * time.Second,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mutCreate(t testing.TB, c *grid.Client, content []byte, dir bool) caps.MutableWriteCap {
	t.Helper()
	cp, err := c.CreateMutable(mutCtx(t), content, dir)
	if err != nil {
		t.Fatalf("CreateMutable: %v", err)
	}
	wc, ok := cp.(caps.MutableWriteCap)
	if !ok {
		t.Fatalf("CreateMutable returned %T", cp)
	}
	return wc
}

func wantContent(t *testing.T, c *grid.Client, cp caps.Cap, want []byte, wantSeq uint64) {
	t.Helper()
	got, v, err := c.Retrieve(mutCtx(t), cp)
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Retrieve: got %q, want %q", clipBytes(got), clipBytes(want))
	}
	if v.Seq != wantSeq {
		t.Fatalf("Retrieve: seq %d, want %d", v.Seq, wantSeq)
	}
}

func clipBytes(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func TestMutableCreatePublishRetrieve(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	c := mutClient(t, servers)
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dir), func(t *testing.T) {
			wc := mutCreate(t, c, []byte("version one"), dir)
			if wc.Dir != dir {
				t.Fatalf("write cap Dir=%v", wc.Dir)
			}
			wantContent(t, c, wc, []byte("version one"), 1)
			wantContent(t, c, wc.ReadCap(), []byte("version one"), 1)

			v, err := c.Publish(mutCtx(t), wc, []byte("version two, longer"))
			if err != nil {
				t.Fatal(err)
			}
			if v.Seq != 2 {
				t.Fatalf("Publish: seq %d, want 2", v.Seq)
			}
			// Another client, knowing only the read cap, sees it.
			other := mutClient(t, servers)
			rc, err := caps.Parse(wc.ReadCap().String())
			if err != nil {
				t.Fatal(err)
			}
			wantContent(t, other, rc, []byte("version two, longer"), 2)
			// One share per server on 10 servers.
			for _, s := range servers {
				ss, err := s.ReadSlot(mutCtx(t), wc.StorageIndex())
				if err != nil || len(ss) != 1 || ss[0].Seq != 2 {
					t.Fatalf("server %v holds %d slot shares (err %v)", s.ID(), len(ss), err)
				}
			}
			if _, err := c.Publish(mutCtx(t), wc, nil); err != nil {
				t.Fatal(err)
			}
			wantContent(t, c, wc, []byte{}, 3)
			// Renewal reaches every server holding shares.
			n, err := c.RenewMutable(mutCtx(t), wc.VerifyCap())
			if err != nil || n != 10 {
				t.Fatalf("RenewMutable: %d servers, %v; want 10", n, err)
			}
		})
	}
	_, _, err := c.Retrieve(mutCtx(t), caps.MutableWriteCap{}.ReadCap())
	if !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("Retrieve of a file never written: %v, want ErrNotFound", err)
	}
	if _, err := c.RenewMutable(mutCtx(t), caps.MutableWriteCap{}); !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("RenewMutable of a file never written: %v, want ErrNotFound", err)
	}
	if _, _, err := c.Retrieve(mutCtx(t), caps.CHKCap{}); err == nil {
		t.Error("Retrieve accepted a chk cap")
	}
}

// TestMutableServersGone: any n-k servers may vanish; one more and the read
// fails with ErrNotEnoughShares.
func TestMutableServersGone(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	c := mutClient(t, servers)
	content := bytes.Repeat([]byte("dirtable"), 1000)
	wc := mutCreate(t, c, content, true)
	for i := range 7 {
		faults[i].Set(faultserver.Faults{Vanish: true})
	}
	wantContent(t, c, wc, content, 1)
	faults[7].Set(faultserver.Faults{Vanish: true})
	if _, _, err := c.Retrieve(mutCtx(t), wc); !errors.Is(err, grid.ErrNotEnoughShares) {
		t.Fatalf("Retrieve with 2 servers: %v, want ErrNotEnoughShares", err)
	}
	// A publish that reaches fewer than Happy servers fails.
	if _, err := c.Publish(mutCtx(t), wc, []byte("x")); !errors.Is(err, grid.ErrNotHappy) {
		t.Fatalf("Publish to 2 servers: %v, want ErrNotHappy", err)
	}
	// Hanging servers cost one timeout, not a failure.
	for i := range 7 {
		faults[i].Set(faultserver.Faults{Hang: true})
	}
	faults[7].Reset()
	wantContent(t, c, wc, content, 1)
}

// TestMutableBitFlips: flipped bits on servers are caught per share; never
// wrong content.
func TestMutableBitFlips(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	c := mutClient(t, servers)
	content := bytes.Repeat([]byte("0123456789abcdef"), 300)
	wc := mutCreate(t, c, content, false)
	for i := range 7 {
		faults[i].Set(faultserver.Faults{Flip: faultserver.FlipEvery})
	}
	wantContent(t, c, wc, content, 1)
	for off := int64(0); off < int64(caps.MutableShareSize(uint64(len(content)), 3, 10)); off += 37 {
		for i := range 10 {
			faults[i].Set(faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: off})
		}
		got, _, err := c.Retrieve(mutCtx(t), wc)
		if err == nil {
			t.Fatalf("flip at offset %d on every server: got %d bytes, want an error", off, len(got))
		}
		if !errors.Is(err, grid.ErrNotEnoughShares) {
			t.Fatalf("flip at offset %d: %v, want ErrNotEnoughShares", off, err)
		}
	}
}

// publishVersions creates a file and publishes versions 2..n through the
// fault wrappers (so they remember each version).
func publishVersions(t *testing.T, c *grid.Client, n int) caps.MutableWriteCap {
	t.Helper()
	wc := mutCreate(t, c, []byte("v1"), false)
	for i := 2; i <= n; i++ {
		if _, err := c.Publish(mutCtx(t), wc, fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return wc
}

// TestMutableStaleServers: servers serving an old version do not hide the
// newest one while k honest servers remain.
func TestMutableStaleServers(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	c := mutClient(t, servers)
	wc := publishVersions(t, c, 4)
	for i := range 7 {
		faults[i].Set(faultserver.Faults{Stale: true})
	}
	fresh := mutClient(t, servers)
	wantContent(t, fresh, wc.ReadCap(), []byte("v4"), 4)
	// A publish while stale servers hide the newest seq still numbers above
	// it (the honest servers report it) and lands.
	v, err := c.Publish(mutCtx(t), wc, []byte("v5"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Seq != 5 {
		t.Fatalf("publish over stale servers: seq %d, want 5", v.Seq)
	}
	for i := range 7 {
		faults[i].Reset()
	}
	wantContent(t, mutClient(t, servers), wc, []byte("v5"), 5)
}

// TestMutableRollback: once a client has seen seq 5, servers that all
// serve an older version get ErrRollback, not old data.
func TestMutableRollback(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	writer := mutClient(t, servers)
	wc := publishVersions(t, writer, 4)
	reader := mutClient(t, servers)
	wantContent(t, reader, wc.ReadCap(), []byte("v4"), 4)
	if _, err := writer.Publish(mutCtx(t), wc, []byte("v5")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, reader, wc.ReadCap(), []byte("v5"), 5)
	for _, f := range faults {
		f.Set(faultserver.Faults{Stale: true})
	}
	got, _, err := reader.Retrieve(mutCtx(t), wc.ReadCap())
	if !errors.Is(err, grid.ErrRollback) {
		t.Fatalf("Retrieve after rollback: %q, %v; want ErrRollback", got, err)
	}
	if got != nil {
		t.Fatal("rolled-back content returned")
	}
	// The memory is per client (or per SeqStore): a client that never saw
	// seq 5 cannot tell.
	store := grid.NewMemSeqStore()
	store.Observe(wc.StorageIndex(), 5)
	c2, err := grid.NewClient(grid.ClientConfig{Servers: servers, Convergence: bytes.Repeat([]byte{5}, 32), LeaseSecret: [32]byte{5}, Params: caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 4096}, SeqStore: store, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c2.Retrieve(mutCtx(t), wc); !errors.Is(err, grid.ErrRollback) {
		t.Fatalf("Retrieve with a persisted SeqStore: %v, want ErrRollback", err)
	}
	// Modify refuses to build on rolled-back data too.
	if _, err := reader.Modify(mutCtx(t), wc, func(old []byte, _ grid.Version) ([]byte, error) {
		return append(old, '!'), nil
	}); !errors.Is(err, grid.ErrRollback) {
		t.Fatalf("Modify after rollback: %v, want ErrRollback", err)
	}
}

// TestMutableWriteEnabler: someone with the read cap (or nothing) cannot
// replace the shares: servers refuse a wrong write enabler, and a forged
// version signed by another key is ignored by readers.
func TestMutableWriteEnabler(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	c := mutClient(t, servers)
	wc := mutCreate(t, c, []byte("genuine"), false)
	si := wc.StorageIndex()
	attacker, err := caps.NewMutableWriteCap(bytes.NewReader(bytes.Repeat([]byte{9}, 32)), false)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := caps.EncodeMutable(attacker, 100, []byte("forged"), 3, 10, bytes.NewReader(make([]byte, 16)))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers {
		// The attacker's own write enabler, and the one for another server.
		for _, we := range []grid.WriteEnabler{caps.WriteEnabler(attacker, []byte(s.ID())), caps.WriteEnabler(wc, []byte(servers[(i+1)%10].ID()))} {
			err := s.WriteSlot(mutCtx(t), si, we, []grid.SlotShare{{Shnum: i, Seq: 100, Data: forged[i]}}, grid.Lease{Expires: time.Now().Add(time.Hour)})
			if !errors.Is(err, grid.ErrBadWriteEnabler) {
				t.Fatalf("server %v: forged write: %v, want ErrBadWriteEnabler", s.ID(), err)
			}
		}
	}
	wantContent(t, c, wc.ReadCap(), []byte("genuine"), 1)

	// A fresh slot an attacker fills first with forged shares (they know
	// the storage index from a read or verify cap) is not accepted by readers.
	wc2, err := caps.NewMutableWriteCap(bytes.NewReader(bytes.Repeat([]byte{5}, 32)), false)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers {
		err := s.WriteSlot(mutCtx(t), wc2.StorageIndex(), caps.WriteEnabler(attacker, []byte(s.ID())), []grid.SlotShare{{Shnum: i, Seq: 100, Data: forged[i]}}, grid.Lease{Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, _, err := c.Retrieve(mutCtx(t), wc2.ReadCap()); !errors.Is(err, grid.ErrNotEnoughShares) {
		t.Fatalf("Retrieve of a slot holding only forged shares: %q, %v; want ErrNotEnoughShares", got, err)
	}
}

// dirChange returns a Modify function that applies changes to a directory
// table, and counts its calls.
func dirChange(wc caps.MutableWriteCap, calls *int, changes ...caps.Change) func([]byte, grid.Version) ([]byte, error) {
	return func(old []byte, _ grid.Version) ([]byte, error) {
		*calls++
		tb, err := caps.DecodeTable(old, &wc)
		if err != nil {
			return nil, err
		}
		if err := tb.Apply(changes); err != nil {
			return nil, err
		}
		return tb.Encode(&wc)
	}
}

func fileEntry(i int) *caps.Entry {
	c := caps.CHKCap{K: 3, N: 10, Size: uint64(i)}
	c.Key[0], c.Key[1] = byte(i), byte(i>>8)
	return &caps.Entry{Type: caps.TypeFile, ReadCap: c.String(), Size: uint64(i)}
}

// raceModify runs one Modify per client at the same time; each function
// call waits (bounded) until every client has retrieved once, so their
// first publishes collide on the same sequence number.
func raceModify(t *testing.T, clients []*grid.Client, wc caps.MutableWriteCap, fns []func([]byte, grid.Version) ([]byte, error)) []error {
	t.Helper()
	var barrier sync.WaitGroup
	barrier.Add(len(clients))
	released := make(chan struct{})
	go func() { barrier.Wait(); close(released) }()
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			first := true
			_, errs[i] = c.Modify(mutCtx(t), wc, func(old []byte, v grid.Version) ([]byte, error) {
				if first {
					first = false
					barrier.Done()
					select {
					case <-released:
					case <-time.After(5 * time.Second):
					}
				}
				return fns[i](old, v)
			})
		})
	}
	wg.Wait()
	return errs
}

// TestMutableModifyConcurrent: two uncoordinated clients edit one directory
// at the same time. Different names: both land. Same name: one wins, the
// other gets ErrConflict. No write is silently lost.
func TestMutableModifyConcurrent(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	// Different latencies per server make the two writers' shares
	// interleave differently on each server.
	for i, f := range faults {
		f.Set(faultserver.Faults{Latency: time.Duration(i%4) * time.Millisecond})
	}
	a, b := mutClient(t, servers), mutClient(t, servers)
	empty, err := caps.NewTable().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	wc := mutCreate(t, a, empty, true)

	const rounds = 6
	retries := 0
	for r := range rounds {
		var callsA, callsB int
		nameA, nameB := fmt.Sprintf("a-%d", r), fmt.Sprintf("b-%d", r)
		errs := raceModify(t, []*grid.Client{a, b}, wc, []func([]byte, grid.Version) ([]byte, error){
			dirChange(wc, &callsA, caps.Change{Name: nameA, New: fileEntry(2 * r)}),
			dirChange(wc, &callsB, caps.Change{Name: nameB, New: fileEntry(2*r + 1)}),
		})
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: different names: errors %v / %v", r, errs[0], errs[1])
		}
		retries += callsA + callsB - 2
		content, _, err := mutClient(t, servers).Retrieve(mutCtx(t), wc.ReadCap())
		if err != nil {
			t.Fatal(err)
		}
		tb, err := caps.DecodeTable(content, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := range r + 1 {
			for _, n := range []string{fmt.Sprintf("a-%d", j), fmt.Sprintf("b-%d", j)} {
				if _, ok := tb.Get(n); !ok {
					t.Fatalf("round %d: entry %q lost (table has %v)", r, n, tb.Names())
				}
			}
		}
	}
	if retries == 0 {
		t.Errorf("no Modify retried in %d racing rounds: the test did not race", rounds)
	}
	t.Logf("%d function re-applications over %d rounds", retries, rounds)

	// Same name: exactly one wins.
	for r := range rounds {
		name := fmt.Sprintf("same-%d", r)
		ea, eb := fileEntry(1000+r), fileEntry(2000+r)
		var ca, cb int
		errs := raceModify(t, []*grid.Client{a, b}, wc, []func([]byte, grid.Version) ([]byte, error){
			dirChange(wc, &ca, caps.Change{Name: name, New: ea}),
			dirChange(wc, &cb, caps.Change{Name: name, New: eb}),
		})
		conflicts := 0
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil:
				winner = []string{ea.ReadCap, eb.ReadCap}[i]
			case errors.Is(err, grid.ErrConflict):
				var ce *caps.ConflictError
				if !errors.As(err, &ce) || ce.Name != name {
					t.Fatalf("round %d: conflict error %v does not name %q", r, err, name)
				}
				conflicts++
			default:
				t.Fatalf("round %d: client %d: %v", r, i, err)
			}
		}
		if conflicts != 1 {
			t.Fatalf("round %d: same name: %d conflicts (errors %v / %v), want exactly 1", r, conflicts, errs[0], errs[1])
		}
		content, _, err := mutClient(t, servers).Retrieve(mutCtx(t), wc)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := caps.DecodeTable(content, &wc)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := tb.Get(name); !ok || e.ReadCap != winner {
			t.Fatalf("round %d: %q holds %q, want the winner's cap", r, name, e.ReadCap)
		}
	}
}

// TestMutableModifyConflictUnchanged: an error from the function comes back
// unchanged and nothing is published; an unchanged result publishes nothing.
func TestMutableModifyConflictUnchanged(t *testing.T) {
	c := mutClient(t, gridtest.NewMemGrid(10))
	wc := mutCreate(t, c, []byte("base"), false)
	myErr := &caps.ConflictError{Name: "x"}
	_, err := c.Modify(mutCtx(t), wc, func([]byte, grid.Version) ([]byte, error) { return nil, myErr })
	if err != error(myErr) {
		t.Fatalf("Modify returned %v (%T), want the function's error unchanged", err, err)
	}
	v, err := c.Modify(mutCtx(t), wc, func(old []byte, _ grid.Version) ([]byte, error) { return old, nil })
	if err != nil || v.Seq != 1 {
		t.Fatalf("no-op Modify: seq %d, %v; want seq 1", v.Seq, err)
	}
	v, err = c.Modify(mutCtx(t), wc, func(old []byte, v grid.Version) ([]byte, error) {
		if v.Seq != 1 || string(old) != "base" {
			return nil, fmt.Errorf("function saw seq %d content %q", v.Seq, old)
		}
		return append(old, "+1"...), nil
	})
	if err != nil || v.Seq != 2 {
		t.Fatalf("Modify: seq %d, %v; want seq 2", v.Seq, err)
	}
	wantContent(t, c, wc, []byte("base+1"), 2)
}

func BenchmarkMutablePublish1MiB(b *testing.B) {
	c := mutClient(b, gridtest.NewMemGrid(10))
	content := bytes.Repeat([]byte{1}, 1<<20)
	wc := mutCreate(b, c, content, false)
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if _, err := c.Publish(mutCtx(b), wc, content); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMutableRetrieve1MiB(b *testing.B) {
	c := mutClient(b, gridtest.NewMemGrid(10))
	content := bytes.Repeat([]byte{1}, 1<<20)
	wc := mutCreate(b, c, content, false)
	rc := wc.ReadCap()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if _, _, err := c.Retrieve(mutCtx(b), rc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMutableModifyManyWriters: four clients add their own names to one
// directory at once, several rounds; every entry survives.
func TestMutableModifyManyWriters(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	for i, f := range faults {
		f.Set(faultserver.Faults{Latency: time.Duration(i%3) * time.Millisecond})
	}
	clients := make([]*grid.Client, 4)
	for i := range clients {
		clients[i] = mutClient(t, servers)
	}
	empty, err := caps.NewTable().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	wc := mutCreate(t, clients[0], empty, true)
	const rounds = 4
	for r := range rounds {
		calls := make([]int, len(clients))
		fns := make([]func([]byte, grid.Version) ([]byte, error), len(clients))
		for i := range clients {
			fns[i] = dirChange(wc, &calls[i], caps.Change{Name: fmt.Sprintf("c%d-r%d", i, r), New: fileEntry(100*r + i)})
		}
		for i, err := range raceModify(t, clients, wc, fns) {
			if err != nil {
				t.Fatalf("round %d client %d: %v", r, i, err)
			}
		}
	}
	content, v, err := mutClient(t, servers).Retrieve(mutCtx(t), wc)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := caps.DecodeTable(content, &wc)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != rounds*len(clients) {
		t.Fatalf("table has %d entries after %d writes (seq %d): %v", tb.Len(), rounds*len(clients), v.Seq, tb.Names())
	}
}

// TestMutableDirHelpers: CreateDir, ModifyDir and ReadDir, and the
// read-only view through a dir-ro cap.
func TestMutableDirHelpers(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	c := mutClient(t, servers)
	child, err := c.CreateDir(mutCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.CreateDir(mutCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := &caps.Entry{Type: caps.TypeDir, ReadCap: child.ReadCap().String(), WriteCap: child.String()}
	changes := []caps.Change{{Name: "sub", New: sub}, {Name: "f", New: fileEntry(1)}}
	v, err := c.ModifyDir(mutCtx(t), root, changes)
	if err != nil || v.Seq != 2 {
		t.Fatalf("ModifyDir: seq %d, %v", v.Seq, err)
	}
	if changes[0].New != sub {
		t.Error("ModifyDir changed the caller's slice")
	}
	// Same change again: already there, not a conflict, nothing published.
	if v, err := c.ModifyDir(mutCtx(t), root, changes); err != nil || v.Seq != 2 {
		t.Fatalf("repeated ModifyDir: seq %d, %v; want seq 2 and no error", v.Seq, err)
	}
	// Replacing with a stale Prev conflicts.
	_, err = c.ModifyDir(mutCtx(t), root, []caps.Change{{Name: "f", New: fileEntry(2), Prev: fileEntry(3).ReadCap}})
	if !errors.Is(err, grid.ErrConflict) {
		t.Fatalf("stale Prev: %v, want ErrConflict", err)
	}
	rw, _, err := c.ReadDir(mutCtx(t), root)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := rw.Get("sub"); !ok || e.WriteCap != child.String() {
		t.Fatalf("write view of sub: %+v", e)
	}
	ro, _, err := mutClient(t, servers).ReadDir(mutCtx(t), root.ReadCap())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := ro.Get("sub"); !ok || e.WriteCap != "" || e.ReadCap != child.ReadCap().String() {
		t.Fatalf("read-only view of sub: %+v", e)
	}
	if _, _, err := c.ReadDir(mutCtx(t), caps.MutableWriteCap{}); err == nil {
		t.Error("ReadDir accepted a mut-rw cap")
	}
}

// TestMutableSpareServers: with more servers than shares, the shares of
// servers that fail go to the next servers on the ring.
func TestMutableSpareServers(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(13)
	c := mutClient(t, servers)
	wc := mutCreate(t, c, []byte("v1"), false)
	ring := grid.PermutedRing(wc.StorageIndex(), servers)
	// Break two of the servers that hold shares (not the spares).
	broken := map[grid.ServerID]bool{ring[0].ID(): true, ring[4].ID(): true}
	for i, s := range servers {
		if broken[s.ID()] {
			faults[i].Set(faultserver.Faults{Full: true})
		}
	}
	if _, err := c.Publish(mutCtx(t), wc, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, s := range servers {
		ss, err := s.ReadSlot(mutCtx(t), wc.StorageIndex())
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range ss {
			if sh.Seq == 2 {
				holders++
				if broken[s.ID()] {
					t.Errorf("full server %v took a share", s.ID())
				}
			}
		}
	}
	if holders != 10 {
		t.Fatalf("%d shares of v2 placed, want 10", holders)
	}
	wantContent(t, c, wc, []byte("v2"), 2)
}

// TestMutableStalledServers: servers that stall until their request times
// out do not stall a read: with the request timeout far beyond the test's
// deadline, Retrieve must still return the content.
func TestMutableStalledServers(t *testing.T) {
	servers, faults := gridtest.NewFaultGrid(10)
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:        servers,
		Convergence:    bytes.Repeat([]byte{5}, 32),
		LeaseSecret:    [32]byte{5},
		Params:         caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 4096},
		RequestTimeout: time.Hour,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	wc := mutCreate(t, c, []byte("v1"), true)
	for i := range 3 {
		faults[i].Set(faultserver.Faults{Hang: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, v, err := c.Retrieve(ctx, wc.ReadCap())
	if err != nil || string(got) != "v1" || v.Seq != 1 {
		t.Fatalf("Retrieve with 3 stalled servers: %q seq %d, %v", got, v.Seq, err)
	}
	tb, _, err := c.ReadDir(ctx, wc)
	if err == nil {
		t.Fatalf("ReadDir of a non-table decoded %d entries", tb.Len())
	}
	for i := range 3 {
		faults[i].Reset()
	}
}
