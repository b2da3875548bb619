package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// remote serves store on a fresh listening host and returns a client for it
// on the dialing host c.
func remote(t testing.TB, c host.Host, tr transport, store func(id grid.ServerID) grid.Server, so ServeOptions, co ClientOptions) (*Client, host.Host) {
	t.Helper()
	h := newHost(t, tr, true)
	svc := Serve(h, store(grid.ServerID(h.ID())), so)
	t.Cleanup(func() { _ = svc.Close() })
	introduce(c, h)
	return NewClient(c, h.ID(), co), h
}

func memStore(opts ...memserver.Option) func(grid.ServerID) grid.Server {
	return func(id grid.ServerID) grid.Server { return memserver.New(id, opts...) }
}

func TestConformance(t *testing.T) {
	for _, tr := range []struct {
		name string
		tr   transport
	}{{"tcpNoise", tcpNoise}, {"quic", quic}} {
		t.Run(tr.name, func(t *testing.T) {
			c := newHost(t, tr.tr, false)
			gridtest.TestServer(t, func(t *testing.T) grid.Server {
				cl, h := remote(t, c, tr.tr, memStore(), ServeOptions{}, ClientOptions{})
				if cl.ID() != grid.ServerID(h.ID()) {
					t.Fatalf("ID() = %v, want the raw peer id", cl.ID())
				}
				return cl
			})
		})
	}
}

func TestQuota(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	gridtest.TestQuota(t, func(t *testing.T, quota int64) grid.Server {
		cl, _ := remote(t, c, tcpNoise, memStore(memserver.WithQuota(quota)), ServeOptions{}, ClientOptions{})
		return cl
	})
}

func TestSweep(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	gridtest.TestSweep(t, func(t *testing.T, now func() time.Time, grace time.Duration) (grid.Server, gridtest.Sweeper) {
		var mem *memserver.Server
		cl, _ := remote(t, c, tcpNoise, func(id grid.ServerID) grid.Server {
			mem = memserver.New(id, memserver.WithClock(now), memserver.WithGrace(grace))
			return mem
		}, ServeOptions{}, ClientOptions{})
		return cl, mem
	})
}

// TestErrorsCrossTheWire checks that each store error arrives as the same
// sentinel, with the same permanence, for every method.
func TestErrorsCrossTheWire(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	stale := &grid.StaleError{Shnum: 7, Have: 9, Want: 4}
	for _, tc := range []struct {
		name string
		err  error
		is   error // nil: no sentinel, just an error
	}{
		{"notFound", fmt.Errorf("x: %w", grid.ErrNotFound), grid.ErrNotFound},
		{"noSpace", fmt.Errorf("x: %w", grid.ErrNoSpace), grid.ErrNoSpace},
		{"badWE", grid.ErrBadWriteEnabler, grid.ErrBadWriteEnabler},
		{"unauthorized", grid.ErrUnauthorized, grid.ErrUnauthorized},
		{"corrupt", grid.ErrCorrupt, grid.ErrCorrupt},
		{"stale", fmt.Errorf("w: %w", stale), grid.ErrStale},
		{"eof", io.ErrUnexpectedEOF, io.ErrUnexpectedEOF},
		{"busy", ErrBusy, ErrBusy},
		{"other", errors.New("disk on fire"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, _ := remote(t, c, tcpNoise, func(id grid.ServerID) grid.Server { return &errStore{id, tc.err} }, ServeOptions{}, ClientOptions{})
			ctx := t.Context()
			si := gridtest.SI()
			calls := map[string]error{
				"WriteShare": cl.WriteShare(ctx, si, 1, 3, bytes.NewReader([]byte("abc")), grid.Lease{}),
				"AddLease":   cl.AddLease(ctx, si, grid.Lease{}),
				"WriteSlot":  cl.WriteSlot(ctx, si, grid.WriteEnabler{}, []grid.SlotShare{{Shnum: 1, Seq: 2}}, grid.Lease{}),
			}
			_, calls["ReadShare"] = cl.ReadShare(ctx, si, 1, 0, 10)
			_, calls["ListShares"] = cl.ListShares(ctx, si)
			_, calls["ReadSlot"] = cl.ReadSlot(ctx, si)
			for m, err := range calls {
				if err == nil {
					t.Errorf("%s: nil error", m)
					continue
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s: %v; want errors.Is %v", m, err, tc.is)
				}
				if grid.IsPermanent(err) != grid.IsPermanent(tc.err) {
					t.Errorf("%s: IsPermanent(%v) = %v, want %v", m, err, grid.IsPermanent(err), grid.IsPermanent(tc.err))
				}
				var re *RemoteError
				if !errors.As(err, &re) || re.Peer != cl.Peer() {
					t.Errorf("%s: %v is not a *RemoteError from the peer", m, err)
				}
				if tc.name == "stale" {
					var se *grid.StaleError
					if !errors.As(err, &se) || *se != *stale {
						t.Errorf("%s: %v; want *StaleError %+v", m, err, *stale)
					}
				}
			}
			// errStore has neither Stat nor CancelLease.
			if _, err := cl.Stat(ctx); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Stat on a store without it: %v, want ErrUnsupported", err)
			}
			if err := cl.CancelLease(ctx, si, [32]byte{}); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("CancelLease on a store without it: %v, want ErrUnsupported", err)
			}
		})
	}
}

