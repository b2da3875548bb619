package grid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/caps"
)

// ErrNotEnoughShares: fewer than k verified shares (or blocks of a segment)
// could be fetched, so the file cannot be read. No plaintext is returned for
// the part that failed.
var ErrNotEnoughShares = errors.New("not enough shares")

func notEnoughShares(what string, need, found int) error {
	return fmt.Errorf("%s: need %d shares, found %d: %w", what, need, found, ErrNotEnoughShares)
}

const (
	// segCacheSize is how many decoded segments a File keeps.
	segCacheSize = 8
	// readAhead is how many segments past a sequential read are fetched in
	// the background.
	readAhead = 4
)

// ShareReaderInto is a Server that can read share bytes into the caller's
// buffer: ReadShare of len(buf) bytes at off, returning a prefix of buf.
// Downloads use it to recycle block buffers (p2p.Client implements it).
type ShareReaderInto interface {
	ReadShareInto(ctx context.Context, si caps.StorageIndex, shnum int, off int64, buf []byte) ([]byte, error)
}

// shareLoc is one share a server claims to hold, with what verifying its
// header and trailer found.
type shareLoc struct {
	srv    Server
	shnum  int
	size   int64 // as listed by the server
	layout caps.Layout
	proof  *caps.ShareProof
	err    error         // nil: header and trailer verified against the cap
	lat    time.Duration // mean time of the two reads, a first speed estimate
}

// listResult is one server's answer to ListShares.
type listResult struct {
	srv    Server
	shares []shareLoc
	err    error
}

// locate asks every server in parallel which shares of si it holds and
// verifies the header and trailer of each (every request bounded by the
// client's timeout), and returns once all have answered or timed out. Shares
// whose number is out of range are reported with an error, never used.
func (c *Client) locate(ctx context.Context, si caps.StorageIndex, v *caps.Verifier, k, n int, size uint64) []listResult {
	ch := c.locateStream(ctx, si, v, k, n, size)
	out := make([]listResult, 0, len(c.servers))
	for range c.servers {
		out = append(out, <-ch)
	}
	return out
}

// locateStream is locate delivering each server's result as it comes. The
// channel holds every result, so the senders never block even if the
// receiver stops reading.
func (c *Client) locateStream(ctx context.Context, si caps.StorageIndex, v *caps.Verifier, k, n int, size uint64) <-chan listResult {
	ch := make(chan listResult, len(c.servers))
	for _, srv := range PermutedRing(si, c.servers) {
		go func() { ch <- c.locateOn(ctx, srv, si, v, k, n, size) }()
	}
	return ch
}

func (c *Client) locateOn(ctx context.Context, srv Server, si caps.StorageIndex, v *caps.Verifier, k, n int, size uint64) listResult {
	res := listResult{srv: srv}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	infos, err := srv.ListShares(rctx, si)
	cancel()
	if err != nil {
		res.err = fmt.Errorf("list shares on %v: %w", srv.ID(), err)
		return res
	}
	if len(infos) > 256 {
		infos = infos[:256] // at most 255 shares exist; bound the work a liar can cause
	}
	seen := make(map[int]bool, len(infos))
	for _, info := range infos {
		loc := shareLoc{srv: srv, shnum: info.Shnum, size: info.Size}
		switch {
		case info.Shnum < 0 || info.Shnum >= n:
			loc.err = fmt.Errorf("server listed share %d, want 0..%d: %w", info.Shnum, n-1, ErrCorrupt)
		case seen[info.Shnum]:
			continue
		default:
			start := time.Now()
			loc.layout, loc.proof, loc.err = c.verifyShare(ctx, srv, si, v, info.Shnum, k, n, size)
			loc.lat = time.Since(start) / 2
		}
		seen[info.Shnum] = true
		res.shares = append(res.shares, loc)
	}
	return res
}

