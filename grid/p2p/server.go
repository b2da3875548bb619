package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sync/semaphore"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// Service serves a grid.Server to peers under ProtocolID and ProtocolIDV1.
// Create it with Serve; Close stops it.
type Service struct {
	h     host.Host
	store grid.Server
	opts  ServeOptions
	log   *slog.Logger

	ctx       context.Context // cancelled by Close: ends in-flight store calls
	cancel    context.CancelFunc
	inflight  *semaphore.Weighted
	buffered  *semaphore.Weighted
	slotReads *semaphore.Weighted
	wg        sync.WaitGroup

	held    atomic.Int64  // bytes reserved from buffered now
	refused atomic.Uint64 // requests answered ErrBusy
	cut     atomic.Uint64 // streams reset mid-request (stall, trickle, reset)

	mu      sync.Mutex
	closed  bool
	peers   map[peer.ID]*bucket
	sources map[string]*bucket
	streams map[network.Stream]struct{}
}

// bucket bounds the requests of one peer or one source: refs counts
// streams being served or waiting, sem the ones being served, buffered the
// bytes they hold.
type bucket struct {
	sem       *semaphore.Weighted
	buffered  *semaphore.Weighted
	slotReads *semaphore.Weighted // sources only: one store slot read at a time
	refs      int
}

// Stats is a snapshot of what a Service holds, for status pages and tests.
type Stats struct {
	Buffered     int64  // bytes of request memory reserved now
	BufferBudget int64  // ServeOptions.MaxBufferedBytes
	Streams      int    // streams being served or waiting
	Peers        int    // peers with a stream being served or waiting
	Sources      int    // sources (IPv4 address, IPv6 /64) likewise
	Refused      uint64 // requests answered ErrBusy since Serve
	CutOff       uint64 // streams reset mid-request since Serve
}

// Stats returns what the service holds now.
func (sv *Service) Stats() Stats {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return Stats{
		Buffered: sv.held.Load(), BufferBudget: sv.opts.MaxBufferedBytes,
		Streams: len(sv.streams), Peers: len(sv.peers), Sources: len(sv.sources),
		Refused: sv.refused.Load(), CutOff: sv.cut.Load(),
	}
}

// reqLog logs for one request, naming its peer and source; it costs
// nothing unless debug logging is on.
type reqLog struct {
	base *slog.Logger
	p    peer.ID
	src  string
}

func (l reqLog) Debug(msg string, args ...any) {
	if !l.base.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	l.base.Debug(msg, append([]any{slog.String("peer", shortPeer(l.p)), slog.String("source", l.src)}, args...)...)
}

// reservation is memory one request holds in its peer's, its source's and
// the service's budgets.
type reservation struct {
	sv      *Service
	ps, src *bucket
	n       int64
}

// grow reserves k more bytes, waiting at most IdleTimeout/4 for room:
// a full budget is better answered with ErrBusy (the client tries
// elsewhere) than queued.
func (r *reservation) grow(ctx context.Context, k int64) error {
	if k <= 0 {
		return nil
	}
	sems := [...]*semaphore.Weighted{r.ps.buffered, r.src.buffered, r.sv.buffered}
	for i, sem := range sems { // the usual case: room everywhere, no timer
		if !sem.TryAcquire(k) {
			for _, s := range sems[:i] {
				s.Release(k)
			}
			break
		}
		if i == len(sems)-1 {
			r.n += k
			r.sv.held.Add(k)
			return nil
		}
	}
	wctx, cancel := context.WithTimeout(ctx, r.sv.opts.IdleTimeout/4)
	defer cancel()
	for i, sem := range sems {
		if err := sem.Acquire(wctx, k); err != nil {
			for _, s := range sems[:i] {
				s.Release(k)
			}
			r.sv.refused.Add(1)
			return fmt.Errorf("%w: request memory budget full", ErrBusy)
		}
	}
	r.n += k
	r.sv.held.Add(k)
	return nil
}

// release gives back everything reserved.
func (r *reservation) release() {
	if r.n > 0 {
		r.ps.buffered.Release(r.n)
		r.src.buffered.Release(r.n)
		r.sv.buffered.Release(r.n)
		r.sv.held.Add(-r.n)
		r.n = 0
	}
}

