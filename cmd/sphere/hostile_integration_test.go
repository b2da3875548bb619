package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
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
	procs    map[string]*proc
	puts     int
}

// TestHostileMember runs every attack against one grid, each followed by
// the same checks. Subtests that are someone else's fix skip, naming who.
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
		{"leaseFlood", func(t *testing.T, g *hostileGrid) {
			// TODO(helper "store"): server-set lease expiry, a cap on leases
			// per share and lease metadata counted in the quota. Attack: add
			// thousands of leases to one share with fresh renew secrets and
			// far expiries, then check the victim's disk, lease count and
			// sweep bound.
			t.Skip(`lease floods are being fixed by helper "store"; attack to be added here`)
		}},
		{"memberBookPoisoning", func(t *testing.T, g *hostileGrid) {
			// TODO(helper "members"): signed self-claims and a bounded book.
			// Attack: announce fake members and other members' addresses
			// over the members protocol, then check the victim's book.
			t.Skip(`member-book poisoning is being fixed by helper "members"; attack to be added here`)
		}},
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
	g.attacker = g.newHost(t, priv)
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