// verifyShare reads share shnum's header and trailer from srv and checks
// them against the cap behind v.
func (c *Client) verifyShare(ctx context.Context, srv Server, si caps.StorageIndex, v *caps.Verifier, shnum, k, n int, size uint64) (caps.Layout, *caps.ShareProof, error) {
	hdr, err := c.readShare(ctx, srv, si, shnum, 0, caps.ShareHeaderSize)
	if err != nil {
		return caps.Layout{}, nil, fmt.Errorf("share %d header: %w", shnum, err)
	}
	l, err := v.ParseHeader(shnum, hdr)
	if err != nil {
		return caps.Layout{}, nil, err // says "share N header: ..." and wraps a caps sentinel
	}
	if l.K != k || l.N != n || l.Size != size {
		return caps.Layout{}, nil, fmt.Errorf("share %d header claims k=%d n=%d size=%d, cap has k=%d n=%d size=%d: %w",
			shnum, l.K, l.N, l.Size, k, n, size, ErrCorrupt)
	}
	tr, err := c.readShare(ctx, srv, si, shnum, l.TrailerOffset(), int64(l.TrailerSize()))
	if err != nil {
		return caps.Layout{}, nil, fmt.Errorf("share %d trailer: %w", shnum, err)
	}
	proof, err := v.VerifyTrailer(shnum, l, tr)
	if err != nil {
		return caps.Layout{}, nil, err
	}
	return l, proof, nil
}

// readShare is ReadShare bounded by the client's timeout, insisting on
// exactly length bytes (a short answer is corruption: the layout said the
// bytes are there).
func (c *Client) readShare(ctx context.Context, srv Server, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, err := srv.ReadShare(rctx, si, shnum, off, length)
	if err != nil {
		return nil, fmt.Errorf("read %d bytes at %d from %v: %w", length, off, srv.ID(), err)
	}
	if int64(len(b)) != length {
		return nil, fmt.Errorf("read %d bytes at %d from %v: got %d: %w", length, off, srv.ID(), len(b), ErrCorrupt)
	}
	return b, nil
}

// asCHK returns the read cap inside cp, if it is one.
func asCHK(cp caps.Cap) (caps.CHKCap, bool) {
	switch v := cp.(type) {
	case caps.CHKCap:
		return v, true
	case *caps.CHKCap:
		if v != nil {
			return *v, true
		}
	}
	return caps.CHKCap{}, false
}

// asLit returns the literal cap inside cp, if it is one.
func asLit(cp caps.Cap) (caps.LitCap, bool) {
	switch v := cp.(type) {
	case caps.LitCap:
		return v, true
	case *caps.LitCap:
		if v != nil {
			return *v, true
		}
	}
	return caps.LitCap{}, false
}

// asVerify returns the verify cap of cp (a read cap yields its verify cap).
func asVerify(cp caps.Cap) (caps.CHKVerifyCap, bool) {
	switch v := cp.(type) {
	case caps.CHKVerifyCap:
		return v, true
	case *caps.CHKVerifyCap:
		if v != nil {
			return *v, true
		}
	}
	if rc, ok := asCHK(cp); ok {
		return rc.VerifyCap(), true
	}
	return caps.CHKVerifyCap{}, false
}

// srvStat is what a File learned about a server's speed and reliability.
type srvStat struct {
	latency atomic.Int64 // moving average of successful block reads, ns
	fails   atomic.Int32 // timeouts and errors
}

func (s *srvStat) observe(d time.Duration) {
	old := s.latency.Load()
	if old == 0 {
		s.latency.Store(int64(d))
		return
	}
	s.latency.Store(old - old/4 + int64(d)/4)
}

// source is one verified share on one server.
type source struct {
	srv   Server
	shnum int
	proof *caps.ShareProof
	stat  *srvStat
	bad   atomic.Bool // a block failed its hash: never use this share again
}

// File is an open immutable file. It reads only the segments a read covers,
// checks every block against the cap before decoding, and falls back on other
// shares and servers on error, corruption or a stalled request. It is safe
// for concurrent use, except that Read and Seek share one offset.
type File struct {
	c      *Client
	ctx    context.Context // bounds ReadAt, Read and read-ahead; ends with Close
	cancel context.CancelFunc
	size   int64
	isLit  bool
	lit    []byte // the content of a lit cap

	si  caps.StorageIndex
	dec *caps.Decoder
	l   caps.Layout // set by the first verified share, before Open returns
	k   int

	srcMu      sync.Mutex
	sources    []*source // verified shares; late servers add theirs
	shnums     map[int]bool
	stats      map[ServerID]*srvStat
	haveLayout bool
	firstErr   error

	blockPool sync.Pool // *[]byte of BlockSize(0) capacity, for ShareReaderInto servers

	mu      sync.Mutex
	segs    map[int]*segEntry
	tick    uint64
	lastEnd int64 // end of the last ReadAt, to detect sequential reads
	off     int64 // Read/Seek offset
}