// readBody reads n bytes (n already checked against a limit) in steps,
// reserving each step before allocating it: a peer that announces a large
// body holds budget only for bytes it actually sent (at most twice that
// while the buffer grows), and no peer or source can take more than its
// share. It returns an error wrapping ErrBusy if the budget stayed full
// for IdleTimeout/4.
func (sv *Service) readBody(ctx context.Context, s network.Stream, res *reservation, n int, dl deadliner) ([]byte, error) {
	const step = 64 << 10
	b := make([]byte, 0, min(n, step))
	if err := res.grow(ctx, int64(cap(b))); err != nil {
		return nil, err
	}
	for len(b) < n {
		k := min(n-len(b), max(len(b), step))
		if len(b)+k > cap(b) {
			if err := res.grow(ctx, int64(len(b)+k-cap(b))); err != nil {
				return nil, err
			}
			nb := make([]byte, len(b), len(b)+k) // exactly what was reserved
			copy(nb, b)
			b = nb
		}
		b = b[:len(b)+k]
		if err := readFull(s, b[len(b)-k:], dl); err != nil {
			return nil, err
		}
	}
	return b, nil
}

type peerKey struct{}

// PeerFrom returns the remote peer of the request a store call serves: the
// Service puts it in the context it passes to the store, so a store wrapper
// can account for (or refuse) what each peer asks. ok is false for calls
// that did not come through a Service.
func PeerFrom(ctx context.Context) (p peer.ID, ok bool) {
	p, ok = ctx.Value(peerKey{}).(peer.ID)
	return p, ok
}

// Serve registers stream handlers for ProtocolID and ProtocolIDV1 on h
// that serve store (a memserver, a boltserver, ...) to any peer that can
// open a stream to h; who may connect at all is the host's business
// (private network key, connection gater). It returns at once; call Close
// to stop serving.
func Serve(h host.Host, store grid.Server, opts ServeOptions) *Service {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	sv := &Service{
		h: h, store: store, opts: opts,
		log:       opts.Logger.With(slog.String("component", "p2p.Service")),
		ctx:       ctx,
		cancel:    cancel,
		inflight:  semaphore.NewWeighted(int64(opts.MaxInflight)),
		buffered:  semaphore.NewWeighted(opts.MaxBufferedBytes),
		slotReads: semaphore.NewWeighted(int64(opts.MaxSlotReads)),
		peers:     make(map[peer.ID]*bucket),
		sources:   make(map[string]*bucket),
		streams:   make(map[network.Stream]struct{}),
	}
	h.SetStreamHandler(ProtocolID, func(s network.Stream) { sv.handle(s, wire.V2) })
	h.SetStreamHandler(ProtocolIDV1, func(s network.Stream) { sv.handle(s, wire.V1) })
	return sv
}

