package grid

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/caps"
)

// UploadOptions tune one Upload.
type UploadOptions struct {
	// RandomKey takes the file key from crypto/rand instead of deriving it
	// convergently from the content and the client's convergence secret. It
	// saves the first pass over the plaintext but gives up deduplication.
	RandomKey bool
	// Progress, if set, is called with the number of plaintext bytes encoded
	// and handed to the servers so far. It is called from a single goroutine,
	// with non-decreasing values, and must not block for long.
	Progress func(done int64)
}

// hashChunk is the read size of the convergent-key pass.
const hashChunk = 1 << 20

// Upload stores the size bytes of r as an immutable file and returns its read
// cap.
//
// Files of at most caps.LiteralMax bytes become a caps.LitCap and touch no
// server. Larger files are encoded into N shares (caps.CHKCap): the key is
// derived convergently (a first pass over r through caps.KeyHasher) unless
// opts.RandomKey; share i goes to the i-th server of the permuted ring of the
// storage index (round-robin when there are fewer than N servers), skipping
// servers that report too little free space. Segments are read, encoded by
// GOMAXPROCS workers and streamed to all servers at once, so memory stays at
// a few segments whatever the file size. A file of one segment is instead
// read once into memory and each server gets its whole share in one
// buffer: small files pay no pipeline setup.
//
// A server that fails or stalls (no progress for the client's request
// timeout) loses its share; the upload succeeds only if the shares that
// landed are on at least Params.Happy distinct servers, else the error wraps
// ErrNotHappy. Shares written before a failed upload may stay on servers
// until their lease expires. r is read at most twice and never after Upload
// returns.
func (c *Client) Upload(ctx context.Context, r io.ReaderAt, size int64, opts UploadOptions) (caps.Cap, error) {
	if size < 0 {
		return nil, fmt.Errorf("upload: negative size %d", size)
	}
	if size <= caps.LiteralMax {
		data := make([]byte, size)
		if err := readFullAt(r, data, 0); err != nil {
			return nil, fmt.Errorf("upload: read plaintext: %w", err)
		}
		return caps.LitCap{Data: data}, nil
	}
	if size <= int64(c.params.SegmentSize) {
		return c.uploadSmall(ctx, r, size, opts)
	}
	var key [16]byte
	if opts.RandomKey {
		if _, err := rand.Read(key[:]); err != nil {
			return nil, fmt.Errorf("upload: random key: %w", err)
		}
	} else {
		var err error
		if key, err = c.convergentKey(ctx, r, size); err != nil {
			return nil, err
		}
	}
	capv, err := c.uploadCHK(ctx, r, size, key, !opts.RandomKey, opts.Progress)
	if err != nil {
		return nil, err
	}
	return capv, nil
}