// segEntry is a decoded segment in the cache, or one being fetched.
type segEntry struct {
	done chan struct{}
	data []byte
	err  error
	used uint64
}

// Open finds and verifies the shares of the file c names and returns it for
// reading. A lit cap is served from the cap. ctx bounds the whole life of the
// File (its reads and background read-ahead); Close releases it earlier.
// Open fails with an error wrapping ErrNotEnoughShares if fewer than k shares
// pass verification.
func (c *Client) Open(ctx context.Context, cp caps.Cap) (*File, error) {
	if lit, ok := asLit(cp); ok {
		fctx, cancel := context.WithCancel(ctx)
		return &File{c: c, ctx: fctx, cancel: cancel, size: int64(len(lit.Data)), isLit: true, lit: lit.Data}, nil
	}
	rc, ok := asCHK(cp)
	if !ok {
		return nil, fmt.Errorf("open: a %q cap is not an immutable file's read cap", kindOf(cp))
	}
	if rc.Size > 1<<62 || rc.K < 1 || rc.N < rc.K || rc.N > 256 {
		return nil, fmt.Errorf("open: cap has k=%d n=%d size=%d: %w", rc.K, rc.N, rc.Size, caps.ErrFormat)
	}
	vc := rc.VerifyCap()
	dec := caps.NewDecoder(rc)
	f := c.newFileShell(ctx, vc, dec)
	// Listen to the servers until all have answered, or until k shares are
	// verified and a grace period passed (as long as the answers took so
	// far, at least 50 ms): one hung server must not hold up every open.
	// Late answers keep adding shares in the background.
	ch := c.locateStream(f.ctx, vc.SI, dec.Verifier, rc.K, rc.N, rc.Size)
	start := time.Now()
	var grace <-chan time.Time
	remaining := len(c.servers)
wait:
	for remaining > 0 {
		select {
		case lr := <-ch:
			remaining--
			if f.addListing(lr) >= rc.K && grace == nil {
				t := time.NewTimer(max(50*time.Millisecond, time.Since(start)))
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			break wait
		case <-ctx.Done():
			f.cancel()
			return nil, fmt.Errorf("open %v: %w", vc.SI, ctx.Err())
		}
	}
	if err := f.enough(); err != nil {
		f.cancel()
		return nil, fmt.Errorf("open: %w", err)
	}
	if remaining > 0 {
		go func() {
			for ; remaining > 0; remaining-- {
				select {
				case lr := <-ch:
					f.addListing(lr)
				case <-f.ctx.Done():
					return
				}
			}
		}()
	}
	return f, nil
}

// newFileShell returns a File with no shares yet.
func (c *Client) newFileShell(ctx context.Context, vc caps.CHKVerifyCap, dec *caps.Decoder) *File {
	f := &File{
		c: c, size: int64(vc.Size), si: vc.SI, dec: dec, k: vc.K,
		segs: make(map[int]*segEntry), shnums: make(map[int]bool), stats: make(map[ServerID]*srvStat),
	}
	f.ctx, f.cancel = context.WithCancel(ctx)
	return f
}

// newFile builds a File from the shares that passed verification in lrs.
func (c *Client) newFile(ctx context.Context, vc caps.CHKVerifyCap, dec *caps.Decoder, lrs []listResult) (*File, error) {
	f := c.newFileShell(ctx, vc, dec)
	for _, lr := range lrs {
		f.addListing(lr)
	}
	if err := f.enough(); err != nil {
		f.cancel()
		return nil, err
	}
	return f, nil
}

// addListing adds the verified shares of one server's answer and returns
// how many distinct share numbers the File now has.
func (f *File) addListing(lr listResult) int {
	f.srcMu.Lock()
	defer f.srcMu.Unlock()
	log := f.c.log
	if lr.err != nil {
		log.Debug("Share listing failed", "si", f.si, "err", lr.err)
		f.firstErr = cmpOr(f.firstErr, lr.err)
	}
	for _, loc := range lr.shares {
		if loc.err != nil {
			log.Warn("Share failed verification", "si", f.si, "server", loc.srv.ID().String(), "shnum", loc.shnum, "err", loc.err)
			f.firstErr = cmpOr(f.firstErr, loc.err)
			continue
		}
		if !f.haveLayout {
			f.l, f.haveLayout = loc.layout, true
		} else if loc.layout != f.l {
			continue // cannot happen for shares verified against one root
		}
		st := f.stats[loc.srv.ID()]
		if st == nil {
			st = new(srvStat)
			f.stats[loc.srv.ID()] = st
		}
		st.observe(loc.lat)
		f.sources = append(f.sources, &source{srv: loc.srv, shnum: loc.shnum, proof: loc.proof, stat: st})
		f.shnums[loc.shnum] = true
	}
	return len(f.shnums)
}

// enough returns an ErrNotEnoughShares error unless k distinct shares are
// verified.
func (f *File) enough() error {
	f.srcMu.Lock()
	defer f.srcMu.Unlock()
	if err := f.ctx.Err(); err != nil {
		return fmt.Errorf("%v: %w", f.si, err)
	}
	if len(f.shnums) < f.k {
		err := notEnoughShares(f.si.String(), f.k, len(f.shnums))
		if f.firstErr != nil {
			err = fmt.Errorf("%w (first problem: %v)", err, f.firstErr)
		}
		return err
	}
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func kindOf(cp caps.Cap) string {
	if cp == nil {
		return "nil"
	}
	return cp.Kind()
}

// Size returns the file's length in bytes.
func (f *File) Size() int64 { return f.size }

// Close stops read-ahead and makes later reads fail. It never fails.
func (f *File) Close() error {
	f.cancel()
	return nil
}

// ReadAt implements io.ReaderAt, bounded by the ctx given to Open.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtContext(f.ctx, p, off)
}

// ReadAtContext is ReadAt with its own ctx (it must not outlive the File's).
// It fetches only the segments covering [off, off+len(p)), several at once,
// and starts read-ahead when reads are sequential.
func (f *File) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := p
	if rest := f.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	if f.isLit {
		n := copy(want, f.lit[off:])
		return f.eofIfShort(n, len(p))
	}
	if len(want) == 0 {
		return 0, nil
	}
	segSize := int64(f.l.SegmentSize)
	first := int(off / segSize)
	last := int((off + int64(len(want)) - 1) / segSize)
	f.mu.Lock()
	// Sequential: starts near where the last read ended. The kernel issues
	// read-ahead reads concurrently and slightly out of order, so "near"
	// is within two segments, not exactly at the end.
	sequential := f.lastEnd > 0 && off >= f.lastEnd-2*segSize && off <= f.lastEnd+2*segSize
	f.lastEnd = max(f.lastEnd, off+int64(len(want)))
	if !sequential {
		f.lastEnd = off + int64(len(want))
	}
	f.mu.Unlock()
	ahead := last
	if sequential {
		ahead = min(last+readAhead, f.l.NumSegments()-1)
	}

	n := 0
	for seg := first; seg <= last; seg++ {
		for s := seg + 1; s <= min(seg+readAhead, ahead); s++ {
			f.prefetch(s)
		}
		data, err := f.segment(ctx, seg)
		if err != nil {
			return n, fmt.Errorf("read at %d: %w", off+int64(n), err)
		}
		segOff := int64(seg) * segSize
		from := off + int64(n) - segOff
		if from < 0 || from > int64(len(data)) {
			return n, fmt.Errorf("read at %d: segment %d decoded to %d bytes: %w", off+int64(n), seg, len(data), ErrCorrupt)
		}
		n += copy(want[n:], data[from:])
	}
	if n < len(want) {
		return n, fmt.Errorf("read at %d: segments ended early: %w", off+int64(n), ErrCorrupt)
	}
	return f.eofIfShort(n, len(p))
}

