package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// Hostile peers in these tests connect from 127.0.0.2 (Linux routes all of
// 127.0.0.0/8 to loopback; libp2p dials from its listen address), honest
// ones from 127.0.0.1, so per-source limits tell them apart.

// newHostAt returns a TCP+Noise host listening on ip (and so dialing from
// it), with the node's resource manager.
func newHostAt(tb testing.TB, ip string) host.Host {
	tb.Helper()
	rm, err := ResourceManager(Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ResourceManager(rm), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(noise.ID, noise.New),
		libp2p.ListenAddrStrings("/ip4/"+ip+"/tcp/0"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// checkSource fails unless the server h sees c connect from ip.
func checkSource(t *testing.T, c, h host.Host, ip string) {
	t.Helper()
	for _, conn := range h.Network().ConnsToPeer(c.ID()) {
		if got := sourceOf(conn); got != ip {
			t.Fatalf("server sees the peer from %s, want %s (the test needs distinct loopback sources)", got, ip)
		}
	}
}

// sendRaw opens a v2 stream from c to h and writes msg, leaving it open.
func sendRaw(t *testing.T, c, h host.Host, msg []byte) network.Stream {
	t.Helper()
	s, err := c.NewStream(t.Context(), h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReadFloodBounded is the read-amplification attack: 42-byte requests
// each asking for a whole 32 MiB share, from many throwaway identities on
// one source, none of them reading the answer. Before pieces, each request
// made the store allocate 32 MiB (48 requests: 1.5 GiB); now a request
// holds at most one ReadPiece, counted in the budget, the flood's source
// holds at most its share of the budget, and an honest reader on another
// source still reads the whole share.
func TestReadFloodBounded(t *testing.T) {
	const (
		shareSize = 32 << 20
		budget    = 32 << 20
		attackers = 4
		perPeer   = 12
	)
	h := newHostAt(t, "127.0.0.1")
	mem := memserver.New(grid.ServerID(h.ID()))
	si := gridtest.SI()
	share := gridtest.Data(9, shareSize)
	if err := mem.WriteShare(t.Context(), si, 0, shareSize, bytes.NewReader(share), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	svc := Serve(h, mem, ServeOptions{MaxBufferedBytes: budget, IdleTimeout: 4 * time.Second})
	defer svc.Close()
	honest := newHostAt(t, "127.0.0.1")
	introduce(honest, h)
	cl := NewClient(honest, h.ID(), ClientOptions{})
	if _, err := cl.ListShares(t.Context(), si); err != nil { // connect
		t.Fatal(err)
	}
	m0 := heapInUse()

	req, err := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodReadShare, SI: si, Length: shareSize})
	if err != nil {
		t.Fatal(err)
	}
	for i := range attackers {
		bad := newHostAt(t, "127.0.0.2")
		introduce(bad, h)
		for range perPeer {
			sendRaw(t, bad, h, req)
		}
		if i == 0 {
			checkSource(t, bad, h, "127.0.0.2")
		}
	}
	// Let the server take up every request it will.
	waitFor{time.Now().Add(10 * time.Second)}.until(func() bool { return svc.Stats().Streams >= attackers*perPeer })
	time.Sleep(500 * time.Millisecond)
	st := svc.Stats()
	m1 := heapInUse()
	t.Logf("flood of %d reads of %d MiB: server holds %d streams, %d bytes reserved (budget %d), heap %d -> %d MiB",
		attackers*perPeer, shareSize>>20, st.Streams, st.Buffered, st.BufferBudget, m0>>20, m1>>20)
	if st.Buffered > budget {
		t.Errorf("%d bytes reserved, budget %d", st.Buffered, budget)
	}
	// Pieces in flight plus what libp2p buffers per stream; nothing near
	// the 1.5 GiB the flood asked for.
	if m1 > m0+2*budget+32<<20 {
		t.Errorf("heap in use grew from %d to %d MiB under the flood", m0>>20, m1>>20)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	got, err := cl.ReadShare(ctx, si, 0, 0, shareSize)
	if err != nil || !bytes.Equal(got, share) {
		t.Fatalf("honest read during the flood: %d bytes, %v", len(got), err)
	}
}

// TestTrickleCutOff: requests and share data that trickle in far below the
// rate floor are cut off, although every single read arrives well within
// the idle timeout; nothing half-sent is stored.
func TestTrickleCutOff(t *testing.T) {
	h := newHost(t, tcpNoise, true)
	mem := memserver.New(grid.ServerID(h.ID()))
	svc := Serve(h, mem, ServeOptions{IdleTimeout: time.Hour, MinRate: 64 << 10, RateGrace: time.Second})
	defer svc.Close()
	bad := newHost(t, tcpNoise, false)
	introduce(bad, h)
	si := gridtest.SI()

	// cutWithin trickles msg one byte per 50 ms on a fresh stream (then
	// keeps trickling zeros) and reports whether the server cut it off.
	cutWithin := func(msg []byte, wait time.Duration) bool {
		s, err := bad.NewStream(t.Context(), h.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		deadline := time.Now().Add(wait)
		for i := 0; time.Now().Before(deadline); i++ {
			b := byte(0)
			if i < len(msg) {
				b = msg[i]
			}
			_ = s.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := s.Write([]byte{b}); err != nil {
				return true
			}
			// A reset shows on the read side first when the write is buffered.
			_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var one [64]byte
			if _, err := s.Read(one[:]); err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				return true
			}
		}
		return false
	}

	t.Run("header", func(t *testing.T) {
		req, _ := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodListShares, SI: si})
		if !cutWithin(req, 20*time.Second) {
			t.Fatal("a request trickled at 20 B/s was not cut off")
		}
	})
	t.Run("shareData", func(t *testing.T) {
		req, _ := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodWriteShare, SI: si, Size: 1 << 20})
		s, err := bad.NewStream(t.Context(), h.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		if _, err := s.Write(req); err != nil {
			t.Fatal(err)
		}
		var cont [wire.ResponseHeaderSize]byte
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(s, cont[:]); err != nil || cont[0] != byte(wire.StatusContinue) {
			t.Fatalf("want continue: %x, %v", cont, err)
		}
		cut := false
		for i := 0; i < 400 && !cut; i++ { // at most 20 s
			_ = s.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := s.Write([]byte{1}); err != nil {
				cut = true
			}
			_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var b [64]byte
			if _, err := s.Read(b[:]); err != nil && !isTimeout(err) {
				cut = true
			}
		}
		if !cut {
			t.Fatal("share data trickled at 20 B/s was not cut off")
		}
		if l, _ := mem.ListShares(t.Context(), si); len(l) != 0 {
			t.Fatalf("trickled share stored: %v", l)
		}
	})
	t.Run("slowReader", func(t *testing.T) {
		share := gridtest.Data(3, 8<<20)
		cl := NewClient(newHost(t, tcpNoise, false), h.ID(), ClientOptions{})
		introduce(cl.h, h)
		si := gridtest.SI()
		if err := cl.WriteShare(t.Context(), si, 0, int64(len(share)), bytes.NewReader(share), grid.Lease{}); err != nil {
			t.Fatal(err)
		}
		req, _ := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodReadShare, SI: si, Length: int64(len(share))})
		s := sendRaw(t, bad, h, req)
		_ = s.CloseWrite()
		cut := false
		var read int
		for i := 0; i < 400 && !cut; i++ { // reads 100 B per 50 ms, at most 20 s
			_ = s.SetReadDeadline(time.Now().Add(time.Second))
			n, err := s.Read(make([]byte, 100))
			read += n
			if err != nil && !isTimeout(err) {
				cut = true
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !cut {
			t.Fatalf("a reader taking 2 KB/s of an 8 MiB answer was not cut off (read %d bytes)", read)
		}
	})
	if st := svc.Stats(); st.CutOff == 0 {
		t.Errorf("stats count no cut-off streams: %+v", st)
	}
	// An honest client is unaffected by the floor.
	cl := NewClient(newHost(t, tcpNoise, false), h.ID(), ClientOptions{})
	introduce(cl.h, h)
	data := gridtest.Data(5, 4<<20)
	if err := cl.WriteShare(t.Context(), gridtest.SI(), 0, int64(len(data)), bytes.NewReader(data), grid.Lease{}); err != nil {
		t.Fatalf("honest write with the floor on: %v", err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// TestManyIdentitiesOneSource: forty throwaway peer identities from one
// source, each within its own per-peer limit, together get no more than
// the per-source limit into the store; a peer from another source is
// served meanwhile.
func TestManyIdentitiesOneSource(t *testing.T) {
	const (
		identities = 40
		perPeer    = 4
		perSource  = 8
	)
	h := newHostAt(t, "127.0.0.1")
	st := &countStore{errStore: errStore{id: grid.ServerID(h.ID())}, release: make(chan struct{})}
	svc := Serve(h, &gateStore{countStore: st}, ServeOptions{
		MaxStreamsPerPeer: perPeer, MaxStreamsPerSource: perSource, IdleTimeout: time.Second,
	})
	defer svc.Close()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var busy, other int
	for i := range identities {
		bad := newHostAt(t, "127.0.0.2")
		introduce(bad, h)
		if i == 0 {
			if err := bad.Connect(t.Context(), h.Peerstore().PeerInfo(h.ID())); err != nil {
				t.Fatal(err)
			}
		}
		cl := NewClient(bad, h.ID(), ClientOptions{MaxConcurrent: perPeer})
		for range perPeer {
			wg.Go(func() {
				_, err := cl.ListShares(t.Context(), gridtest.SI())
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, ErrBusy):
					busy++
				case err != nil:
					other++
				}
			})
		}
	}
	// While the flood holds the source's slots, another source is served.
	time.Sleep(300 * time.Millisecond)
	good := newHostAt(t, "127.0.0.1")
	introduce(good, h)
	gcl := NewClient(good, h.ID(), ClientOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := gcl.Stat(ctx); err != nil {
		t.Fatalf("honest request from another source during the flood: %v", err)
	}
	for _, c := range h.Network().Conns() {
		if c.RemotePeer() != good.ID() && sourceOf(c) != "127.0.0.2" {
			t.Fatalf("a hostile identity connects from %s, want 127.0.0.2", sourceOf(c))
		}
	}
	close(st.release)
	wg.Wait()
	if m := st.max.Load(); m > perSource {
		t.Errorf("%d requests from one source in the store at once, limit %d", m, perSource)
	}
	if want := identities*perPeer - 2*perSource; busy < want-perSource {
		t.Errorf("%d of %d requests from one source refused busy, want about %d", busy, identities*perPeer, want)
	}
	t.Logf("%d identities × %d requests: at most %d in the store at once, %d busy, %d other errors",
		identities, perPeer, st.max.Load(), busy, other)
}

// gateStore is a countStore whose Stat answers at once (the honest probe).
type gateStore struct{ *countStore }

func (g *gateStore) Stat(context.Context) (grid.Stat, error) { return grid.Stat{}, nil }

// TestBigSlot writes and reads back a slot of more than 64 MiB (two shares
// of 36 MiB) across real hosts: version 2 streams it; a version 1 client
// is refused with a clear error, not a broken stream.
func TestBigSlot(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, h := remote(t, c, tcpNoise, memStore(), ServeOptions{}, ClientOptions{})
	si := gridtest.SI()
	writes := []grid.SlotShare{
		{Shnum: 1, Seq: 1, Data: gridtest.Data(1, 36<<20)},
		{Shnum: 4, Seq: 1, Data: gridtest.Data(2, 36<<20)},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := cl.WriteSlot(ctx, si, grid.WriteEnabler{7}, writes, grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("WriteSlot of 72 MiB: %v", err)
	}
	got, err := cl.ReadSlot(ctx, si)
	if err != nil {
		t.Fatalf("ReadSlot of 72 MiB: %v", err)
	}
	if len(got) != len(writes) {
		t.Fatalf("read %d slot shares, want %d", len(got), len(writes))
	}
	for i := range got {
		if got[i].Shnum != writes[i].Shnum || got[i].Seq != writes[i].Seq || !bytes.Equal(got[i].Data, writes[i].Data) {
			t.Fatalf("slot share %d differs (shnum %d seq %d, %d bytes)", i, got[i].Shnum, got[i].Seq, len(got[i].Data))
		}
	}
	// Version 1 cannot carry it: the client refuses to send, the server to
	// answer, both with errors naming the limit.
	v1 := NewClient(c, h.ID(), ClientOptions{Version: 1})
	if err := v1.WriteSlot(ctx, si, grid.WriteEnabler{7}, []grid.SlotShare{{Shnum: 1, Seq: 2, Data: writes[0].Data}}, grid.Lease{}); err == nil {
		t.Error("version 1 WriteSlot of 36 MiB succeeded, want a size error")
	}
	if _, err := v1.ReadSlot(ctx, si); err == nil || !bytes.Contains([]byte(err.Error()), []byte("version 1 message limit")) {
		t.Errorf("version 1 ReadSlot of 72 MiB: %v, want the server's version 1 limit error", err)
	}
	// Over the slot limit both ways: a clear error, no partial write.
	small := NewClient(c, h.ID(), ClientOptions{MaxSlotSize: 1 << 20})
	if err := small.WriteSlot(ctx, si, grid.WriteEnabler{7}, []grid.SlotShare{{Shnum: 1, Seq: 3, Data: make([]byte, 2<<20)}}, grid.Lease{}); err == nil {
		t.Error("WriteSlot over the client's MaxSlotSize succeeded")
	}
	if _, err := small.ReadSlot(ctx, si); !errors.Is(err, ErrProtocol) {
		t.Errorf("ReadSlot over the client's MaxSlotSize: %v, want ErrProtocol", err)
	}
}

// TestSlotOverServerLimit: a v2 WriteSlot announcing more than the
// server's MaxSlotSize is refused before any data is held.
func TestSlotOverServerLimit(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, _ := remote(t, c, tcpNoise, memStore(), ServeOptions{MaxSlotSize: 1 << 20}, ClientOptions{})
	err := cl.WriteSlot(t.Context(), gridtest.SI(), grid.WriteEnabler{}, []grid.SlotShare{{Shnum: 0, Seq: 1, Data: make([]byte, 4<<20)}}, grid.Lease{})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("WriteSlot over the server's slot limit: %v, want ErrProtocol", err)
	}
}

// TestConformanceVersions runs the conformance suite over version 1 (an
// old client against a new server) and over version 2 with tiny read
// pieces and slot limits, so multi-piece reads are exercised everywhere.
func TestConformanceVersions(t *testing.T) {
	for _, c := range []struct {
		name string
		so   ServeOptions
		co   ClientOptions
	}{
		{"v1", ServeOptions{}, ClientOptions{Version: 1}},
		{"v2smallPieces", ServeOptions{ReadPiece: 1000}, ClientOptions{Version: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := newHost(t, tcpNoise, false)
			gridtest.TestServer(t, func(t *testing.T) grid.Server {
				cl, _ := remote(t, ch, tcpNoise, memStore(), c.so, c.co)
				return cl
			})
		})
	}
}

// TestOldClientNewServer: a client that offers only version 1 (as today's
// main does) is served by a new server.
func TestOldClientNewServer(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, _ := remote(t, c, tcpNoise, memStore(), ServeOptions{}, ClientOptions{Version: 1})
	si := gridtest.SI()
	w := []grid.SlotShare{{Shnum: 0, Seq: 1, Data: []byte("old")}}
	if err := cl.WriteSlot(t.Context(), si, grid.WriteEnabler{}, w, grid.Lease{}); err != nil {
		t.Fatal(err)
	}
	got, err := cl.ReadSlot(t.Context(), si)
	if err != nil || len(got) != 1 || string(got[0].Data) != "old" {
		t.Fatalf("v1 ReadSlot: %v, %v", got, err)
	}
}

func TestSourceOfIPv6(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"/ip4/10.1.2.3/tcp/4001", "10.1.2.3"},
		{"/ip6/2001:db8:1:2:3:4:5:6/tcp/4001", "2001:db8:1:2::/64"},
		{"/ip6/2001:db8:1:2:ffff::1/udp/4001/quic-v1", "2001:db8:1:2::/64"},
	} {
		if got := sourceOf(fakeConn{addr: c.addr}); got != c.want {
			t.Errorf("sourceOf(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// fakeConn is a network.Conn with only a remote address.
type fakeConn struct {
	network.Conn
	addr string
}

func (f fakeConn) RemoteMultiaddr() ma.Multiaddr { return ma.StringCast(f.addr) }

// TestServeOptionBudgets: the defaults carry a full default slot per peer
// while one source gets at most half the budget, and a small budget
// shrinks the slot limit instead of growing itself.
func TestServeOptionBudgets(t *testing.T) {
	d := ServeOptions{}.withDefaults()
	if d.MaxSlotSize != DefaultMaxSlotSize || d.MaxBufferedBytesPerPeer < d.MaxSlotSize ||
		d.MaxBufferedBytesPerSource > d.MaxBufferedBytes/2 || d.MaxBufferedBytes != DefaultMaxBufferedBytes {
		t.Errorf("defaults: %+v", d)
	}
	s := ServeOptions{MaxBufferedBytes: 32 << 20}.withDefaults()
	if s.MaxBufferedBytes != 32<<20 || s.MaxSlotSize > s.MaxBufferedBytesPerPeer || s.MaxBufferedBytesPerSource > 16<<20 {
		t.Errorf("small budget: %+v", s)
	}
}

// TestWaitIsNotTrickle: a request that waits for a slot longer than the
// rate floor's grace is served, not cut off: waiting is the server's time.
func TestWaitIsNotTrickle(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	block := make(chan struct{})
	cl, _ := remote(t, c, tcpNoise, func(id grid.ServerID) grid.Server {
		return &blockStore{errStore: errStore{id: id}, block: block}
	}, ServeOptions{MaxStreamsPerPeer: 1, IdleTimeout: 10 * time.Second, MinRate: 1 << 20, RateGrace: 200 * time.Millisecond},
		ClientOptions{MaxConcurrent: 2})
	errs := make(chan error, 2)
	go func() { _, err := cl.ListShares(t.Context(), gridtest.SI()); errs <- err }()
	time.Sleep(200 * time.Millisecond)
	go func() { _, err := cl.ListShares(t.Context(), gridtest.SI()); errs <- err }()
	time.Sleep(time.Second) // the second waits for the slot, past the grace
	close(block)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("request that waited for a slot: %v", err)
		}
	}
}
