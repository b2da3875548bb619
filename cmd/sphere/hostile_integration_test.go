package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/node"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// The hostile-member harness: a grid of real `sphere node` processes on
// 127.0.0.1 (a victim and three honest members) and a hostile member that
// joined with a normal invite, ran its node once (so it is a member like
// any other), then attacks the victim from this test process with its own
// identity and with throwaway ones, from 127.0.0.2 (so per-source limits
// see it as another host, as a real attacker would be). After each attack
// the victim's heap, protocol memory and disk must be within its budgets,
// and honest put/get between the other members must succeed.
//
// To add an attack: write a func(t *testing.T, g *hostileGrid) and list it
// in TestHostileMember's attacks; use g.attacker / g.throwaway for hosts,
// g.victimID for the target, and g.checkVictim / g.honestPutGet to judge.

// victimQuota is the victim's storage quota: the disk budget checked.
const victimQuota = 160 << 20

type hostileGrid struct {
	c        *cluster
	psk      []byte
	victimID peer.ID
	victim   []peer.AddrInfo // the victim's addresses
	attacker host.Host       // the hostile member's own identity
	priv     crypto.PrivKey  // the hostile member's identity key
	procs    map[string]*proc
	puts     int
}

// TestHostileMember runs every attack against one grid, each followed by
// the same checks.
func TestHostileMember(t *testing.T) {
	g := newHostileGrid(t)
	attacks := []struct {
		name string
		run  func(t *testing.T, g *hostileGrid)
	}{
		{"readFlood", attackReadFlood},
		{"slotReadFlood", attackSlotReadFlood},
		{"trickle", attackTrickle},
		{"throwawayIdentities", attackIdentities},
		{"diskFill", attackDiskFill},
		{"leaseFlood", attackLeaseFlood},
		{"memberBookPoisoning", attackMemberBook},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			a.run(t, g)
			g.checkVictim(t)
			g.honestPutGet(t)
		})
	}
}