func (f *File) eofIfShort(n, want int) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Read implements io.Reader.
func (f *File) Read(p []byte) (int, error) {
	f.mu.Lock()
	off := f.off
	f.mu.Unlock()
	n, err := f.ReadAt(p, off)
	f.mu.Lock()
	f.off = off + int64(n)
	f.mu.Unlock()
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.size + offset
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek: negative position %d", abs)
	}
	f.off = abs
	return abs, nil
}

// segment returns decoded segment seg from the cache, fetching it once no
// matter how many readers want it.
func (f *File) segment(ctx context.Context, seg int) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		e, owner := f.entry(seg)
		if owner {
			f.fill(ctx, seg, e)
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// Another reader's cancelled ctx is not our failure: try ourselves.
		if e.err != nil && isCtxErr(e.err) && ctx.Err() == nil && attempt < 2 {
			continue
		}
		return e.data, e.err
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// prefetch starts fetching seg in the background if it is not cached.
func (f *File) prefetch(seg int) {
	if e, owner := f.entry(seg); owner {
		go f.fill(f.ctx, seg, e)
	}
}

// entry returns seg's cache entry; owner says the caller created it and must
// fill it.
func (f *File) entry(seg int) (*segEntry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tick++
	if e, ok := f.segs[seg]; ok {
		e.used = f.tick
		return e, false
	}
	e := &segEntry{done: make(chan struct{}), used: f.tick}
	f.segs[seg] = e
	for len(f.segs) > segCacheSize && f.evictOne() {
	}
	return e, true
}

// evictOne drops the least recently used finished segment.
func (f *File) evictOne() bool {
	victim, oldest := -1, ^uint64(0)
	for s, e := range f.segs {
		select {
		case <-e.done:
		default:
			continue
		}
		if e.used < oldest {
			victim, oldest = s, e.used
		}
	}
	if victim < 0 {
		return false
	}
	delete(f.segs, victim)
	return true
}

func (f *File) fill(ctx context.Context, seg int, e *segEntry) {
	e.data, e.err = f.fetchSegment(ctx, seg)
	if e.err != nil {
		f.mu.Lock()
		if f.segs[seg] == e {
			delete(f.segs, seg)
		}
		f.mu.Unlock()
	}
	close(e.done)
}

// candidates orders the usable sources for one segment: servers that
// failed least first; then a server clearly faster (less than half the
// latency) first; then data shares (no reconstruction needed); then the
// faster.
func (f *File) candidates() []*source {
	type cand struct {
		s     *source
		fails int32
		lat   int64
	}
	f.srcMu.Lock()
	cs := make([]cand, 0, len(f.sources))
	for _, s := range f.sources {
		if !s.bad.Load() {
			cs = append(cs, cand{s, s.stat.fails.Load(), s.stat.latency.Load()})
		}
	}
	f.srcMu.Unlock()
	const slack = int64(time.Millisecond)
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.fails != b.fails {
			return a.fails < b.fails
		}
		if a.lat > 0 && b.lat > 0 {
			if a.lat > 2*b.lat+slack {
				return false
			}
			if b.lat > 2*a.lat+slack {
				return true
			}
		}
		if da, db := a.s.shnum < f.k, b.s.shnum < f.k; da != db {
			return da
		}
		return a.lat < b.lat
	})
	out := make([]*source, len(cs))
	for i, c := range cs {
		out[i] = c.s
	}
	return out
}