// rawStream opens a stream to h (version 2, or the protocol given).
func rawStream(t *testing.T, c host.Host, h host.Host, proto ...protocol.ID) network.Stream {
	t.Helper()
	if len(proto) == 0 {
		proto = []protocol.ID{ProtocolID}
	}
	s, err := c.NewStream(t.Context(), h.ID(), proto...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return s
}

func readRawResponse(t *testing.T, s network.Stream, m wire.Method) *wire.Response {
	t.Helper()
	v := uint8(wire.V2)
	if s.Protocol() == ProtocolIDV1 {
		v = wire.V1
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(io.LimitReader(s, 1<<20))
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	r, err := wire.DecodeResponse(v, m, b, 1<<20)
	if err != nil {
		t.Fatalf("decode response %x: %v", b, err)
	}
	return r
}

// TestMalformedRequests sends broken requests on raw streams: each gets a
// bad-request error (or is dropped), and the same connection then serves
// honest requests.
func TestMalformedRequests(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, h := remote(t, c, tcpNoise, memStore(), ServeOptions{MaxMessageSize: 1 << 20}, ClientOptions{})
	si := gridtest.SI()
	data := gridtest.Data(1, 1000)
	if err := cl.WriteShare(t.Context(), si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{}); err != nil {
		t.Fatal(err)
	}
	hdr := func(v byte, m wire.Method, n uint32) []byte {
		b := []byte{v, byte(m), 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[2:], n)
		return b
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		m    wire.Method
	}{
		{"oversizedLength", hdr(wire.Version, wire.MethodWriteSlot, 0xffffffff), wire.MethodWriteSlot},
		{"overLimit", hdr(wire.Version, wire.MethodWriteSlot, 1<<20+1), wire.MethodWriteSlot},
		{"wrongFixedSize", hdr(wire.Version, wire.MethodReadShare, 1000), wire.MethodReadShare},
		{"badVersion", hdr(9, wire.MethodListShares, 16), wire.MethodListShares},
		{"badMethod", hdr(wire.Version, 200, 0), wire.MethodListShares},
		{"hugeCount", append(hdr(wire.Version, wire.MethodWriteSlot, 16+32+76+4), append(make([]byte, 16+32+76), 0xff, 0xff, 0xff, 0xff)...), wire.MethodWriteSlot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rawStream(t, c, h)
			if _, err := s.Write(tc.msg); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			r := readRawResponse(t, s, tc.m)
			if r.Status != wire.StatusError || r.Code != wire.CodeBadRequest {
				t.Fatalf("response %+v, want a bad-request error", r)
			}
			got, err := cl.ReadShare(t.Context(), si, 0, 0, 1000)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("honest ReadShare after a bad request: %d bytes, %v", len(got), err)
			}
			if n := len(c.Network().ConnsToPeer(h.ID())); n != 1 {
				t.Fatalf("%d connections to the server, want the same single one", n)
			}
		})
	}
	t.Run("abortTrailer", func(t *testing.T) {
		s := rawStream(t, c, h)
		si2 := gridtest.SI()
		req, err := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodWriteShare, SI: si2, Size: 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(req); err != nil {
			t.Fatal(err)
		}
		var cont [wire.ResponseHeaderSize]byte
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(s, cont[:]); err != nil || wire.Status(cont[0]) != wire.StatusContinue {
			t.Fatalf("want continue, got %x, %v", cont, err)
		}
		if _, err := s.Write([]byte{1, 2, 3, 0x7f}); err != nil { // wrong trailer
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		_, _ = io.Copy(io.Discard, s) // reset or an error response; either way:
		if l, err := cl.ListShares(t.Context(), si2); err != nil || len(l) != 0 {
			t.Fatalf("share with an abort trailer was stored: %v, %v", l, err)
		}
	})
}

// TestClientRejectsLies checks the client's checks of server answers.
func TestClientRejectsLies(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	h := newHost(t, tcpNoise, true)
	introduce(c, h)
	// A fake server that answers a ReadShare of 10 bytes with 1 GiB.
	h.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer s.Close()
		var hb [wire.RequestHeaderSize]byte
		if _, err := io.ReadFull(s, hb[:]); err != nil {
			return
		}
		_, n, err := wire.ParseRequestHeader(hb[:], wire.Version, 1<<20)
		if err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, s, int64(n)); err != nil {
			return
		}
		// Always a ReadShare answer, whatever was asked.
		resp, _ := wire.AppendResponse(nil, wire.Version, wire.MethodReadShare, &wire.Response{Status: wire.StatusOK, DataLen: 1 << 30})
		_, _ = s.Write(resp)
		_, _ = s.Write(make([]byte, 1000))
	})
	cl := NewClient(c, h.ID(), ClientOptions{})
	if b, err := cl.ReadShare(t.Context(), gridtest.SI(), 0, 0, 10); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ReadShare answered with more than asked: %d bytes, %v; want ErrProtocol", len(b), err)
	}
	// ListShares answered with a ReadShare-shaped body is malformed.
	if l, err := cl.ListShares(t.Context(), gridtest.SI()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ListShares with a malformed answer: %v, %v; want ErrProtocol", l, err)
	}
}