func newHostileGrid(t *testing.T) *hostileGrid {
	c := newCluster(t)
	g := &hostileGrid{c: c, procs: map[string]*proc{}}
	names := []string{"victim", "a", "b", "c", "hostile"}
	for _, n := range names {
		if _, err := c.run(n, "init"); err != nil {
			t.Fatal(err)
		}
		h, err := home.Open(c.home(n))
		if err != nil {
			t.Fatal(err)
		}
		// Five members: 2-of-3 lets honest puts go on while the victim is
		// full or busy (K,H,N is a home setting).
		h.Config.Params.K, h.Config.Params.Happy, h.Config.Params.N = 2, 3, 3
		if n == "victim" {
			h.Config.Node.Quota = victimQuota
		}
		if err := h.Save(); err != nil {
			t.Fatal(err)
		}
	}
	g.procs["victim"] = c.start("victim", "node")
	c.waitReady("victim", g.procs["victim"])
	for _, n := range names[1:] {
		out, err := c.run("victim", "invite") // invites are one-time: one each
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.run(n, "join", lastLine(out)); err != nil {
			t.Fatal(err)
		}
		g.procs[n] = c.start(n, "node")
		c.waitReady(n, g.procs[n])
	}
	for try := 0; len(c.status("victim").Connected) < len(names)-1; try++ {
		if try == 150 {
			t.Fatalf("victim connected to %d of %d members", len(c.status("victim").Connected), len(names)-1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The hostile member stops its node and acts from here, as itself.
	g.procs["hostile"].stop()
	hh, err := home.Open(c.home("hostile"))
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := hh.NodeIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if g.psk, err = hh.GridKey(); err != nil {
		t.Fatal(err)
	}
	st := c.status("victim")
	if g.victimID, err = peer.Decode(st.PeerID); err != nil {
		t.Fatal(err)
	}
	if g.victim, err = node.ParseAddrs(st.Addrs); err != nil {
		t.Fatal(err)
	}
	g.attacker, g.priv = g.newHost(t, priv), priv
	return g
}

// newHost is a grid host from 127.0.0.2 with identity priv (nil: a
// throwaway one), connected to the victim.
func (g *hostileGrid) newHost(t *testing.T, priv crypto.PrivKey) host.Host {
	t.Helper()
	h, err := node.NewMemberHost(priv, g.psk, []string{"/ip4/127.0.0.2/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	for _, ai := range g.victim {
		h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	}
	return h
}

// checkVictim: the victim's protocol memory within its budget, its heap
// within the budget plus a fixed allowance for everything else, its disk
// within its quota, and it answers.
func (g *hostileGrid) checkVictim(t *testing.T) {
	t.Helper()
	st := g.c.status("victim")
	m := st.Memory
	t.Logf("victim: heap %d MiB, protocol memory %d of %d MiB, %d streams from %d sources, %d refused busy, %d cut off; disk %d of %d MiB",
		m.HeapInuse>>20, m.Buffered>>20, m.Budget>>20, m.ServedStreams, m.ServedSources, m.Refused, m.CutOff, st.Used>>20, st.Quota>>20)
	if m.Budget <= 0 {
		t.Fatalf("victim status reports no protocol memory budget: %+v", m)
	}
	if m.Buffered > m.Budget {
		t.Errorf("victim holds %d bytes of protocol memory, budget %d", m.Buffered, m.Budget)
	}
	if allowance := uint64(m.Budget) + 128<<20; m.HeapInuse > allowance {
		t.Errorf("victim heap %d MiB, over its budget %d MiB + 128 MiB", m.HeapInuse>>20, m.Budget>>20)
	}
	if st.Quota != victimQuota || st.Used > st.Quota {
		t.Errorf("victim stores %d bytes, quota %d (want %d)", st.Used, st.Quota, victimQuota)
	}
	// What is on disk: the quota plus room for the index and metadata.
	if du := dirSize(t, g.c.home("victim")); du > victimQuota+48<<20 {
		t.Errorf("victim home holds %d MiB on disk, quota %d MiB", du>>20, victimQuota>>20)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// honestPutGet: a put from one honest member and a get from another
// return the same bytes.
func (g *hostileGrid) honestPutGet(t *testing.T) {
	t.Helper()
	g.puts++
	file, data := randomFile(t, g.c.dir, 4<<20+g.puts)
	capStr := g.c.put("a", file)
	g.c.getSame("b", capStr, data)
}

// readShareRequest is a version 2 ReadShare request, built from the spec
// (docs/spec/storage-protocol.md) as an attacker would: 42 bytes.
func readShareRequest(si caps.StorageIndex, shnum uint32, off, length uint64) []byte {
	b := []byte{2, 2, 0, 0, 0, 36}
	b = append(b, si[:]...)
	b = binary.BigEndian.AppendUint32(b, shnum)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint64(b, length)
}

// openRaw opens storage-protocol streams from h to the victim and writes
// msg on each, leaving them open and unread; they are reset at cleanup.
// It returns how many opened (the victim may refuse some).
func (g *hostileGrid) openRaw(t *testing.T, h host.Host, n int, msg []byte) []network.Stream {
	t.Helper()
	var ss []network.Stream
	for range n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		s, err := h.NewStream(ctx, g.victimID, p2p.ProtocolID)
		cancel()
		if err != nil {
			continue
		}
		if _, err := s.Write(msg); err != nil {
			_ = s.Reset()
			continue
		}
		ss = append(ss, s)
	}
	t.Cleanup(func() {
		for _, s := range ss {
			_ = s.Reset()
		}
	})
	return ss
}

// attackReadFlood: the hostile member stores one 64 MiB share on the
// victim, then it and eight throwaway identities ask for the whole share
// 48 times with 42-byte requests and never read the answers. Before the
// fix each request made the store allocate 64 MiB (3 GiB in all).
func attackReadFlood(t *testing.T, g *hostileGrid) {
	cl := p2p.NewClient(g.attacker, g.victimID, p2p.ClientOptions{})
	var si caps.StorageIndex
	_, _ = rand.Read(si[:])
	const size = 64 << 20
	share := make([]byte, size)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cl.WriteShare(ctx, si, 0, size, bytes.NewReader(share), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("hostile member stores a share on the victim: %v", err)
	}
	req := readShareRequest(si, 0, 0, size)
	opened := len(g.openRaw(t, g.attacker, 24, req))
	for range 8 {
		opened += len(g.openRaw(t, g.newHost(t, nil), 3, req))
	}
	time.Sleep(time.Second) // the victim takes them up
	t.Logf("%d flood streams opened", opened)
	g.checkVictim(t)
	g.honestPutGet(t) // during the flood
}

// attackSlotReadFlood: the hostile member writes a 64 MiB mutable slot on
// the victim (version 2 carries it), then it and eight throwaway
// identities ask for it 48 times and never read. A store returns a slot
// whole, so the victim runs one slot read per source and counts each
// answer in the budget.
func attackSlotReadFlood(t *testing.T, g *hostileGrid) {
	cl := p2p.NewClient(g.attacker, g.victimID, p2p.ClientOptions{})
	var si caps.StorageIndex
	_, _ = rand.Read(si[:])
	writes := []grid.SlotShare{{Shnum: 0, Seq: 1, Data: make([]byte, 32<<20)}, {Shnum: 1, Seq: 1, Data: make([]byte, 32<<20)}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cl.WriteSlot(ctx, si, grid.WriteEnabler{1}, writes, grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("hostile member writes a 64 MiB slot on the victim: %v", err)
	}
	req := append([]byte{2, 5, 0, 0, 0, 16}, si[:]...)
	opened := len(g.openRaw(t, g.attacker, 24, req))
	for range 8 {
		opened += len(g.openRaw(t, g.newHost(t, nil), 3, req))
	}
	time.Sleep(2 * time.Second) // the victim reads the slot for as many as it will
	t.Logf("%d slot flood streams opened", opened)
	g.checkVictim(t)
	g.honestPutGet(t) // during the flood
}

// attackTrickle: 16 streams send a request a byte every 500 ms, and one
// reads a 64 MiB answer 100 bytes a second; the victim cuts them all off
// (the rate floor) although every byte comes within the idle timeout.
func attackTrickle(t *testing.T, g *hostileGrid) {
	before := g.c.status("victim").Memory.CutOff
	list := append([]byte{2, 3, 0, 0, 0, 16}, make([]byte, 16)...) // ListShares
	var wg sync.WaitGroup
	var mu sync.Mutex
	cut := 0
	for range 16 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			s, err := g.attacker.NewStream(ctx, g.victimID, p2p.ProtocolID)
			cancel()
			if err != nil {
				return
			}
			defer s.Reset()
			for i := range 120 { // at most 60 s
				_ = s.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := s.Write(list[i%len(list) : i%len(list)+1]); err != nil {
					break
				}
				_ = s.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := s.Read(make([]byte, 64)); err != nil && !isTimeoutErr(err) {
					mu.Lock()
					cut++
					mu.Unlock()
					return
				}
			}
		})
	}
	g.honestPutGet(t) // during the trickle
	wg.Wait()
	if cut < 16 {
		t.Errorf("%d of 16 trickling streams cut off within 60 s", cut)
	}
	after := g.c.status("victim").Memory.CutOff
	if after-before < 16 {
		t.Errorf("victim counts %d cut-off streams, want at least 16", after-before)
	}
}

func isTimeoutErr(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// attackIdentities: 60 throwaway identities from one source each open 8
// streams with half a request header (slowloris). The victim serves at
// most its per-source limit of them and the rest of the grid goes on.
func attackIdentities(t *testing.T, g *hostileGrid) {
	opened, refusedConn := 0, 0
	for range 60 {
		h := g.newHost(t, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := h.Connect(ctx, peer.AddrInfo{ID: g.victimID})
		cancel()
		if err != nil {
			refusedConn++ // a victim that admits only listed members refuses them here
			continue
		}
		opened += len(g.openRaw(t, h, 8, []byte{2, 3, 0}))
	}
	time.Sleep(500 * time.Millisecond)
	m := g.c.status("victim").Memory
	t.Logf("throwaway identities: %d streams opened, %d identities refused at connect; victim serves %d streams from %d sources",
		opened, refusedConn, m.ServedStreams, m.ServedSources)
	// 2 × the per-source limit (served + waiting), plus honest members' own.
	if limit := 2*4*p2p.DefaultMaxStreamsPerPeer + 32; m.ServedStreams > limit {
		t.Errorf("victim holds %d streams, want at most %d from one source", m.ServedStreams, limit)
	}
	g.honestPutGet(t) // during the flood
}

// attackDiskFill: the hostile member writes 64 MiB shares until the victim
// says no space; the victim's disk stays within its quota.
func attackDiskFill(t *testing.T, g *hostileGrid) {
	cl := p2p.NewClient(g.attacker, g.victimID, p2p.ClientOptions{})
	data := make([]byte, 64<<20)
	full := false
	for i := range 6 {
		var si caps.StorageIndex
		_, _ = rand.Read(si[:])
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := cl.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)})
		cancel()
		if errors.Is(err, grid.ErrNoSpace) {
			full = true
			t.Logf("victim full after %d more shares", i)
			break
		}
		if err != nil {
			t.Fatalf("hostile write %d: %v", i, err)
		}
	}
	if !full {
		t.Errorf("victim with a %d MiB quota took six more 64 MiB shares", victimQuota>>20)
	}
}

// farFuture is how long a hostile client asks its leases to last.
var farFuture = time.Date(2261, 1, 1, 0, 0, 0, 0, time.UTC)

// hostileLease is a lease with fresh secrets asking for farFuture.
func hostileLease() grid.Lease {
	l := grid.Lease{Expires: farFuture}
	_, _ = rand.Read(l.RenewSecret[:])
	_, _ = rand.Read(l.CancelSecret[:])
	return l
}

// attackLeaseFlood: the hostile member adds thousands of leases with
// fresh renew secrets, each asking to last until 2261: 64 on one storage
// index, 15 on each of 160 more, then fills the victim to within a few
// leases of its quota and adds more. The victim holds at most
// grid.MaxLeases per storage index, charges each lease to its quota,
// refuses leases past it, and dates every lease itself (checked in its
// store after stopping it, then it is restarted).
func attackLeaseFlood(t *testing.T, g *hostileGrid) {
	cl := p2p.NewClient(g.attacker, g.victimID, p2p.ClientOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	before := g.c.status("victim")
	share := make([]byte, 512)
	newSI := func() caps.StorageIndex {
		var si caps.StorageIndex
		_, _ = rand.Read(si[:])
		return si
	}

	// One storage index, 64 distinct leases: the limit holds, renewals work.
	hot := newSI()
	first := hostileLease()
	if err := cl.WriteShare(ctx, hot, 0, int64(len(share)), bytes.NewReader(share), first); err != nil {
		t.Fatalf("hostile member stores a share on the victim: %v", err)
	}
	held := 1
	for i := range 63 {
		switch err := cl.AddLease(ctx, hot, hostileLease()); {
		case err == nil:
			held++
		case !errors.Is(err, grid.ErrNoSpace):
			t.Fatalf("lease %d on one storage index: %v", i+2, err)
		}
	}
	if held != grid.MaxLeases {
		t.Errorf("victim took %d of 64 distinct leases on one storage index, want %d", held, grid.MaxLeases)
	}
	if err := cl.AddLease(ctx, hot, first); err != nil {
		t.Errorf("renewing a held lease at the limit: %v", err)
	}

	// 160 storage indexes, each a share and 14 more leases (2400 leases),
	// leaving room for one more on each.
	const nSI, perSI = 160, grid.MaxLeases - 2
	sis := make([]caps.StorageIndex, nSI)
	for i := range sis {
		sis[i] = newSI()
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < nSI && failed.Load() == 0; i += 4 {
				err := cl.WriteShare(ctx, sis[i], 0, int64(len(share)), bytes.NewReader(share), hostileLease())
				for j := 0; j < perSI && err == nil; j++ {
					err = cl.AddLease(ctx, sis[i], hostileLease())
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("leases on storage index %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every share and lease is charged: Used grew by at least that.
	mid := g.c.status("victim")
	shares, leases := int64(1+nSI), int64(grid.MaxLeases+nSI*(1+perSI))
	want := shares*(int64(len(share))+grid.ShareCharge) + leases*grid.LeaseCharge
	t.Logf("%d leases on %d storage indexes: victim used %d -> %d bytes (%d charged, want at least %d)",
		leases, shares, before.Used, mid.Used, mid.Used-before.Used, want)
	if mid.Used-before.Used < want {
		t.Errorf("victim charged %d bytes for %d shares and %d leases, want at least %d", mid.Used-before.Used, shares, leases, want)
	}

	// Fill the victim to 32 leases below its quota, then offer 128 leases
	// where the limit has room: past the quota they are refused.
	const room = 32
	spare := mid.Quota - mid.Used - grid.ShareCharge - grid.LeaseCharge - room*grid.LeaseCharge
	if spare > 0 {
		if err := cl.WriteShare(ctx, newSI(), 0, spare, bytes.NewReader(make([]byte, spare)), hostileLease()); err != nil {
			t.Fatalf("filling the victim (%d bytes): %v", spare, err)
		}
	}
	took, refused := 0, 0
	for i := range 4 * room {
		switch err := cl.AddLease(ctx, sis[i], hostileLease()); {
		case err == nil:
			took++
		case errors.Is(err, grid.ErrNoSpace):
			refused++
		default:
			t.Fatalf("lease past the quota: %v", err)
		}
	}
	full := g.c.status("victim")
	t.Logf("victim full: %d of %d more leases taken; used %d of %d bytes", took, 4*room, full.Used, full.Quota)
	if took > room || refused == 0 || full.Used > full.Quota {
		t.Errorf("victim with room for %d leases took %d of %d (used %d, quota %d)", room, took, 4*room, full.Used, full.Quota)
	}
	g.checkVictim(t)

	// Every lease in the victim's store ends within one term from now,
	// whatever the client asked.
	g.procs["victim"].stop()
	vh, err := home.Open(g.c.home("victim"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltserver.Open(vh.StorageDir(), boltserver.Options{Quota: victimQuota, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening the victim's store: %v", err)
	}
	st, err := store.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dated, err := store.ExpiringBefore(ctx, time.Now().Add(grid.DefaultLeaseTerm+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("victim's store: %d shares, %d with leases ending within a term; used %d of %d", st.Shares, dated, st.Used, st.Quota)
	if st.Shares < int(shares) || dated != st.Shares {
		t.Errorf("%d of the victim's %d shares have a lease ending later than a lease term (%v) from now: the client dated them", st.Shares-dated, st.Shares, grid.DefaultLeaseTerm)
	}
	if st.Used > victimQuota {
		t.Errorf("victim's store counts %d bytes, quota %d", st.Used, victimQuota)
	}
	g.restartVictim(t)
}

// restartVictim starts the victim's node again and waits (bounded) until
// it is connected to the honest members.
func (g *hostileGrid) restartVictim(t *testing.T) {
	t.Helper()
	g.procs["victim"] = g.c.start("victim", "node")
	g.c.waitReady("victim", g.procs["victim"])
	honest := g.honestIDs(t)
	for try := 0; ; try++ {
		st := g.c.status("victim")
		n := 0
		for _, id := range st.Connected {
			if honest[id] {
				n++
			}
		}
		if n == len(honest) {
			return
		}
		if try == 150 {
			t.Fatalf("restarted victim connected to %d of %d honest members", n, len(honest))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// honestIDs are the peer ids of the honest members a, b and c.
func (g *hostileGrid) honestIDs(t *testing.T) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, n := range []string{"a", "b", "c"} {
		ids[g.c.status(n).PeerID] = true
	}
	return ids
}

// members runs `sphere members --json` for home.
func (g *hostileGrid) members(t *testing.T, home string) node.MembersReply {
	t.Helper()
	out, err := g.c.run(home, "members", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var mr node.MembersReply
	if err := json.Unmarshal([]byte(out), &mr); err != nil {
		t.Fatalf("members --json: %v: %q", err, out)
	}
	return mr
}

// sealRecord is a signed peer record for id with addrs, signed by key;
// pub, when set, replaces the signer's public key in the envelope (a
// forged signature).
func sealRecord(t *testing.T, key crypto.PrivKey, id peer.ID, addrs []ma.Multiaddr, pub crypto.PubKey) []byte {
	t.Helper()
	rec := peer.PeerRecordFromAddrInfo(peer.AddrInfo{ID: id, Addrs: addrs})
	rec.Seq = math.MaxUint64 - 1 // newer than anything held
	env, err := record.Seal(rec, key)
	if err != nil {
		t.Fatal(err)
	}
	if pub != nil {
		env.PublicKey = pub
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange sends msg (length prefix included) to the victim over the
// member exchange as h and reports whether the victim answered.
func (g *hostileGrid) exchange(t *testing.T, h host.Host, msg []byte) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, g.victimID, node.PeersProtocol)
	if err != nil {
		return false
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := s.Write(msg); err != nil {
		return false
	}
	_ = s.CloseWrite()
	var hdr [4]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		return false
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	got, err := io.Copy(io.Discard, io.LimitReader(s, n))
	return err == nil && got == n
}

// attackMemberBook: the hostile member poisons the victim's member book
// over the member exchange with (a) 3000 records and delegations signed by
// fresh keys, (b) records claiming the honest members' ids with the
// attacker's addresses (signed by the attacker, or carrying the member's
// public key with the attacker's signature), its own record with too many
// addresses, delegations naming members as its client, and a member list
// of 1000 fresh ids signed by itself, and (c) oversized messages, 24 at
// once. The victim's list, the members' addresses (as the victim and an
// honest member hold them) and its connections stay as they were.
func attackMemberBook(t *testing.T, g *hostileGrid) {
	honest := g.honestIDs(t)
	beforeV, beforeA := g.members(t, "victim"), g.members(t, "a")
	stBefore := g.c.status("victim")
	addrs := g.attacker.Addrs()
	if len(addrs) == 0 {
		t.Fatal("attacker host has no addresses")
	}
	self := g.attacker.ID()

	// (a) records and delegations signed by 3000 fresh keys, 1000 a message
	// (the protocol's bound is 1024), beside the attacker's own
	// delegations of 1000 client ids.
	answered := 0
	for range 3 {
		var recs, delegs [][]byte
		for range 1000 {
			k, _, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			id, err := peer.IDFromPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, sealRecord(t, k, id, addrs, nil))
			d, err := node.SignDelegation(k, g.psk, self)
			if err != nil {
				t.Fatal(err)
			}
			own, err := node.SignDelegation(g.priv, g.psk, id)
			if err != nil {
				t.Fatal(err)
			}
			delegs = append(delegs, d, own)
		}
		if g.exchange(t, g.attacker, node.ExchangeMessage(nil, recs, delegs[:1000])) {
			answered++
		}
		if g.exchange(t, g.attacker, node.ExchangeMessage(nil, recs[:1], delegs[1000:])) {
			answered++
		}
	}

	// (b) claims about other members, a bloated self-claim, and a list.
	var recs, delegs [][]byte
	for _, mi := range beforeV.Members {
		id, err := peer.Decode(mi.PeerID)
		if err != nil {
			t.Fatal(err)
		}
		if id == self {
			many := slices.Repeat(addrs, 9) // over the 8-address bound
			recs = append(recs, sealRecord(t, g.priv, self, many, nil))
			continue
		}
		pub, err := id.ExtractPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, sealRecord(t, g.priv, id, addrs, nil), sealRecord(t, g.priv, id, addrs, pub))
		d, err := node.SignDelegation(g.priv, g.psk, id)
		if err != nil {
			t.Fatal(err)
		}
		delegs = append(delegs, d)
	}
	hh, err := home.Open(g.c.home("hostile"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(hh.MembersFile())
	if err != nil {
		t.Fatal(err)
	}
	list, err := node.UnmarshalMemberList(raw)
	if err != nil {
		t.Fatal(err)
	}
	var fresh []peer.ID
	for range 1000 {
		k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
		id, _ := peer.IDFromPrivateKey(k)
		fresh = append(fresh, id)
	}
	forged := list.Admit(time.Now().Unix(), fresh...)
	forged.Serial += 1000
	if err := forged.Sign(g.priv); err != nil {
		t.Fatal(err)
	}
	forgedRaw, err := forged.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if g.exchange(t, g.attacker, node.ExchangeMessage(forgedRaw, recs, delegs)) {
		answered++
	}
	if answered != 7 {
		t.Errorf("victim answered %d of 7 well-formed exchanges from a member", answered)
	}

	// (c) oversized: 24 at once, each claiming 1 MiB (the bound) of records
	// the message does not hold, one claiming 64 MiB, and one with 65535
	// records counted.
	big := make([]byte, 4+1<<20)
	binary.BigEndian.PutUint32(big, 1<<20)
	big[4] = 2
	var wg sync.WaitGroup
	var oversizedAnswered atomic.Int64
	for i := range 26 {
		msg := big
		switch i {
		case 24:
			msg = binary.BigEndian.AppendUint32(nil, 64<<20)
			msg = append(msg, big[4:]...)
		case 25:
			msg = node.ExchangeMessage(nil, nil, nil)
			msg = append(msg[:len(msg)-4], 0xff, 0xff, 0, 0) // 65535 records, then nothing
		}
		wg.Go(func() {
			if g.exchange(t, g.attacker, msg) {
				oversizedAnswered.Add(1)
			}
		})
	}
	wg.Wait()
	if n := oversizedAnswered.Load(); n != 0 {
		t.Errorf("victim answered %d oversized or malformed exchanges", n)
	}
	time.Sleep(500 * time.Millisecond) // the victim absorbs after answering

	// The victim's list and book, and an honest member's, are unchanged.
	for _, c := range []struct {
		home   string
		before node.MembersReply
	}{{"victim", beforeV}, {"a", beforeA}} {
		after := g.members(t, c.home)
		if after.Serial != c.before.Serial || after.Admin != c.before.Admin || len(after.Members) != len(c.before.Members) {
			t.Errorf("%s: member list %d (admin %s, %d members) became %d (admin %s, %d members)", c.home,
				c.before.Serial, c.before.Admin, len(c.before.Members), after.Serial, after.Admin, len(after.Members))
			continue
		}
		for i, mi := range after.Members {
			was := c.before.Members[i]
			if mi.PeerID != was.PeerID || !slices.Equal(mi.Addrs, was.Addrs) {
				t.Errorf("%s: member %s at %v became %s at %v", c.home, was.PeerID, was.Addrs, mi.PeerID, mi.Addrs)
			}
			for _, a := range mi.Addrs {
				if strings.Contains(a, "/ip4/127.0.0.2/") {
					t.Errorf("%s: member %s has the attacker's address %s", c.home, mi.PeerID, a)
				}
			}
		}
	}
	vh, err := home.Open(g.c.home("victim"))
	if err != nil {
		t.Fatal(err)
	}
	book, err := node.LoadKnownPeers(vh.PeersFile())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("victim's book on disk: %d addresses; members %d", len(book), len(beforeV.Members))
	for _, a := range book {
		if strings.Contains(a, "/ip4/127.0.0.2/") {
			t.Errorf("victim persisted the attacker's address %s", a)
		}
	}
	st := g.c.status("victim")
	if st.Members != stBefore.Members || st.ListSerial != stBefore.ListSerial {
		t.Errorf("victim status: %d members (list %d), before %d (list %d)", st.Members, st.ListSerial, stBefore.Members, stBefore.ListSerial)
	}
	connected := 0
	for _, id := range st.Connected {
		if honest[id] {
			connected++
		}
	}
	if connected != len(honest) {
		t.Errorf("victim connected to %d of %d honest members after the attack", connected, len(honest))
	}
}