// blockResult is one block fetch's outcome.
type blockResult struct {
	src   *source
	block []byte
	err   error
}

// fetchSegment fetches k blocks of seg from distinct shares in parallel,
// replacing any that fail, and decodes them. A request slower than a few
// times the expected latency gets a hedge: one more share is asked, and the
// first k good blocks win.
func (f *File) fetchSegment(ctx context.Context, seg int) ([]byte, error) {
	return f.fetchSegmentInto(ctx, seg, nil)
}

// fetchSegmentInto is fetchSegment decoding into buf when it is large
// enough (see caps.Decoder.DecodeSegmentInto).
//
// Parity blocks are checked against their share's block hashes as they
// arrive (a bad one would waste a reconstruction); data blocks are not:
// DecodeSegment verifies the segment they form against the cap anyway.
// Only when decoding fails are the data blocks checked, to find and drop
// the share that lied, and the segment fetched again without it; each
// retry drops at least one share, else the failure is final.
func (f *File) fetchSegmentInto(ctx context.Context, seg int, buf []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		blocks, srcs, err := f.fetchBlocks(ctx, seg)
		if err != nil {
			return nil, err
		}
		data, err := f.dec.DecodeSegmentInto(f.l, seg, blocks, buf)
		if err == nil {
			f.recycle(blocks, srcs) // decoding copied them
			if len(data) != f.l.SegmentLen(seg) {
				return nil, fmt.Errorf("decode segment %d of %v: got %d bytes, want %d: %w", seg, f.si, len(data), f.l.SegmentLen(seg), ErrCorrupt)
			}
			return data, nil
		}
		derr := fmt.Errorf("decode segment %d of %v: %w", seg, f.si, err)
		if !errors.Is(err, caps.ErrIntegrity) || attempt >= f.l.N {
			return nil, derr
		}
		if f.checkDataBlocks(seg, blocks, srcs) == 0 {
			return nil, derr // every block matches its share: nothing to drop
		}
	}
}

