package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/semaphore"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// Service serves a grid.Server to peers under ProtocolID. Create it with
// Serve; Close stops it.
type Service struct {
	h     host.Host
	store grid.Server
	opts  ServeOptions
	log   *slog.Logger

	ctx      context.Context // cancelled by Close: ends in-flight store calls
	cancel   context.CancelFunc
	inflight *semaphore.Weighted
	buffered *semaphore.Weighted
	wg       sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	peers   map[peer.ID]*peerSlots
	streams map[network.Stream]struct{}
}

// peerSlots bounds the requests of one peer: refs counts streams being
// served or waiting, sem the ones being served, buffered the bytes of
// request bodies held.
type peerSlots struct {
	sem      *semaphore.Weighted
	buffered *semaphore.Weighted
	refs     int
}

// readBody reads a request body of n bytes (n already checked against
// MaxMessageSize) in steps, reserving each step from the peer's and the
// service's memory budgets before allocating it: a peer that announces a
// large body holds budget only for bytes it actually sent, and no peer can
// take more than its share. It returns the bytes reserved, which the caller
// releases, and an error wrapping ErrBusy if the budget stayed full for
// IdleTimeout/4.
func (sv *Service) readBody(ctx context.Context, s network.Stream, ps *peerSlots, n int, dl deadliner) ([]byte, int64, error) {
	const step = 64 << 10
	var held int64
	b := make([]byte, 0, min(n, step))
	for len(b) < n {
		k := min(n-len(b), max(len(b), step))
		// Wait briefly: a full budget is better answered with ErrBusy
		// (the client tries elsewhere) than queued.
		wctx, wcancel := context.WithTimeout(ctx, sv.opts.IdleTimeout/4)
		err := ps.buffered.Acquire(wctx, int64(k))
		if err == nil {
			if err = sv.buffered.Acquire(wctx, int64(k)); err != nil {
				ps.buffered.Release(int64(k))
			}
		}
		wcancel()
		if err != nil {
			return nil, held, fmt.Errorf("%w: request buffers full", ErrBusy)
		}
		held += int64(k)
		b = append(b, make([]byte, k)...)
		if err := readFull(s, b[len(b)-k:], dl); err != nil {
			return nil, held, err
		}
	}
	return b, held, nil
}

// Serve registers a stream handler for ProtocolID on h that serves store
// (a memserver, a boltserver, ...) to any peer that can open a stream to h;
// who may connect at all is the host's business (private network key,
// connection gater). It returns at once; call Close to stop serving.
func Serve(h host.Host, store grid.Server, opts ServeOptions) *Service {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	sv := &Service{
		h: h, store: store, opts: opts,
		log:      opts.Logger.With(slog.String("component", "p2p.Service")),
		ctx:      ctx,
		cancel:   cancel,
		inflight: semaphore.NewWeighted(int64(opts.MaxInflight)),
		buffered: semaphore.NewWeighted(opts.MaxBufferedBytes),
		peers:    make(map[peer.ID]*peerSlots),
		streams:  make(map[network.Stream]struct{}),
	}
	h.SetStreamHandler(ProtocolID, sv.handle)
	return sv
}

// Close removes the stream handler, resets the streams being served,
// cancels the store calls they made and waits for their handlers to return.
// It does not close the host or the store.
func (sv *Service) Close() error {
	sv.h.RemoveStreamHandler(ProtocolID)
	sv.mu.Lock()
	sv.closed = true
	for s := range sv.streams {
		_ = s.Reset()
	}
	sv.mu.Unlock()
	sv.cancel()
	sv.wg.Wait()
	return nil
}

var continueMsg = [wire.ResponseHeaderSize]byte{byte(wire.StatusContinue)}