// readFullAt fills p from r at off; a short read is io.ErrUnexpectedEOF.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// convergentKey runs the first pass: plaintext through caps.KeyHasher. A
// reader goroutine fills the next chunk while this one hashes the last.
func (c *Client) convergentKey(ctx context.Context, r io.ReaderAt, size int64) ([16]byte, error) {
	h := caps.NewKeyHasher(c.conv, c.params)
	full := make(chan []byte, 2)
	free := make(chan []byte, 3)
	for range cap(free) {
		free <- make([]byte, min(hashChunk, size))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(full)
		for off := int64(0); off < size; {
			var buf []byte
			select {
			case buf = <-free:
			case <-gctx.Done():
				return gctx.Err()
			}
			n := int(min(int64(len(buf)), size-off))
			if err := readFullAt(r, buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
			select {
			case full <- buf[:n]:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for buf := range full {
			h.Write(buf)
			free <- buf[:cap(buf)]
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return [16]byte{}, fmt.Errorf("upload: convergent key: %w", err)
	}
	return h.Key(), nil
}

// shareResult is what one share's WriteShare came to.
type shareResult struct {
	shnum int
	srv   Server
	err   error
}

// ErrChanged: the file changed while Upload read it (its two passes read
// different bytes). Nothing was stored; upload it again once it is still.
var ErrChanged = errors.New("file changed while it was read")

// uploadCHK is the second pass: encode and stream shares to servers. With
// convergent, the plaintext goes through the key hasher again as it is
// encoded, and the upload fails (before any share is complete, so servers
// keep nothing) unless it gives key again: else a file that changed between
// the passes would be stored under another content's key and index.
func (c *Client) uploadCHK(ctx context.Context, r io.ReaderAt, size int64, key [16]byte, convergent bool, progress func(int64)) (caps.CHKCap, error) {
	enc, err := caps.NewEncoder(key, c.params, uint64(size))
	if err != nil {
		return caps.CHKCap{}, fmt.Errorf("upload: %w", err)
	}
	l := enc.Layout()
	si := enc.StorageIndex()
	n, happy := c.params.N, c.params.Happy

	ring := c.selectServers(ctx, si, l.ShareSize())
	if len(ring) < happy {
		return caps.CHKCap{}, notHappy(len(ring), happy)
	}
	// Servers past the first n stand by for shares a server refuses.
	spares := append(append([]Server(nil), ring[min(n, len(ring)):]...), ring[:min(n, len(ring))]...)
	if len(ring) > n {
		ring = ring[:n]
	}
	targets := make(map[int]Server, n)
	for shnum, srv := range assignShares(ring, n) {
		targets[shnum] = srv
	}
	sw := c.startShareWriters(ctx, si, l.ShareSize(), enc.ShareHeader, targets, spares)
	for shnum := range n {
		sw.send(shnum, enc.ShareHeader(shnum))
	}
	var rehash *caps.KeyHasher
	if convergent {
		rehash = caps.NewKeyHasher(c.conv, c.params)
	}
	var done int64
	emit := func(seg int, pt []byte, blocks [][]byte, ref *segBuf) error {
		if rehash != nil {
			rehash.Write(pt)
		}
		if err := sw.sendBlocks(l, seg, blocks, ref); err != nil {
			return err
		}
		if alive := sw.aliveServers(); alive < happy {
			return notHappy(alive, happy)
		}
		done += int64(l.SegmentLen(seg))
		if progress != nil {
			progress(done)
		}
		return nil
	}
	load := func(_ context.Context, seg int, buf []byte) ([]byte, error) {
		buf = buf[:l.SegmentLen(seg)]
		if err := readFullAt(r, buf, int64(seg)*int64(l.SegmentSize)); err != nil {
			return nil, fmt.Errorf("read plaintext: %w", err)
		}
		return buf, nil
	}
	if err := encodeSegments(ctx, l, enc, load, emit); err != nil {
		return sw.abort(fmt.Errorf("upload %v: %w", si, err))
	}
	// Before any trailer goes out: no server has a whole share yet.
	if rehash != nil && rehash.Key() != key {
		return sw.abort(fmt.Errorf("upload %v: %w (its convergent key differs between the two reads)", si, ErrChanged))
	}
	trailers, capv, err := enc.Finish()
	if err != nil {
		return sw.abort(fmt.Errorf("upload %v: finish: %w", si, err))
	}
	if err := sw.finish(trailers); err != nil {
		return sw.abort(fmt.Errorf("upload %v: %w", si, err))
	}
	if err := sw.wait(happy); err != nil {
		return caps.CHKCap{}, err
	}
	return capv, nil
}

// uploadSmall uploads a file of one segment: it reads the plaintext once
// (for the convergent key and the encoding), encodes before any server is
// contacted, and hands each server its whole share as one buffer. This
// keeps a small file to one allocation of its size plus its shares, where
// the streaming path sets up segment-sized buffers and pipelines.
func (c *Client) uploadSmall(ctx context.Context, r io.ReaderAt, size int64, opts UploadOptions) (caps.CHKCap, error) {
	data := make([]byte, size)
	if err := readFullAt(r, data, 0); err != nil {
		return caps.CHKCap{}, fmt.Errorf("upload: read plaintext: %w", err)
	}
	var key [16]byte
	if opts.RandomKey {
		if _, err := rand.Read(key[:]); err != nil {
			return caps.CHKCap{}, fmt.Errorf("upload: random key: %w", err)
		}
	} else {
		h := caps.NewKeyHasher(c.conv, c.params)
		h.Write(data)
		key = h.Key()
	}
	enc, err := caps.NewEncoder(key, c.params, uint64(size))
	if err != nil {
		return caps.CHKCap{}, fmt.Errorf("upload: %w", err)
	}
	l := enc.Layout()
	si := enc.StorageIndex()
	if l.NumSegments() != 1 {
		return caps.CHKCap{}, fmt.Errorf("upload %v: small path given %d segments", si, l.NumSegments())
	}
	blocks, err := enc.EncodeSegment(0, data)
	if err != nil {
		return caps.CHKCap{}, fmt.Errorf("upload %v: %w", si, err)
	}
	trailers, capv, err := enc.Finish()
	if err != nil {
		return caps.CHKCap{}, fmt.Errorf("upload %v: finish: %w", si, err)
	}
	n, happy := c.params.N, c.params.Happy
	if len(blocks) != n || len(trailers) != n {
		return caps.CHKCap{}, fmt.Errorf("upload %v: encoder returned %d blocks and %d trailers, want %d", si, len(blocks), len(trailers), n)
	}
	shareSize := l.ShareSize()
	all := make([]byte, 0, int64(n)*shareSize)
	shares := make([][]byte, n)
	for shnum := range n {
		start := len(all)
		all = append(all, enc.ShareHeader(shnum)...)
		all = append(all, blocks[shnum]...)
		all = append(all, trailers[shnum]...)
		if int64(len(all)-start) != shareSize {
			return caps.CHKCap{}, fmt.Errorf("upload %v: share %d has %d bytes, layout says %d", si, shnum, len(all)-start, shareSize)
		}
		shares[shnum] = all[start:len(all):len(all)]
	}

	ring := c.selectServers(ctx, si, shareSize)
	if len(ring) < happy {
		return caps.CHKCap{}, notHappy(len(ring), happy)
	}
	spares := append(append([]Server(nil), ring[min(n, len(ring)):]...), ring[:min(n, len(ring))]...)
	if len(ring) > n {
		ring = ring[:n]
	}
	targets := make(map[int]Server, n)
	for shnum, srv := range assignShares(ring, n) {
		targets[shnum] = srv
	}
	sw := c.startShareWriters(ctx, si, shareSize, enc.ShareHeader, targets, spares)
	sw.setTrailers(trailers)
	for shnum, p := range sw.pipes {
		c.send(ctx, p, pipeItem{b: shares[shnum]})
		p.closeWrite()
	}
	if err := sw.wait(happy); err != nil {
		return caps.CHKCap{}, err
	}
	if opts.Progress != nil {
		opts.Progress(size)
	}
	return capv, nil
}

// shareWriters streams shares to servers, one WriteShare per share, all at
// once. Used by Upload (all shares) and repair (the missing ones).
type shareWriters struct {
	c       *Client
	ctx     context.Context
	si      caps.StorageIndex
	pipes   map[int]*sharePipe
	results chan shareResult
	cancel  context.CancelFunc

	mu       sync.Mutex
	targets  map[int]Server // where each share is being written
	spares   []Server       // in order of preference
	refused  map[ServerID]bool
	held     map[ServerID]*heldShares // what each server held before we wrote
	header   func(shnum int) []byte
	trailers [][]byte // set once the encoder has finished
}

// heldShares is a server's ListShares answer, asked once per upload.
type heldShares struct {
	once   sync.Once
	shnums map[int]bool
	err    error
}

// maxNoSpaceRetries bounds how many servers one share tries after refusals.
const maxNoSpaceRetries = 8

// startShareWriters starts WriteShare(shnum) on targets[shnum] for every
// entry, each reading from its own sharePipe. A server that answers
// ErrNoSpace before reading anything is replaced by the next of spares that
// has not refused, preferring servers not yet written to.
//
// A server keeps a share it already holds (same size) and only adds our
// lease, so before writing, each server is asked which shares it holds; a
// write onto a held share counts only once the server's copy is read back
// and its header (header(shnum)) and trailer (setTrailers) are ours, which
// commit to every block. Else the share fails with ErrCorrupt: a held share
// of other content (a changed file's, or planted by a member who knew the
// storage index) must not count toward happiness.
func (c *Client) startShareWriters(ctx context.Context, si caps.StorageIndex, shareSize int64, header func(int) []byte, targets map[int]Server, spares []Server) *shareWriters {
	wctx, wcancel := context.WithCancel(ctx)
	sw := &shareWriters{
		c: c, ctx: ctx, si: si, targets: targets, spares: spares, cancel: wcancel,
		pipes:   make(map[int]*sharePipe, len(targets)),
		results: make(chan shareResult, len(targets)),
		refused: make(map[ServerID]bool),
		held:    make(map[ServerID]*heldShares),
		header:  header,
	}
	sw.mu.Lock() // goroutines may replace targets while this loop runs
	defer sw.mu.Unlock()
	for shnum, srv := range targets {
		sctx, scancel := context.WithCancel(wctx)
		p := newSharePipe(scancel)
		sw.pipes[shnum] = p
		go func() {
			var err error
			for attempt := 0; ; attempt++ {
				held := sw.heldBefore(sctx, srv, shnum)
				err = srv.WriteShare(sctx, si, shnum, shareSize, p, c.lease(si, srv.ID()))
				if err == nil && held {
					err = sw.checkHeld(sctx, srv, shnum, shareSize)
				}
				if !errors.Is(err, ErrNoSpace) || p.started.Load() || attempt >= maxNoSpaceRetries {
					break
				}
				next := sw.replace(shnum, srv)
				if next == nil {
					break
				}
				c.log.Debug("Server full, trying another", "si", si, "shnum", shnum, "server", srv.ID().String(), "next", next.ID().String())
				srv = next
			}
			p.finish(err)
			scancel()
			sw.results <- shareResult{shnum, srv, err}
		}()
	}
	return sw
}

// heldBefore reports whether srv may already hold share shnum (it says so,
// or it could not say).
func (sw *shareWriters) heldBefore(ctx context.Context, srv Server, shnum int) bool {
	sw.mu.Lock()
	h := sw.held[srv.ID()]
	if h == nil {
		h = &heldShares{}
		sw.held[srv.ID()] = h
	}
	sw.mu.Unlock()
	h.once.Do(func() {
		lctx, cancel := context.WithTimeout(ctx, sw.c.timeout)
		defer cancel()
		infos, err := srv.ListShares(lctx, sw.si)
		h.shnums, h.err = make(map[int]bool, len(infos)), err
		for _, in := range infos {
			h.shnums[in.Shnum] = true
		}
	})
	return h.err != nil || h.shnums[shnum]
}

// setTrailers records the shares' trailers, for checkHeld.
func (sw *shareWriters) setTrailers(trailers [][]byte) {
	sw.mu.Lock()
	sw.trailers = trailers
	sw.mu.Unlock()
}

// checkHeld reads back the header and trailer of share shnum from srv and
// compares them with ours.
func (sw *shareWriters) checkHeld(ctx context.Context, srv Server, shnum int, shareSize int64) error {
	sw.mu.Lock()
	var trailer []byte
	if shnum < len(sw.trailers) {
		trailer = sw.trailers[shnum]
	}
	sw.mu.Unlock()
	header := sw.header(shnum)
	if trailer == nil || int64(len(header)+len(trailer)) > shareSize {
		return fmt.Errorf("share %d: no trailer to compare a held share with", shnum)
	}
	got, err := sw.c.readShare(ctx, srv, sw.si, shnum, 0, int64(len(header)))
	if err != nil {
		return fmt.Errorf("share %d already held: read back header: %w", shnum, err)
	}
	if !bytes.Equal(got, header) {
		return fmt.Errorf("share %d: server already holds a different share (header differs): %w", shnum, ErrCorrupt)
	}
	got, err = sw.c.readShare(ctx, srv, sw.si, shnum, shareSize-int64(len(trailer)), int64(len(trailer)))
	if err != nil {
		return fmt.Errorf("share %d already held: read back trailer: %w", shnum, err)
	}
	if !bytes.Equal(got, trailer) {
		return fmt.Errorf("share %d: server already holds a different share (trailer differs): %w", shnum, ErrCorrupt)
	}
	return nil
}

// replace records that full refused share shnum and picks the server to try
// next, or nil.
func (sw *shareWriters) replace(shnum int, full Server) Server {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.refused[full.ID()] = true
	used := make(map[ServerID]bool, len(sw.targets))
	for _, s := range sw.targets {
		used[s.ID()] = true
	}
	var pick Server
	for _, s := range sw.spares {
		if sw.refused[s.ID()] {
			continue
		}
		if !used[s.ID()] {
			pick = s
			break
		}
		if pick == nil {
			pick = s
		}
	}
	if pick != nil {
		sw.targets[shnum] = pick
	}
	return pick
}

// send queues b for share shnum, if that share is being written.
func (sw *shareWriters) send(shnum int, b []byte) {
	if p := sw.pipes[shnum]; p != nil {
		sw.c.send(sw.ctx, p, pipeItem{b: b})
	}
}

// sendBlocks queues the blocks of segment seg for the shares being written;
// ref (may be nil) is released once every stream is done with its block.
func (sw *shareWriters) sendBlocks(l caps.Layout, seg int, blocks [][]byte, ref *segBuf) error {
	defer ref.release()
	if len(blocks) != l.N {
		return fmt.Errorf("encoder returned %d blocks for segment %d, want %d", len(blocks), seg, l.N)
	}
	want := l.BlockSize(seg)
	for shnum, b := range blocks {
		if len(b) != want {
			return fmt.Errorf("encoder returned a %d-byte block %d of segment %d, want %d", len(b), shnum, seg, want)
		}
		p := sw.pipes[shnum]
		if p == nil {
			continue
		}
		ref.retain()
		if !sw.c.send(sw.ctx, p, pipeItem{b, ref}) {
			ref.release()
		}
	}
	return nil
}

// finish sends each share's trailer and ends its stream.
func (sw *shareWriters) finish(trailers [][]byte) error {
	for shnum := range sw.pipes {
		if shnum >= len(trailers) {
			return fmt.Errorf("encoder returned %d trailers, need share %d", len(trailers), shnum)
		}
	}
	sw.setTrailers(trailers)
	for shnum, p := range sw.pipes {
		sw.c.send(sw.ctx, p, pipeItem{b: trailers[shnum]})
		p.closeWrite()
	}
	return nil
}

// aliveServers counts distinct servers with at least one share still being
// written.
func (sw *shareWriters) aliveServers() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	seen := make(map[ServerID]bool, len(sw.pipes))
	for shnum, p := range sw.pipes {
		if p.alive() {
			seen[sw.targets[shnum].ID()] = true
		}
	}
	return len(seen)
}

// collect waits for the share writers, at most the client's timeout without
// any of them finishing; the ones still running after that are cancelled and
// left out (their goroutines end when their server honours ctx, and never
// block: results is buffered). Failures are logged here.
func (sw *shareWriters) collect() []shareResult {
	defer sw.cancel()
	out := make([]shareResult, 0, len(sw.pipes))
	idle := time.NewTimer(sw.c.timeout)
	defer idle.Stop()
	for len(out) < len(sw.pipes) {
		select {
		case res := <-sw.results:
			if res.err != nil {
				sw.c.log.Warn("Share upload failed", "si", sw.si, "shnum", res.shnum, "server", res.srv.ID().String(), "err", res.err)
			}
			out = append(out, res)
			idle.Reset(sw.c.timeout)
		case <-idle.C:
			return out
		}
	}
	return out
}

// wait collects the writers once every stream is complete and reports
// whether the shares that landed are on at least happy distinct servers.
func (sw *shareWriters) wait(happy int) error {
	placed := make(map[ServerID]bool)
	for _, res := range sw.collect() {
		if res.err == nil {
			placed[res.srv.ID()] = true
		}
	}
	if err := sw.ctx.Err(); err != nil {
		return fmt.Errorf("upload %v: %w", sw.si, err)
	}
	if len(placed) < happy {
		return notHappy(len(placed), happy)
	}
	return nil
}

// abort fails every share still being written (servers store nothing) and
// returns err.
func (sw *shareWriters) abort(err error) (caps.CHKCap, error) {
	for _, p := range sw.pipes {
		p.kill(err)
	}
	sw.cancel()
	sw.collect()
	return caps.CHKCap{}, err
}

// encodeSegments loads and encodes every segment on GOMAXPROCS workers and
// calls emit(seg, pt, blocks, ref) in segment order from one goroutine; pt
// is the segment's plaintext, valid until emit returns, and the blocks live
// in ref's buffer, reused once ref is released. load(ctx, seg, buf) returns
// the plaintext of seg, in buf (of capacity SegmentSize) or elsewhere; it is
// called concurrently. At most workers+2 segments are between load and emit.
func encodeSegments(ctx context.Context, l caps.Layout, enc *caps.Encoder,
	load func(ctx context.Context, seg int, buf []byte) ([]byte, error),
	emit func(seg int, pt []byte, blocks [][]byte, ref *segBuf) error) error {
	nseg := l.NumSegments()
	workers := max(1, runtime.GOMAXPROCS(0))
	window := workers + 2
	type result struct {
		seg    int
		pt     []byte // plaintext, in buf or the loader's own memory
		buf    []byte // goes back to free after emit
		blocks [][]byte
		ref    *segBuf
	}
	g, gctx := errgroup.WithContext(ctx)
	segs := make(chan int)
	out := make(chan result, window)
	tokens := make(chan struct{}, window)
	free := make(chan []byte, window)
	blockBufs := make(chan []byte, window+sharePipeDepth+2)
	blockBufLen := l.N * l.BlockSize(0)

	g.Go(func() error {
		defer close(segs)
		for seg := range nseg {
			select {
			case tokens <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			select {
			case segs <- seg:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for seg := range segs {
				var buf []byte
				select {
				case buf = <-free:
				default:
					buf = make([]byte, l.SegmentLen(0)) // the longest; less than SegmentSize for a small file
				}
				pt, err := load(gctx, seg, buf[:cap(buf)])
				if err != nil {
					return fmt.Errorf("segment %d: %w", seg, err)
				}
				if len(pt) != l.SegmentLen(seg) {
					return fmt.Errorf("segment %d: have %d bytes, want %d", seg, len(pt), l.SegmentLen(seg))
				}
				ref := &segBuf{pool: blockBufs}
				select {
				case ref.buf = <-blockBufs:
				default:
					ref.buf = make([]byte, blockBufLen)
				}
				ref.refs.Store(1)
				blocks, err := enc.EncodeSegmentInto(seg, pt, ref.buf[:l.N*l.BlockSize(seg)])
				if err != nil {
					return fmt.Errorf("encode segment %d: %w", seg, err)
				}
				select {
				case out <- result{seg, pt, buf, blocks, ref}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		pending := make(map[int]result, window)
		for next := 0; next < nseg; {
			select {
			case res := <-out:
				pending[res.seg] = res
			case <-gctx.Done():
				return gctx.Err()
			}
			for {
				res, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				if err := emit(next, res.pt, res.blocks, res.ref); err != nil {
					return err
				}
				select {
				case free <- res.buf:
				default:
				}
				next++
				<-tokens
			}
		}
		return nil
	})
	return g.Wait()
}

// sharePipe carries one share's bytes from the encoder to a server's
// WriteShare: an io.Pipe with a few blocks of buffer, so one slow server
// does not hold back the others until the buffer is full, and with no copy
// on the sending side.
type sharePipe struct {
	ch       chan pipeItem
	dead     chan struct{} // closed by kill: Read fails, sends are dropped
	done     chan struct{} // closed when WriteShare returned
	cancel   context.CancelFunc
	cur      pipeItem
	started  atomic.Bool // the server has called Read
	killOnce sync.Once
	mu       sync.Mutex
	killErr  error
}

// sharePipeDepth is how many blocks may wait for one server.
const sharePipeDepth = 4

var errShareStalled = errors.New("server stopped reading the share")

func newSharePipe(cancel context.CancelFunc) *sharePipe {
	return &sharePipe{
		ch:     make(chan pipeItem, sharePipeDepth),
		dead:   make(chan struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
	}
}

// Read implements io.Reader for the server.
func (p *sharePipe) Read(b []byte) (int, error) {
	p.started.Store(true)
	for len(p.cur.b) == 0 {
		select {
		case it, ok := <-p.ch:
			if !ok {
				return 0, io.EOF
			}
			p.cur = it
		case <-p.dead:
			p.mu.Lock()
			err := p.killErr
			p.mu.Unlock()
			return 0, err
		}
	}
	n := copy(b, p.cur.b)
	p.cur.b = p.cur.b[n:]
	if len(p.cur.b) == 0 {
		p.cur.ref.release()
		p.cur = pipeItem{}
	}
	return n, nil
}

// kill abandons the share: the server's Read fails and its ctx is cancelled.
func (p *sharePipe) kill(err error) {
	p.killOnce.Do(func() {
		p.mu.Lock()
		p.killErr = err
		p.mu.Unlock()
		close(p.dead)
		p.cancel()
	})
}

// finish records that WriteShare returned.
func (p *sharePipe) finish(err error) {
	close(p.done)
	if err != nil {
		p.kill(err)
	}
}

func (p *sharePipe) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
		return true
	}
}

// closeWrite ends the share: Read returns io.EOF once the buffer is drained.
func (p *sharePipe) closeWrite() { close(p.ch) }

// send queues b for p's server. A server that accepts nothing for the
// client's request timeout is dropped (killed); sends to dropped or finished
// shares are discarded, so one bad server never blocks the upload.
//
// It reports whether it.b was queued.
func (c *Client) send(ctx context.Context, p *sharePipe, it pipeItem) bool {
	if len(it.b) == 0 {
		return false
	}
	select {
	case p.ch <- it:
		return true
	case <-p.dead:
		return false
	case <-p.done:
		return false
	default:
	}
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case p.ch <- it:
		return true
	case <-p.dead:
	case <-p.done:
	case <-t.C:
		p.kill(fmt.Errorf("%w for %v", errShareStalled, c.timeout))
	case <-ctx.Done():
		p.kill(ctx.Err())
	}
	return false
}

// pipeItem is one chunk of a share stream; ref, if set, is released once the
// chunk is copied out.
type pipeItem struct {
	b   []byte
	ref *segBuf
}

// segBuf is the backing array of one encoded segment's blocks. It goes back
// to its pool once every share stream has copied its block out (buffers of
// streams that die are left to the garbage collector).
type segBuf struct {
	refs atomic.Int32
	buf  []byte
	pool chan []byte
}

func (s *segBuf) retain() {
	if s != nil {
		s.refs.Add(1)
	}
}

func (s *segBuf) release() {
	if s != nil && s.refs.Add(-1) == 0 {
		select {
		case s.pool <- s.buf:
		default:
		}
	}
}