// heapInUse returns the live heap after a GC.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHostilePeer floods the server with streams from one peer, half of
// which send nothing after opening and half a partial header (slowloris),
// plus one that stalls mid-share. An honest peer's transfers still finish;
// afterwards the server's goroutines and memory return near their start.
func TestHostilePeer(t *testing.T) {
	const (
		idle   = 2 * time.Second // short, yet long enough for honest chunks under -race and load
		flood  = 120
		honest = 4 << 20
	)
	bad := newHost(t, tcpNoise, false)
	good := newHost(t, tcpNoise, false)
	h := newHost(t, tcpNoise, true)
	introduce(bad, h)
	introduce(good, h)
	svc := Serve(h, memserver.New(grid.ServerID(h.ID())), ServeOptions{IdleTimeout: idle, MaxStreamsPerPeer: 8})
	defer svc.Close()
	cl := NewClient(good, h.ID(), ClientOptions{})
	// Warm up connections so their goroutines are in the baseline.
	if _, err := cl.ListShares(t.Context(), gridtest.SI()); err != nil {
		t.Fatal(err)
	}
	if s, err := bad.NewStream(t.Context(), h.ID(), ProtocolID); err != nil {
		t.Fatal(err)
	} else {
		_ = s.Reset()
	}
	time.Sleep(100 * time.Millisecond)
	g0, m0 := runtime.NumGoroutine(), heapInUse()

	var streams []network.Stream
	for i := range flood {
		s, err := bad.NewStream(t.Context(), h.ID(), ProtocolID)
		if err != nil {
			t.Logf("stream %d refused by the resource manager: %v", i, err)
			break
		}
		streams = append(streams, s)
		if i%2 == 0 {
			_, _ = s.Write(nil) // negotiates the protocol, sends nothing
		} else {
			_, _ = s.Write([]byte{wire.Version, byte(wire.MethodReadShare), 0}) // partial header
		}
	}
	// One stream that announces a 100 MB share and stalls after the first KiB.
	if s, err := bad.NewStream(t.Context(), h.ID(), ProtocolID); err == nil {
		streams = append(streams, s)
		req, _ := wire.AppendRequest(nil, &wire.Request{Method: wire.MethodWriteShare, SI: gridtest.SI(), Size: 100 << 20})
		_, _ = s.Write(append(req, make([]byte, 1024)...))
	}
	defer func() {
		for _, s := range streams {
			_ = s.Reset()
		}
	}()

	gPeak := runtime.NumGoroutine()
	// Goroutines per hostile stream stay a small constant (libp2p's plus at
	// most one handler), whatever the flood.
	if gPeak-g0 > 6*len(streams)+50 {
		t.Errorf("goroutines went from %d to %d for %d hostile streams", g0, gPeak, len(streams))
	}

	// An honest transfer finishes while the flood is held.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			si := gridtest.SI()
			data := gridtest.Data(uint64(i), honest)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := cl.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{}); err != nil {
				t.Errorf("honest WriteShare during the flood: %v", err)
				return
			}
			got, err := cl.ReadShare(ctx, si, 0, 0, honest)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("honest ReadShare during the flood: %d bytes, %v", len(got), err)
			}
		})
	}
	wg.Wait()

	// The server cuts every stalled stream off after IdleTimeout.
	cut := waitFor{time.Now().Add(20 * time.Second)}.until(func() bool {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		return len(svc.streams) == 0
	})
	if !cut {
		svc.mu.Lock()
		n := len(svc.streams)
		svc.mu.Unlock()
		t.Fatalf("%d hostile streams still served long after the idle timeout", n)
	}
	for _, s := range streams {
		_ = s.Reset()
	}
	settled := waitFor{time.Now().Add(20 * time.Second)}.until(func() bool {
		return runtime.NumGoroutine() <= g0+20
	})
	if !settled {
		t.Errorf("goroutines: %d before the flood, %d after it ended", g0, runtime.NumGoroutine())
	}
	// Honest data written (3 × 4 MiB) is held by the memserver; allow that
	// plus slack, and nothing per hostile stream.
	if m1 := heapInUse(); m1 > m0+3*honest+32<<20 {
		t.Errorf("heap in use grew from %d to %d bytes", m0, m1)
	}
}