// recycle returns the blocks read into pooled buffers to the pool.
func (f *File) recycle(blocks [][]byte, srcs []*source) {
	for i, b := range blocks {
		if b != nil && srcs[i] != nil && cap(b) == f.l.BlockSize(0) {
			if _, ok := srcs[i].srv.(ShareReaderInto); ok {
				b = b[:cap(b)]
				f.blockPool.Put(&b)
			}
		}
	}
}

// checkDataBlocks checks the unchecked (data) blocks of a segment that
// failed to decode, marks the shares whose block is bad, and returns how
// many it marked.
func (f *File) checkDataBlocks(seg int, blocks [][]byte, srcs []*source) int {
	bad := 0
	for shnum, b := range blocks {
		if b == nil || shnum >= f.k || srcs[shnum] == nil {
			continue
		}
		s := srcs[shnum]
		if err := s.proof.CheckBlock(seg, b); err != nil {
			s.bad.Store(true)
			s.stat.fails.Add(1)
			f.c.log.Warn("Corrupt block", "si", f.si, "server", s.srv.ID().String(), "shnum", s.shnum, "seg", seg, "err", err)
			bad++
		}
	}
	return bad
}

// fetchBlocks fetches k blocks of seg from distinct shares (parity blocks
// checked, data blocks not; see fetchSegmentInto) and returns them indexed
// by share number, with the source of each.
func (f *File) fetchBlocks(ctx context.Context, seg int) ([][]byte, []*source, error) {
	cands := f.candidates()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan blockResult, len(cands)) // stragglers never block
	tried := make([]bool, len(cands))
	busy := make(map[int]bool, f.k) // share numbers in flight or fetched
	outstanding, got := 0, 0
	var slowest int64 // expected latency of the requests launched
	launch := func() bool {
		for i, s := range cands {
			if tried[i] || busy[s.shnum] {
				continue
			}
			tried[i], busy[s.shnum] = true, true
			outstanding++
			slowest = max(slowest, s.stat.latency.Load())
			go func() { results <- f.fetchBlock(ctx, s, seg) }()
			return true
		}
		return false
	}
	for range f.k {
		if !launch() {
			break
		}
	}
	hedge := time.NewTimer(f.hedgeDelay(slowest))
	defer hedge.Stop()
	blocks := make([][]byte, f.l.N)
	srcs := make([]*source, f.l.N)
	var lastErr error
	for got < f.k {
		if outstanding == 0 {
			err := notEnoughShares(fmt.Sprintf("segment %d of %v", seg, f.si), f.k, got)
			if lastErr != nil {
				err = fmt.Errorf("%w (last problem: %v)", err, lastErr)
			}
			return nil, nil, err
		}
		var r blockResult
		select {
		case r = <-results:
		case <-hedge.C:
			launch()
			hedge.Reset(f.hedgeDelay(slowest))
			continue
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		outstanding--
		if r.err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			lastErr = r.err
			busy[r.src.shnum] = false
			launch()
			continue
		}
		blocks[r.src.shnum], srcs[r.src.shnum] = r.block, r.src
		got++
	}
	return blocks, srcs, nil
}

// hedgeDelay is how long a segment fetch waits before asking one more
// share: four times the slowest expected latency plus 10 ms, at most half
// the request timeout.
func (f *File) hedgeDelay(expected int64) time.Duration {
	d := 4*time.Duration(expected) + 10*time.Millisecond
	return min(d, max(f.c.timeout/2, time.Millisecond))
}