// Close removes the stream handlers, resets the streams being served,
// cancels the store calls they made and waits for their handlers to return.
// It does not close the host or the store.
func (sv *Service) Close() error {
	sv.h.RemoveStreamHandler(ProtocolID)
	sv.h.RemoveStreamHandler(ProtocolIDV1)
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

// sourceOf is the connection source limits are kept for: the remote IPv4
// address, or the /64 of an IPv6 one (what one host usually gets).
func sourceOf(c network.Conn) string {
	ip, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil {
		return "unknown"
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// enter registers s with its peer's and source's buckets; leave undoes it.
func (sv *Service) enter(s network.Stream, p peer.ID, src string) (ps, sb *bucket, peerRefs, srcRefs int, ok bool) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.closed {
		return nil, nil, 0, 0, false
	}
	ps = sv.peers[p]
	if ps == nil {
		ps = &bucket{
			sem:      semaphore.NewWeighted(int64(sv.opts.MaxStreamsPerPeer)),
			buffered: semaphore.NewWeighted(sv.opts.MaxBufferedBytesPerPeer),
		}
		sv.peers[p] = ps
	}
	sb = sv.sources[src]
	if sb == nil {
		sb = &bucket{
			sem:       semaphore.NewWeighted(int64(sv.opts.MaxStreamsPerSource)),
			buffered:  semaphore.NewWeighted(sv.opts.MaxBufferedBytesPerSource),
			slotReads: semaphore.NewWeighted(1),
		}
		sv.sources[src] = sb
	}
	ps.refs++
	sb.refs++
	sv.streams[s] = struct{}{}
	sv.wg.Add(1)
	return ps, sb, ps.refs, sb.refs, true
}

func (sv *Service) leave(s network.Stream, p peer.ID, src string, ps, sb *bucket) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	delete(sv.streams, s)
	if ps.refs--; ps.refs == 0 {
		delete(sv.peers, p)
	}
	if sb.refs--; sb.refs == 0 {
		delete(sv.sources, src)
	}
	sv.wg.Done()
}

func (sv *Service) handle(s network.Stream, v uint8) {
	p := s.Conn().RemotePeer()
	src := sourceOf(s.Conn())
	ps, sb, peerRefs, srcRefs, ok := sv.enter(s, p, src)
	if !ok {
		_ = s.Reset()
		return
	}
	defer sv.leave(s, p, src, ps, sb)

	ctx, cancel := context.WithTimeout(context.WithValue(sv.ctx, peerKey{}, p), sv.opts.RequestTimeout)
	defer cancel()
	dl := deadliner{idle: sv.opts.IdleTimeout}
	dl.overall, _ = ctx.Deadline()
	if sv.opts.MinRate > 0 {
		dl.floor = &rateFloor{start: time.Now(), grace: sv.opts.RateGrace, rate: float64(sv.opts.MinRate)}
	}
	log := reqLog{base: sv.log, p: p, src: src}

	// Requests beyond a limit wait at most IdleTimeout for a slot, and at
	// most as many wait as are served; the rest are refused. The source
	// limit holds however many peer identities one host makes up.
	if peerRefs > 2*sv.opts.MaxStreamsPerPeer {
		sv.refuse(s, v, dl, log, fmt.Errorf("%w: %d requests from this peer", ErrBusy, peerRefs))
		return
	}
	if srcRefs > 2*sv.opts.MaxStreamsPerSource {
		sv.refuse(s, v, dl, log, fmt.Errorf("%w: %d requests from this source", ErrBusy, srcRefs))
		return
	}
	wctx, wcancel := context.WithTimeout(ctx, sv.opts.IdleTimeout)
	defer wcancel()
	for _, lim := range []struct {
		sem  *semaphore.Weighted
		what string
		n    int
	}{{ps.sem, "per-peer", sv.opts.MaxStreamsPerPeer}, {sb.sem, "per-source", sv.opts.MaxStreamsPerSource}, {sv.inflight, "total", sv.opts.MaxInflight}} {
		if err := lim.sem.Acquire(wctx, 1); err != nil {
			sv.refuse(s, v, dl, log, fmt.Errorf("%w: %s limit of %d requests", ErrBusy, lim.what, lim.n))
			return
		}
		defer lim.sem.Release(1)
	}
	wcancel()
	dl.restart() // time spent waiting for a slot is ours, not the peer's

	res := &reservation{sv: sv, ps: ps, src: sb}
	defer res.release()
	if err := sv.serve(ctx, s, v, res, dl, log); err != nil {
		log.Debug("Request failed", slog.Any("err", err))
		sv.cut.Add(1)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// refuse answers with an error without reading the request, and closes.
func (sv *Service) refuse(s network.Stream, v uint8, dl deadliner, log reqLog, err error) {
	log.Debug("Request refused", slog.Any("err", err))
	sv.refused.Add(1)
	if werr := sv.respondErr(s, v, dl, 0, err); werr != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// respondErr sends err as an error response to a version v request for m.
func (sv *Service) respondErr(s network.Stream, v uint8, dl deadliner, m wire.Method, err error) error {
	code, stale := errorCode(err)
	r := &wire.Response{Status: wire.StatusError, Code: code, Msg: err.Error()}
	if stale != nil {
		r.Stale = *stale
	}
	var b [wire.ResponseHeaderSize + 3 + wire.MaxErrorMsg + 20]byte
	msg, eerr := wire.AppendResponse(b[:0], v, m, r)
	if eerr != nil { // only a stale share number beyond 32 bits
		r.Code, r.Stale = wire.CodeInternal, grid.StaleError{}
		msg, _ = wire.AppendResponse(b[:0], v, m, r)
	}
	return writeAll(s, msg, dl)
}

// respond sends a successful response.
func (sv *Service) respond(s network.Stream, v uint8, dl deadliner, m wire.Method, r *wire.Response) error {
	r.Status = wire.StatusOK
	var b [64]byte
	msg, err := wire.AppendResponse(b[:0], v, m, r)
	if err != nil {
		return sv.respondErr(s, v, dl, m, err)
	}
	return writeAll(s, msg, dl)
}

// serve reads one request, runs it on the store and writes the response.
// A non-nil error means the stream is unusable and must be reset; store
// errors are sent to the peer and are not returned.
func (sv *Service) serve(ctx context.Context, s network.Stream, v uint8, res *reservation, dl deadliner, log reqLog) error {
	var h [wire.RequestHeaderSize]byte
	if err := readFull(s, h[:], dl); err != nil {
		return fmt.Errorf("read request header: %w", err)
	}
	m, n, err := wire.ParseRequestHeader(h[:], v, sv.opts.MaxMessageSize)
	if err != nil {
		log.Debug("Bad request", slog.Any("err", err))
		return sv.respondErr(s, v, dl, m, fmt.Errorf("%w: %w", ErrProtocol, err))
	}
	body, err := sv.readBody(ctx, s, res, n, dl)
	if errors.Is(err, ErrBusy) {
		return sv.respondErr(s, v, dl, m, err)
	}
	if err != nil {
		return fmt.Errorf("read %v request body: %w", m, err)
	}
	req, err := wire.DecodeRequestBody(v, m, body)
	if err != nil {
		log.Debug("Bad request", slog.Any("err", err))
		return sv.respondErr(s, v, dl, m, fmt.Errorf("%w: %w", ErrProtocol, err))
	}

	st := sv.store
	var resp wire.Response
	switch m {
	case wire.MethodWriteShare:
		dl.restart() // the client sends data only after Continue
		sr := &shareReader{s: s, dl: dl, remaining: req.Size}
		err = st.WriteShare(ctx, req.SI, req.Shnum, req.Size, sr, req.Lease)
		if sr.broken != nil && err != nil {
			// The stream itself failed (reset, stall): no one to answer.
			return fmt.Errorf("write share: %w", err)
		}
	case wire.MethodReadShare:
		return sv.readShare(ctx, s, v, res, dl, req)
	case wire.MethodListShares:
		resp.Shares, err = st.ListShares(ctx, req.SI)
	case wire.MethodAddLease:
		err = st.AddLease(ctx, req.SI, req.Lease)
	case wire.MethodReadSlot:
		return sv.readSlot(ctx, s, v, res, dl, req, log)
	case wire.MethodWriteSlot:
		if v != wire.V1 {
			if req.Writes, err = sv.readSlotData(ctx, s, res, dl, req.Heads); err != nil {
				if errors.Is(err, ErrBusy) || errors.Is(err, ErrProtocol) {
					return sv.respondErr(s, v, dl, m, err)
				}
				return fmt.Errorf("read slot data: %w", err)
			}
		}
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
		return sv.respondErr(s, v, dl, m, err)
	}
	return sv.respond(s, v, dl, m, &resp)
}

// readShare answers a ReadShare piece by piece: the store is asked for at
// most ReadPiece bytes at a time, each piece counted in the memory budget
// while it is held, so a short request for a long read costs the server
// one piece, not the length asked.
func (sv *Service) readShare(ctx context.Context, s network.Stream, v uint8, res *reservation, dl deadliner, req *wire.Request) error {
	m, st := wire.MethodReadShare, sv.store
	piece := min(req.Length, int64(sv.opts.ReadPiece))
	if err := res.grow(ctx, piece); err != nil {
		return sv.respondErr(s, v, dl, m, err)
	}
	data, err := st.ReadShare(ctx, req.SI, req.Shnum, req.Off, piece)
	if err == nil && int64(len(data)) > piece {
		err = fmt.Errorf("store returned %d bytes for a read of %d", len(data), piece)
	}
	total := int64(len(data))
	if err == nil && total == piece && req.Length > piece {
		// More to come: the answer announces its length first.
		total, err = sv.shareEnd(ctx, req)
		if err == nil && total < piece {
			err = fmt.Errorf("share %d shrank while read", req.Shnum)
		}
	}
	if err != nil {
		return sv.respondErr(s, v, dl, m, err)
	}
	if err := sv.respond(s, v, dl, m, &wire.Response{DataLen: total}); err != nil {
		return err
	}
	dl.restart()
	for sent := int64(0); ; {
		if err := writeAll(s, data, dl); err != nil {
			return fmt.Errorf("send share data: %w", err)
		}
		sent += int64(len(data))
		if sent >= total {
			return nil
		}
		data = nil // the store's piece is garbage before the next is read
		k := min(piece, total-sent)
		if data, err = st.ReadShare(ctx, req.SI, req.Shnum, req.Off+sent, k); err != nil {
			return fmt.Errorf("read share %d at %d: %w", req.Shnum, req.Off+sent, err)
		}
		if int64(len(data)) != k {
			return fmt.Errorf("store returned %d bytes of share %d at %d, want %d", len(data), req.Shnum, req.Off+sent, k)
		}
	}
}

// shareEnd is how many bytes a read of req.Length at req.Off returns.
func (sv *Service) shareEnd(ctx context.Context, req *wire.Request) (int64, error) {
	infos, err := sv.store.ListShares(ctx, req.SI)
	if err != nil {
		return 0, err
	}
	for _, in := range infos {
		if in.Shnum == req.Shnum {
			return min(req.Length, in.Size-req.Off), nil
		}
	}
	return 0, fmt.Errorf("share %d: %w", req.Shnum, grid.ErrNotFound)
}

// readSlot answers a ReadSlot. The store returns the whole slot at once,
// before its size is known, so store reads run one per source and at most
// MaxSlotReads in all at a time, and their result is counted in the budget
// as soon as it is known: memory not yet counted is at most MaxSlotReads
// slots.
func (sv *Service) readSlot(ctx context.Context, s network.Stream, v uint8, res *reservation, dl deadliner, req *wire.Request, log reqLog) error {
	m := wire.MethodReadSlot
	wctx, cancel := context.WithTimeout(ctx, sv.opts.IdleTimeout/4)
	err := res.src.slotReads.Acquire(wctx, 1)
	if err == nil {
		if err = sv.slotReads.Acquire(wctx, 1); err != nil {
			res.src.slotReads.Release(1)
		}
	}
	cancel()
	if err != nil {
		sv.refused.Add(1)
		return sv.respondErr(s, v, dl, m, fmt.Errorf("%w: %d slot reads at once", ErrBusy, sv.opts.MaxSlotReads))
	}
	slot, err := sv.store.ReadSlot(ctx, req.SI)
	var size int64
	for _, sh := range slot {
		size += int64(len(sh.Data))
	}
	switch {
	case err != nil:
	case v == wire.V1 && size+int64(4+16*len(slot)) > int64(sv.opts.MaxMessageSize):
		err = fmt.Errorf("slot of %d bytes exceeds the version 1 message limit of %d; speak %s", size, sv.opts.MaxMessageSize, ProtocolID)
	case size > sv.opts.MaxSlotSize:
		err = fmt.Errorf("slot of %d bytes exceeds limit %d", size, sv.opts.MaxSlotSize)
	case v == wire.V1:
		err = res.grow(ctx, 2*size) // the slot and its encoded copy
	default:
		err = res.grow(ctx, size)
	}
	sv.slotReads.Release(1)
	res.src.slotReads.Release(1)
	if err != nil {
		if !grid.IsPermanent(err) {
			log.Debug("Store error", slog.String("method", m.String()), slog.Any("err", err))
		}
		return sv.respondErr(s, v, dl, m, err)
	}
	if v == wire.V1 {
		msg, err := wire.AppendResponse(make([]byte, 0, wire.ResponseHeaderSize+4+16*len(slot)+int(size)), v, m, &wire.Response{Status: wire.StatusOK, Slot: slot})
		if err != nil {
			return sv.respondErr(s, v, dl, m, err)
		}
		dl.restart()
		return writeAll(s, msg, dl)
	}
	if err := sv.respond(s, v, dl, m, &wire.Response{Heads: wire.Heads(slot)}); err != nil {
		return err
	}
	dl.restart()
	for _, sh := range slot {
		if err := writeAll(s, sh.Data, dl); err != nil {
			return fmt.Errorf("send slot share %d: %w", sh.Shnum, err)
		}
	}
	return nil
}

// readSlotData reads the data of a version 2 WriteSlot, announced by
// heads, and the commit trailer. It returns an error wrapping ErrProtocol
// or ErrBusy when the peer should be answered, others when the stream
// failed.
func (sv *Service) readSlotData(ctx context.Context, s network.Stream, res *reservation, dl deadliner, heads []wire.SlotHead) ([]grid.SlotShare, error) {
	if _, err := wire.SlotDataSize(heads, sv.opts.MaxSlotSize); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	writes := make([]grid.SlotShare, len(heads))
	for i, h := range heads {
		data, err := sv.readBody(ctx, s, res, int(h.Len), dl)
		if err != nil {
			return nil, err
		}
		writes[i] = grid.SlotShare{Shnum: h.Shnum, Seq: h.Seq, Data: data}
	}
	var t [1]byte
	if err := readFull(s, t[:], dl); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read slot trailer: %w", err)
	}
	if t[0] != trailerCommit {
		return nil, fmt.Errorf("%w: slot trailer %#x, want %#x", ErrProtocol, t[0], trailerCommit)
	}
	return writes, nil
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
		if err := r.s.SetReadDeadline(r.dl.next(1)); err != nil {
			r.broken = err
			return 0, err
		}
		n, err = r.s.Read(p)
		r.remaining -= int64(n)
		r.dl.moved(n)
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