func (sv *Service) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	sv.mu.Lock()
	if sv.closed {
		sv.mu.Unlock()
		_ = s.Reset()
		return
	}
	ps := sv.peers[p]
	if ps == nil {
		ps = &peerSlots{
			sem:      semaphore.NewWeighted(int64(sv.opts.MaxStreamsPerPeer)),
			buffered: semaphore.NewWeighted(sv.opts.MaxBufferedBytesPerPeer),
		}
		sv.peers[p] = ps
	}
	ps.refs++
	refs := ps.refs
	sv.streams[s] = struct{}{}
	sv.wg.Add(1)
	sv.mu.Unlock()
	defer func() {
		sv.mu.Lock()
		delete(sv.streams, s)
		if ps.refs--; ps.refs == 0 {
			delete(sv.peers, p)
		}
		sv.mu.Unlock()
		sv.wg.Done()
	}()

	ctx, cancel := context.WithTimeout(sv.ctx, sv.opts.RequestTimeout)
	defer cancel()
	dl := deadliner{idle: sv.opts.IdleTimeout}
	dl.overall, _ = ctx.Deadline()
	log := sv.log.With(slog.String("peer", shortPeer(p)))

	// Requests beyond the per-peer limit wait at most IdleTimeout for a
	// slot, and at most as many wait as are served; the rest are refused.
	if refs > 2*sv.opts.MaxStreamsPerPeer {
		sv.refuse(s, dl, log, fmt.Errorf("%w: %d requests from this peer", ErrBusy, refs))
		return
	}
	wctx, wcancel := context.WithTimeout(ctx, sv.opts.IdleTimeout)
	defer wcancel()
	if err := ps.sem.Acquire(wctx, 1); err != nil {
		sv.refuse(s, dl, log, fmt.Errorf("%w: per-peer limit of %d requests", ErrBusy, sv.opts.MaxStreamsPerPeer))
		return
	}
	defer ps.sem.Release(1)
	if err := sv.inflight.Acquire(wctx, 1); err != nil {
		sv.refuse(s, dl, log, fmt.Errorf("%w: limit of %d requests", ErrBusy, sv.opts.MaxInflight))
		return
	}
	defer sv.inflight.Release(1)
	wcancel()

	if err := sv.serve(ctx, s, ps, dl, log); err != nil {
		log.Debug("Request failed", slog.Any("err", err))
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// refuse answers with an error without reading the request, and closes.
func (sv *Service) refuse(s network.Stream, dl deadliner, log *slog.Logger, err error) {
	log.Debug("Request refused", slog.Any("err", err))
	if werr := sv.respondErr(s, dl, 0, err); werr != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// respondErr sends err as an error response to a request for m.
func (sv *Service) respondErr(s network.Stream, dl deadliner, m wire.Method, err error) error {
	code, stale := errorCode(err)
	r := &wire.Response{Status: wire.StatusError, Code: code, Msg: err.Error()}
	if stale != nil {
		r.Stale = *stale
	}
	var b [wire.ResponseHeaderSize + 3 + wire.MaxErrorMsg + 20]byte
	msg, eerr := wire.AppendResponse(b[:0], m, r)
	if eerr != nil { // only a stale share number beyond 32 bits
		r.Code, r.Stale = wire.CodeInternal, grid.StaleError{}
		msg, _ = wire.AppendResponse(b[:0], m, r)
	}
	return writeAll(s, msg, dl)
}

// respond sends a successful response.
func (sv *Service) respond(s network.Stream, dl deadliner, m wire.Method, r *wire.Response) error {
	r.Status = wire.StatusOK
	var b [64]byte
	msg, err := wire.AppendResponse(b[:0], m, r)
	if err != nil {
		return sv.respondErr(s, dl, m, err)
	}
	return writeAll(s, msg, dl)
}

// serve reads one request, runs it on the store and writes the response.
// A non-nil error means the stream is unusable and must be reset; store
// errors are sent to the peer and are not returned.
func (sv *Service) serve(ctx context.Context, s network.Stream, ps *peerSlots, dl deadliner, log *slog.Logger) error {
	var h [wire.RequestHeaderSize]byte
	if err := readFull(s, h[:], dl); err != nil {
		return fmt.Errorf("read request header: %w", err)
	}
	m, n, err := wire.ParseRequestHeader(h[:], sv.opts.MaxMessageSize)
	if err != nil {
		log.Debug("Bad request", slog.Any("err", err))
		return sv.respondErr(s, dl, m, fmt.Errorf("%w: %w", ErrProtocol, err))
	}
	body, held, err := sv.readBody(ctx, s, ps, n, dl)
	defer func() {
		ps.buffered.Release(held)
		sv.buffered.Release(held)
	}()
	if errors.Is(err, ErrBusy) {
		return sv.respondErr(s, dl, m, err)
	}
	if err != nil {
		return fmt.Errorf("read %v request body: %w", m, err)
	}
	req, err := wire.DecodeRequestBody(m, body)
	if err != nil {
		log.Debug("Bad request", slog.Any("err", err))
		return sv.respondErr(s, dl, m, fmt.Errorf("%w: %w", ErrProtocol, err))
	}

	st := sv.store
	var resp wire.Response
	switch m {
	case wire.MethodWriteShare:
		sr := &shareReader{s: s, dl: dl, remaining: req.Size}
		err = st.WriteShare(ctx, req.SI, req.Shnum, req.Size, sr, req.Lease)
		if sr.broken != nil && err != nil {
			// The stream itself failed (reset, stall): no one to answer.
			return fmt.Errorf("write share: %w", err)
		}
	case wire.MethodReadShare:
		var data []byte
		data, err = st.ReadShare(ctx, req.SI, req.Shnum, req.Off, req.Length)
		if err == nil {
			if int64(len(data)) > req.Length {
				err = fmt.Errorf("store returned %d bytes for a read of %d", len(data), req.Length)
				break
			}
			resp.DataLen = int64(len(data))
			if err := sv.respond(s, dl, m, &resp); err != nil {
				return err
			}
			return writeAll(s, data, dl)
		}
	case wire.MethodListShares:
		resp.Shares, err = st.ListShares(ctx, req.SI)
	case wire.MethodAddLease:
		err = st.AddLease(ctx, req.SI, req.Lease)
	case wire.MethodReadSlot:
		resp.Slot, err = st.ReadSlot(ctx, req.SI)
		if err == nil {
			return sv.respondSlot(s, dl, resp.Slot)
		}
	case wire.MethodWriteSlot:
		err = st.WriteSlot(ctx, req.SI, req.WE, req.Writes, req.Lease)
	case wire.MethodStat:
		if sta, ok := st.(grid.Statter); ok {
			resp.Stat, err = sta.Stat(ctx)
		} else {
			err = fmt.Errorf("stat: %w", errors.ErrUnsupported)
		}
	case wire.MethodCancelLease:
		if lc, ok := st.(grid.LeaseCanceller); ok {
			err = lc.CancelLease(ctx, req.SI, req.CancelSecret)
		} else {
			err = fmt.Errorf("cancel lease: %w", errors.ErrUnsupported)
		}
	}
	if err != nil {
		if !grid.IsPermanent(err) {
			log.Debug("Store error", slog.String("method", m.String()), slog.Any("err", err))
		}
		return sv.respondErr(s, dl, m, err)
	}
	return sv.respond(s, dl, m, &resp)
}

// respondSlot sends a ReadSlot response, whose size is the slot's.
func (sv *Service) respondSlot(s network.Stream, dl deadliner, slot []grid.SlotShare) error {
	size := wire.ResponseHeaderSize + 4
	for _, sh := range slot {
		size += 16 + len(sh.Data)
	}
	msg, err := wire.AppendResponse(make([]byte, 0, size), wire.MethodReadSlot, &wire.Response{Status: wire.StatusOK, Slot: slot})
	if err != nil {
		return sv.respondErr(s, dl, wire.MethodReadSlot, err)
	}
	return writeAll(s, msg, dl)
}

// shareReader is the io.Reader a store's WriteShare reads: on first use it
// tells the client to send (so a store that refuses early never costs the
// client its data), then yields exactly the declared bytes from the stream.
// The commit trailer is checked before the last bytes are handed over, so
// a store never sees a complete share the writer did not commit.
type shareReader struct {
	s         network.Stream
	dl        deadliner
	remaining int64
	started   bool
	done      bool
	broken    error // the stream failed; set with the error returned
}

func (r *shareReader) Read(p []byte) (int, error) {
	if r.broken != nil {
		return 0, r.broken
	}
	if !r.started {
		r.started = true
		if err := writeAll(r.s, continueMsg[:], r.dl); err != nil {
			r.broken = fmt.Errorf("send continue: %w", err)
			return 0, r.broken
		}
	}
	if r.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	var n int
	var err error
	if len(p) > 0 {
		if err := r.s.SetReadDeadline(r.dl.next()); err != nil {
			r.broken = err
			return 0, err
		}
		n, err = r.s.Read(p)
		r.remaining -= int64(n)
	}
	if err != nil && r.remaining > 0 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.broken = fmt.Errorf("read share data: %w", err)
		return n, r.broken
	}
	if r.remaining == 0 {
		var t [1]byte
		if err := readFull(r.s, t[:], r.dl); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			r.broken = fmt.Errorf("read share trailer: %w", err)
			return n, r.broken
		}
		if t[0] != trailerCommit {
			r.broken = fmt.Errorf("%w: share trailer %#x, want %#x", ErrProtocol, t[0], trailerCommit)
			return n, r.broken
		}
		r.done = true
	}
	return n, nil
}