// fetchBlock reads one block and checks it if it is a parity block; a
// block failing its hash marks the share bad for the life of the File.
func (f *File) fetchBlock(ctx context.Context, s *source, seg int) blockResult {
	start := time.Now()
	var b []byte
	var err error
	if ri, ok := s.srv.(ShareReaderInto); ok {
		b, err = f.readBlockInto(ctx, ri, s, seg)
	} else {
		b, err = f.c.readShare(ctx, s.srv, f.si, s.shnum, f.l.BlockOffset(seg), int64(f.l.BlockSize(seg)))
	}
	if err != nil {
		if ctx.Err() != nil {
			// Cancelled because other shares were faster: this server is
			// at least this slow, so later segments ask it later.
			if d := time.Since(start); int64(d) > s.stat.latency.Load() {
				s.stat.observe(d)
			}
		} else {
			s.stat.fails.Add(1)
			if errors.Is(err, ErrCorrupt) {
				s.bad.Store(true)
			}
			f.c.log.Debug("Block read failed", "si", f.si, "server", s.srv.ID().String(), "shnum", s.shnum, "seg", seg, "err", err)
		}
		return blockResult{src: s, err: err}
	}
	// Data blocks are checked only if the segment fails to decode
	// (readShare already insisted on the block's length).
	if s.shnum >= f.k {
		err = s.proof.CheckBlock(seg, b)
	}
	if err != nil {
		s.bad.Store(true)
		s.stat.fails.Add(1)
		f.c.log.Warn("Corrupt block", "si", f.si, "server", s.srv.ID().String(), "shnum", s.shnum, "seg", seg, "err", err)
		return blockResult{src: s, err: fmt.Errorf("server %v: %w", s.srv.ID(), err)}
	}
	s.stat.observe(time.Since(start))
	return blockResult{src: s, block: b}
}

// readBlockInto is readShare of seg's block into a pooled buffer.
func (f *File) readBlockInto(ctx context.Context, ri ShareReaderInto, s *source, seg int) ([]byte, error) {
	var buf []byte
	if p, ok := f.blockPool.Get().(*[]byte); ok {
		buf = *p
	} else {
		buf = make([]byte, f.l.BlockSize(0))
	}
	off, length := f.l.BlockOffset(seg), f.l.BlockSize(seg)
	rctx, cancel := context.WithTimeout(ctx, f.c.timeout)
	defer cancel()
	b, err := ri.ReadShareInto(rctx, f.si, s.shnum, off, buf[:length])
	if err != nil {
		return nil, fmt.Errorf("read %d bytes at %d from %v: %w", length, off, s.srv.ID(), err)
	}
	if len(b) != length {
		return nil, fmt.Errorf("read %d bytes at %d from %v: got %d: %w", length, off, s.srv.ID(), len(b), ErrCorrupt)
	}
	return b, nil
}

// Download writes the whole file c names to w, fetching and decoding several
// segments in parallel and writing them in order. Every byte written was
// verified; on error, w may hold a verified prefix of the file. progress, if
// set, is called after each write with the bytes written so far, from the
// calling goroutine.
func (c *Client) Download(ctx context.Context, cp caps.Cap, w io.Writer, progress func(int64)) error {
	start := time.Now()
	f, err := c.Open(ctx, cp)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer f.Close()
	c.log.Debug("Opened file", "si", f.si, "took", time.Since(start))
	if f.isLit {
		if _, err := w.Write(f.lit); err != nil {
			return fmt.Errorf("download: write: %w", err)
		}
		if progress != nil {
			progress(int64(len(f.lit)))
		}
		return nil
	}
	nseg := f.l.NumSegments()
	window := 2*runtime.GOMAXPROCS(0) + 2
	// Decode buffers go round: one per segment in flight and one being
	// written, instead of a fresh segment-sized allocation per segment.
	bufSize := f.k * f.l.BlockSize(0)
	free := make(chan []byte, window+2)
	getBuf := func() []byte {
		select {
		case b := <-free:
			return b
		default:
			return make([]byte, bufSize)
		}
	}
	type segResult struct {
		data []byte
		err  error
	}
	g, gctx := errgroup.WithContext(ctx)
	order := make(chan chan segResult, window)
	g.Go(func() error {
		defer close(order)
		for seg := range nseg {
			ch := make(chan segResult, 1)
			select {
			case order <- ch:
			case <-gctx.Done():
				return nil
			}
			go func() {
				data, err := f.fetchSegmentInto(gctx, seg, getBuf())
				ch <- segResult{data, err}
			}()
		}
		return nil
	})
	g.Go(func() error {
		var done int64
		for ch := range order {
			var r segResult
			select {
			case r = <-ch:
			case <-gctx.Done():
				return gctx.Err()
			}
			if r.err != nil {
				return r.err
			}
			if _, err := w.Write(r.data); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			done += int64(len(r.data))
			if cap(r.data) == bufSize { // decoded in place: reuse
				select {
				case free <- r.data[:bufSize]:
				default:
				}
			}
			if progress != nil {
				progress(done)
			}
		}
		if done != f.size {
			return fmt.Errorf("wrote %d bytes, want %d: %w", done, f.size, ErrCorrupt)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("download %v: %w", f.si, err)
	}
	return nil
}