// TestBusy checks that requests beyond the per-peer limit get ErrBusy, a
// transient error, rather than queueing without bound.
func TestBusy(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	block := make(chan struct{})
	cl, _ := remote(t, c, tcpNoise, func(id grid.ServerID) grid.Server {
		return &blockStore{errStore: errStore{id: id}, block: block}
	}, ServeOptions{MaxStreamsPerPeer: 2, IdleTimeout: 300 * time.Millisecond}, ClientOptions{MaxConcurrent: 10})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() { _, err := cl.ListShares(t.Context(), gridtest.SI()); errs <- err })
	}
	// 2 served (blocked), 2 wait then time out, the rest refused at once.
	busy := 0
	for range 8 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrBusy) || grid.IsPermanent(err) {
				t.Errorf("over-limit request: %v, want transient ErrBusy", err)
			}
			busy++
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of 8 over-limit requests answered", busy)
		}
	}
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("request served after the block lifted: %v", err)
		}
	}
}

// blockStore's ListShares waits for block.
type blockStore struct {
	errStore
	block chan struct{}
}

func (b *blockStore) ListShares(ctx context.Context, _ caps.StorageIndex) ([]grid.ShareInfo, error) {
	select {
	case <-b.block:
		return []grid.ShareInfo{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestCloseEndsStalledRequests checks Close returns while a request is
// stalled mid-share, and the client sees an error.
func TestCloseEndsStalledRequests(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	h := newHost(t, tcpNoise, true)
	introduce(c, h)
	mem := memserver.New(grid.ServerID(h.ID()))
	svc := Serve(h, mem, ServeOptions{})
	cl := NewClient(c, h.ID(), ClientOptions{})
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	si := gridtest.SI()
	go func() { errc <- cl.WriteShare(t.Context(), si, 0, 1<<20, pr, grid.Lease{}) }()
	if _, err := pw.Write(make([]byte, 1000)); err != nil { // the server is reading now
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = svc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return with a request stalled")
	}
	_ = pw.CloseWithError(errors.New("test over"))
	if err := <-errc; err == nil {
		t.Fatal("WriteShare cut off by Close: nil error")
	}
	if l, _ := mem.ListShares(t.Context(), si); len(l) != 0 {
		t.Fatalf("cut-off share stored: %v", l)
	}
}

// failAfterStore reads some of a share, then fails it.
type failAfterStore struct {
	errStore
	after int64
}

func (f *failAfterStore) WriteShare(ctx context.Context, _ caps.StorageIndex, _ int, _ int64, r io.Reader, _ grid.Lease) error {
	if _, err := io.CopyN(io.Discard, r, f.after); err != nil {
		return err
	}
	return fmt.Errorf("checking share: %w", grid.ErrCorrupt)
}

// TestStoreFailsMidShare checks that a store refusing a share after reading
// part of it reaches the client as its error while the client is still
// sending, without the client waiting for flow-control window that will
// never come (the idle timeout is set far beyond the test's deadline, so a
// stuck client returns only when the context expires).
func TestStoreFailsMidShare(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, _ := remote(t, c, tcpNoise, func(id grid.ServerID) grid.Server {
		return &failAfterStore{errStore{id: id}, 100 << 10}
	}, ServeOptions{}, ClientOptions{IdleTimeout: time.Hour})
	const size = 256 << 20
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	r := &io.LimitedReader{R: zeros{}, N: size}
	err := cl.WriteShare(ctx, gridtest.SI(), 0, size, r, grid.Lease{})
	if !errors.Is(err, grid.ErrCorrupt) {
		t.Fatalf("WriteShare refused mid-stream: %v, want ErrCorrupt", err)
	}
	if ctx.Err() != nil {
		t.Fatal("WriteShare returned only when its context expired: the client was stuck sending")
	}
	if sent := size - r.N; sent > 64<<20 {
		t.Errorf("client read %d bytes of a share the server refused after 100 KiB", sent)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestBodyBudgetPerPeer checks that one peer holding request-body memory
// (a large WriteSlot body sent up to the last bytes, then stalled) gets
// ErrBusy for more, while another peer's slot writes go through.
func TestBodyBudgetPerPeer(t *testing.T) {
	const limit = 1 << 20
	bad := newHost(t, tcpNoise, false)
	good := newHost(t, tcpNoise, false)
	h := newHost(t, tcpNoise, true)
	introduce(bad, h)
	introduce(good, h)
	svc := Serve(h, memserver.New(grid.ServerID(h.ID())), ServeOptions{
		MaxMessageSize: limit, MaxSlotSize: limit, MaxBufferedBytes: 4 * limit, MaxBufferedBytesPerPeer: limit,
		IdleTimeout: 8 * time.Second, // the stall outlives the 2 s budget wait
		MinRate:     -1,
	})
	defer svc.Close()

	// A version 1 body: the whole slot inside one message.
	big := []grid.SlotShare{{Shnum: 0, Seq: 1, Data: make([]byte, limit-200)}}
	req, err := wire.AppendRequest(nil, &wire.Request{Version: wire.V1, Method: wire.MethodWriteSlot, SI: gridtest.SI(), Writes: big})
	if err != nil {
		t.Fatal(err)
	}
	s := rawStream(t, bad, h, ProtocolIDV1)
	if _, err := s.Write(req[:len(req)-10]); err != nil { // all but the last bytes: the budget is held
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the server read what was sent

	small := []grid.SlotShare{{Shnum: 0, Seq: 1, Data: make([]byte, 100<<10)}}
	badCl := NewClient(bad, h.ID(), ClientOptions{})
	if err := badCl.WriteSlot(t.Context(), gridtest.SI(), grid.WriteEnabler{}, small, grid.Lease{}); !errors.Is(err, ErrBusy) {
		t.Errorf("second body from the peer holding its budget: %v, want ErrBusy", err)
	}
	goodCl := NewClient(good, h.ID(), ClientOptions{})
	if err := goodCl.WriteSlot(t.Context(), gridtest.SI(), grid.WriteEnabler{}, small, grid.Lease{}); err != nil {
		t.Errorf("another peer's slot write: %v", err)
	}
	// Finishing the stalled body completes the write.
	if _, err := s.Write(req[len(req)-10:]); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	if r := readRawResponse(t, s, wire.MethodWriteSlot); r.Status != wire.StatusOK {
		t.Fatalf("completed slot write: %+v", r)
	}
}

// countStore counts ListShares calls in progress and blocks them until
// release is closed.
type countStore struct {
	errStore
	inside  atomic.Int32
	max     atomic.Int32
	release chan struct{}
}

func (c *countStore) ListShares(ctx context.Context, _ caps.StorageIndex) ([]grid.ShareInfo, error) {
	n := c.inside.Add(1)
	defer c.inside.Add(-1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-c.release:
		return []grid.ShareInfo{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestResourceManagerLimitsStreams checks that the limits ResourceManager
// sets for the storage protocol are enforced by libp2p, below the Service:
// with 4 streams per peer, a peer's 10 concurrent requests never put more
// than 4 in the store, and the others fail as transient errors.
func TestResourceManagerLimitsStreams(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	h := newHostLimits(t, tcpNoise, true, Limits{StreamsPerPeer: 4})
	introduce(c, h)
	st := &countStore{errStore: errStore{id: grid.ServerID(h.ID())}, release: make(chan struct{})}
	svc := Serve(h, st, ServeOptions{})
	defer svc.Close()
	cl := NewClient(c, h.ID(), ClientOptions{MaxConcurrent: 10})
	errs := make(chan error, 10)
	for range 10 {
		go func() { _, err := cl.ListShares(t.Context(), gridtest.SI()); errs <- err }()
	}
	refused := 0
	for range 6 {
		select {
		case err := <-errs:
			if err == nil || grid.IsPermanent(err) {
				t.Errorf("request over the stream limit: %v, want a transient error", err)
			}
			refused++
		case <-time.After(20 * time.Second):
			t.Fatalf("%d requests over the limit refused, want 6", refused)
		}
	}
	close(st.release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("request within the limit: %v", err)
		}
	}
	if m := st.max.Load(); m > 4 {
		t.Errorf("%d requests in the store at once, limit 4", m)
	}
}
