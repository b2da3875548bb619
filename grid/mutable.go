package grid

// Mutable files and directories on the grid: create, publish, retrieve the
// newest version, read-modify-write with retry, and lease renewal. The share
// format is caps' (docs/spec/mutable.md); this file decides where shares go
// and which version wins.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// Version names one published version of a mutable file.
type Version struct {
	Seq  uint64
	Root [32]byte // Merkle root of the version's shares, signed by the writer
}

var (
	// ErrRollback: every version the servers offer is older than one this
	// client has already seen; they (or an attacker between us and them)
	// roll the file back. Nothing is returned.
	ErrRollback = errors.New("mutable file rolled back")
	// ErrConflict is caps.ErrConflict: a Modify function returns it (or a
	// *caps.ConflictError) when its change collides with a concurrent one,
	// and Modify returns it unchanged.
	ErrConflict = caps.ErrConflict
	// ErrSeqExhausted: the next version would need sequence number 2^64-1
	// or wrap to 0, which readers would take for older; the file cannot be
	// changed any more (copy its content to a new one).
	ErrSeqExhausted = errors.New("mutable file's sequence numbers are used up")
	// errNotMutable: the cap given is not a mutable one of the needed kind.
	errNotMutable = errors.New("not a mutable cap")
)

// SeqStore remembers, per storage index, the highest sequence number this
// client has retrieved or published, so that Retrieve can refuse older
// data. Implementations must be safe for concurrent use; the CLI may persist
// it across runs.
type SeqStore interface {
	// Seen returns the highest sequence number recorded for si, 0 if none.
	Seen(si caps.StorageIndex) uint64
	// Observe raises the number recorded for si to seq if seq is higher.
	Observe(si caps.StorageIndex, seq uint64)
}

// MemSeqStore is a SeqStore in memory.
type MemSeqStore struct {
	mu sync.Mutex
	m  map[caps.StorageIndex]uint64
}

// NewMemSeqStore returns an empty in-memory SeqStore.
func NewMemSeqStore() *MemSeqStore { return &MemSeqStore{m: make(map[caps.StorageIndex]uint64)} }

// Seen implements SeqStore.
func (s *MemSeqStore) Seen(si caps.StorageIndex) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[si]
}

// Observe implements SeqStore.
func (s *MemSeqStore) Observe(si caps.StorageIndex, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.m[si] {
		s.m[si] = seq
	}
}

// Retry bounds of Publish and Modify when concurrent writers collide.
const (
	maxMutableAttempts = 8
	mutableBackoffBase = 5 * time.Millisecond
	mutableBackoffMax  = 200 * time.Millisecond
	// Waiting for another writer's version in flight: steps of about
	// mutableWaitStep, at most maxMutableWaits of them (and at most the
	// request timeout in all).
	mutableWaitStep = 20 * time.Millisecond
	maxMutableWaits = 500
	// Grace period of an early read (see mapSlot).
	mutableGraceMin    = 50 * time.Millisecond
	mutableGraceFactor = 4
)

// CreateMutable creates a mutable file (or, with dir, a directory whose
// content should be a caps directory table) holding content as version 1,
// under a fresh random key. It returns the write cap (caps.MutableWriteCap).
func (c *Client) CreateMutable(ctx context.Context, content []byte, dir bool) (caps.Cap, error) {
	wc, err := caps.NewMutableWriteCap(rand.Reader, dir)
	if err != nil {
		return nil, fmt.Errorf("create mutable: %w", err)
	}
	if _, err := c.publishAt(ctx, wc, content, 1); err != nil {
		return nil, fmt.Errorf("create mutable: %w", err)
	}
	return wc, nil
}

// Publish replaces the content of the mutable file wc names with content,
// whatever is there now, as a version numbered above every version any
// server holds. Use Modify to change content without overwriting a
// concurrent writer's change.
func (c *Client) Publish(ctx context.Context, wc caps.MutableWriteCap, content []byte) (Version, error) {
	si := wc.StorageIndex()
	var lastErr error
	for attempt := range maxMutableAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return Version{}, fmt.Errorf("publish %v: %w", si, err)
			}
		}
		st := c.mapSlot(ctx, wc.VerifyCap(), false)
		if err := c.enoughServers(si, st); err != nil {
			return Version{}, fmt.Errorf("publish: %w", err)
		}
		seq := max(st.maxSeq, c.seqs.Seen(si)) + 1
		v, err := c.publishAt(ctx, wc, content, seq)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrStale) {
			return Version{}, fmt.Errorf("publish: %w", err)
		}
		lastErr = err
	}
	return Version{}, fmt.Errorf("publish %v: gave up after %d attempts: %w", si, maxMutableAttempts, lastErr)
}

// Retrieve returns the newest version of the mutable file c names (a write
// or read cap) that it can fully rebuild from verified shares. It asks every
// server at once; once enough have answered it waits only a short grace
// period for stalled ones (see mapSlot). Among versions with the same sequence number it takes the
// one with the higher root, so every reader picks the same one. If that
// version is older than one this client saw before, it returns ErrRollback.
func (c *Client) Retrieve(ctx context.Context, cp caps.Cap) ([]byte, Version, error) {
	rc, ok := caps.MutableReadCapOf(cp)
	if !ok {
		return nil, Version{}, fmt.Errorf("retrieve: want a mutable write or read cap, have %s: %w", kindOf(cp), errNotMutable)
	}
	content, v, _, err := c.retrieve(ctx, rc, true)
	if err == nil && isMutableWriteCap(cp) {
		c.latest.put(rc.StorageIndex(), v, content) // a Modify usually follows
	}
	return content, v, err
}

// isMutableWriteCap reports whether cp can write the mutable file it names.
func isMutableWriteCap(cp caps.Cap) bool {
	switch w := cp.(type) {
	case caps.MutableWriteCap:
		return true
	case *caps.MutableWriteCap:
		return w != nil
	}
	return false
}

// Modify changes the mutable file wc names with fn, read-modify-write: it
// retrieves the newest version, calls fn with its content (fn may keep or
// change the slice) and publishes the result as the next version. If
// another writer published first (a server answers ErrStale), it retrieves
// again and calls fn again on the newer content, up to 8 times with random
// backoff, so fn must apply "my change to whatever is there now" (see
// caps.Table.Apply). An error from fn, such as ErrConflict, is returned
// unchanged and nothing is published. If fn returns the content unchanged,
// nothing is published.
//
// The new version is numbered exactly one above the version fn saw, so a
// server that already holds a concurrent writer's version refuses it (a
// compare-and-swap per server), and Modify succeeds only if no server
// refused: a successful Modify is never overwritten by a writer that did
// not see it. A newer version that cannot be rebuilt (fewer than k shares:
// a write in flight, or one abandoned half-way) is waited for up to the
// request timeout, then stepped over.
//
// When this client holds the content of the newest version it knows of
// (it published or retrieved it with the write cap), the first attempt
// calls fn on that copy and publishes without retrieving; the servers'
// compare-and-swap makes that safe, and a refusal, an error from fn or
// no change on the copy falls back to the retrieve above.
func (c *Client) Modify(ctx context.Context, wc caps.MutableWriteCap, fn func(old []byte, v Version) ([]byte, error)) (Version, error) {
	rc := wc.ReadCap()
	si := rc.StorageIndex()
	mine := make(map[[32]byte]bool) // roots this call published
	var lastErr error
	// Fast path: build on the version this client last published or
	// retrieved, without reading it back. The servers' per-share
	// compare-and-swap refuses seq+1 if anyone published since, and then
	// the loop below starts over from a fresh retrieve. The cached copy
	// may be stale, so an error from fn (a conflict) or no change is only
	// believed after a fresh retrieve.
	if cached, v, ok := c.latest.get(si, c.seqs.Seen(si)); ok {
		if next, err := fn(bytes.Clone(cached), v); err == nil && !bytes.Equal(next, cached) {
			nv, err := c.publishAt(ctx, wc, next, v.Seq+1)
			if err == nil {
				return nv, nil
			}
			if !errors.Is(err, ErrStale) {
				return Version{}, fmt.Errorf("modify: %w", err)
			}
			mine[nv.Root] = true
			lastErr = err
			c.log.Debug("Mutable write from the cached version raced, retrieving", "si", si, "seq", v.Seq)
		}
	}
	var blockedSince time.Time
	waits := 0
	for attempt := 0; attempt < maxMutableAttempts; {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return Version{}, fmt.Errorf("modify %v: %w", si, err)
			}
		}
		// After a lost race, wait for every server: the one that refused
		// us may be slow to answer.
		old, v, st, err := c.retrieve(ctx, rc, attempt == 0)
		if err != nil {
			return Version{}, fmt.Errorf("modify: %w", err)
		}
		c.latest.put(si, v, old)
		if err := c.enoughServers(si, st); err != nil {
			return Version{}, fmt.Errorf("modify: %w", err)
		}
		seq := v.Seq + 1
		if st.maxSeq > v.Seq {
			// Someone is writing a newer version (or gave up half-way).
			// Building on v now could overwrite their change once they
			// finish, so wait for it; step over it only when it has stayed
			// unrecoverable longer than any of their requests may take.
			if blockedSince.IsZero() {
				blockedSince = time.Now()
			}
			if time.Since(blockedSince) < c.timeout && waits < maxMutableWaits {
				waits++
				if err := sleepJitter(ctx, mutableWaitStep); err != nil {
					return Version{}, fmt.Errorf("modify %v: %w", si, err)
				}
				continue
			}
			c.log.Info("Stepping over an unrecoverable newer mutable version", "si", si, "seq", st.maxSeq, "recoverable", v.Seq)
			seq = st.maxSeq + 1
		}
		attempt++
		var next []byte
		if mine[v.Root] {
			// Our own earlier attempt won the race on enough servers to be
			// the version every reader picks: the change is in. Publish it
			// again, numbered higher, so that it is on every server.
			next = old
		} else {
			orig := bytes.Clone(old)
			if next, err = fn(old, v); err != nil {
				return Version{}, err
			}
			if attempt == 1 && bytes.Equal(next, orig) {
				return v, nil
			}
		}
		nv, err := c.publishAt(ctx, wc, next, seq)
		if err == nil {
			return nv, nil
		}
		if !errors.Is(err, ErrStale) {
			return Version{}, fmt.Errorf("modify: %w", err)
		}
		mine[nv.Root] = true
		lastErr = err
		c.log.Debug("Mutable write raced, retrying", "si", si, "attempt", attempt)
	}
	return Version{}, fmt.Errorf("modify %v: gave up after %d attempts: %w", si, maxMutableAttempts, lastErr)
}

// RenewMutable adds this client's lease to the shares of the mutable file
// cp names (any mutable cap) on every server that holds some, and returns
// how many servers renewed. None is an ErrNotFound error.
func (c *Client) RenewMutable(ctx context.Context, cp caps.Cap) (int, error) {
	vc, ok := caps.MutableVerifyCapOf(cp)
	if !ok {
		return 0, fmt.Errorf("renew: want a mutable cap, have %s: %w", kindOf(cp), errNotMutable)
	}
	si := vc.SI
	errs := make([]error, len(c.servers))
	var wg sync.WaitGroup
	for i, s := range c.servers {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			errs[i] = s.AddLease(rctx, si, c.lease(si, s.ID()))
		})
	}
	wg.Wait()
	renewed := 0
	var firstErr error
	for i, err := range errs {
		switch {
		case err == nil:
			renewed++
		case errors.Is(err, ErrNotFound):
		default:
			c.log.Debug("Mutable lease renewal failed", "si", si, "server", c.servers[i].ID().String(), "err", err)
			if firstErr == nil {
				firstErr = fmt.Errorf("server %v: %w", c.servers[i].ID(), err)
			}
		}
	}
	if renewed == 0 {
		if firstErr != nil {
			return 0, fmt.Errorf("renew %v: no server renewed: %w", si, firstErr)
		}
		return 0, fmt.Errorf("renew %v: no server holds shares: %w", si, ErrNotFound)
	}
	return renewed, nil
}

// backoff sleeps a random time that grows with attempt, or until ctx ends.
func backoff(ctx context.Context, attempt int) error {
	return sleepJitter(ctx, min(mutableBackoffBase<<attempt, mutableBackoffMax))
}

// sleepJitter sleeps between 1 ms and limit+1 ms, or until ctx ends.
func sleepJitter(ctx context.Context, limit time.Duration) error {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(limit)))
	if err != nil {
		return fmt.Errorf("backoff: %w", err)
	}
	t := time.NewTimer(time.Duration(n.Int64()) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enoughServers refuses to write when the read just before failed on so
// many servers that fewer than Happy are left: the write would fail anyway,
// and the shares it did replace would leave the old version unrecoverable
// too. Servers an early read did not wait for count as alive.
func (c *Client) enoughServers(si caps.StorageIndex, st *slotState) error {
	if alive := len(c.servers) - st.failed; alive < c.params.Happy {
		return fmt.Errorf("%v: %d servers failed to answer, not writing: %w", si, st.failed, notHappy(alive, c.params.Happy))
	}
	return nil
}

// slotState is what one round of ReadSlot over every server found.
type slotState struct {
	versions []*versionShares // one per (seq, root)
	maxSeq   uint64           // highest seq of any verified share
	servers  int              // servers that answered
	failed   int              // servers whose read failed (not counting those an early read left waiting)
	corrupt  int              // shares that failed verification
	newer    int              // of those, shares in a format newer than this client reads
	newerSrv int              // servers that sent at least one such share
}

// versionShares gathers the verified shares of one version.
type versionShares struct {
	v      Version
	header []byte
	shares map[int]*caps.MutableShare // by shnum
}

func (vs *versionShares) list() []*caps.MutableShare {
	out := make([]*caps.MutableShare, 0, len(vs.shares))
	for _, sh := range vs.shares {
		out = append(out, sh)
	}
	slices.SortFunc(out, func(a, b *caps.MutableShare) int { return a.Shnum - b.Shnum })
	return out
}

// mapSlot reads slot vc.SI from every server in parallel (each request
// bounded by the client's timeout) and verifies every share it gets, in the
// goroutine that read it.
//
// With early set, once more than n - happy servers answered and the newest
// version seen (highest seq, then highest root) has k verified shares, it
// waits only a grace period (4 times the time taken so far, at least 50 ms,
// at most the request timeout) for the rest. A successful publish reached
// at least happy servers, so among more than n - happy honest answers at
// least one shows a newer successful version; the grace period lets the
// answers of every responsive server in, so servers serving stale versions
// are outvoted as when waiting for all, while a stalled server costs the
// grace period instead of the whole request timeout. Without early it waits
// for every server.
func (c *Client) mapSlot(ctx context.Context, vc caps.MutableVerifyCap, early bool) *slotState {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stragglers see it and return into the buffered channel
	type answer struct {
		srv     int
		shares  []*caps.MutableShare
		corrupt int
		newer   int
		err     error
	}
	answers := make(chan answer, len(c.servers))
	for i, s := range c.servers {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			ss, err := s.ReadSlot(rctx, vc.SI)
			a := answer{srv: i, err: err}
			for _, raw := range ss {
				sh, err := caps.ParseMutableShare(vc, raw.Data)
				if err == nil && sh.Shnum != raw.Shnum {
					err = fmt.Errorf("share claims number %d, stored as %d: %w", sh.Shnum, raw.Shnum, caps.ErrFormat)
				}
				if err != nil {
					a.corrupt++
					if errors.Is(err, caps.ErrNewerFormat) {
						a.newer++
					}
					c.log.Debug("Mutable share rejected", "si", vc.SI, "server", s.ID().String(), "shnum", raw.Shnum, "err", err)
					continue
				}
				a.shares = append(a.shares, sh)
			}
			answers <- a
		}()
	}

	st := &slotState{}
	byVersion := make(map[Version]*versionShares)
	need := max(1, len(c.servers)-c.params.Happy+1)
	start := time.Now()
	var grace <-chan time.Time
collect:
	for range c.servers {
		var a answer
		select {
		case a = <-answers:
		case <-grace:
			break collect
		}
		if a.err != nil {
			c.log.Debug("Mutable slot read failed", "si", vc.SI, "server", c.servers[a.srv].ID().String(), "err", a.err)
			st.failed++
			continue
		}
		st.servers++
		st.corrupt += a.corrupt
		st.newer += a.newer
		if a.newer > 0 {
			st.newerSrv++
		}
		for _, sh := range a.shares {
			st.maxSeq = max(st.maxSeq, sh.Seq)
			v := Version{Seq: sh.Seq, Root: sh.Root}
			vs := byVersion[v]
			if vs == nil {
				vs = &versionShares{v: v, header: sh.Header, shares: make(map[int]*caps.MutableShare)}
				byVersion[v] = vs
				st.versions = append(st.versions, vs)
			}
			// Only a misbehaving writer signs two headers with one root;
			// keep the first.
			if bytes.Equal(vs.header, sh.Header) && vs.shares[sh.Shnum] == nil {
				vs.shares[sh.Shnum] = sh
			}
		}
		if early && grace == nil && st.servers >= need && st.newestRecoverable() {
			d := min(max(mutableGraceMin, mutableGraceFactor*time.Since(start)), c.timeout)
			t := time.NewTimer(d)
			defer t.Stop()
			grace = t.C
		}
	}
	// Newest first; on equal seq the higher root, so every reader agrees.
	slices.SortFunc(st.versions, compareVersions)
	return st
}

func compareVersions(a, b *versionShares) int {
	if a.v.Seq != b.v.Seq {
		if a.v.Seq > b.v.Seq {
			return -1
		}
		return 1
	}
	return -bytes.Compare(a.v.Root[:], b.v.Root[:])
}

// newestRecoverable reports whether the version that sorts first has k
// verified shares.
func (st *slotState) newestRecoverable() bool {
	var top *versionShares
	for _, vs := range st.versions {
		if top == nil || compareVersions(vs, top) < 0 {
			top = vs
		}
	}
	if top == nil {
		return false
	}
	for _, sh := range top.shares {
		return len(top.shares) >= sh.K
	}
	return false
}

// retrieve returns the newest version it can rebuild, with the slot state
// it was chosen from.
// With early, it may stop waiting for slow servers (see mapSlot).
func (c *Client) retrieve(ctx context.Context, rc caps.MutableReadCap, early bool) ([]byte, Version, *slotState, error) {
	si := rc.StorageIndex()
	st := c.mapSlot(ctx, rc.VerifyCap(), early)
	if err := ctx.Err(); err != nil {
		return nil, Version{}, st, fmt.Errorf("retrieve %v: %w", si, err)
	}
	// A newer Sphere's version reached at least happy servers, so on k or
	// more servers it is what this client must not hide behind an older
	// version it can read. Fewer are treated as corrupt shares, so that
	// one hostile server cannot make a file unreadable this way.
	if st.newerSrv >= c.params.K {
		return nil, Version{}, st, fmt.Errorf("retrieve %v: %d servers hold shares %w (%w of a version it reads)",
			si, st.newerSrv, caps.ErrNewerFormat, ErrNotEnoughShares)
	}
	var lastErr error
	for _, vs := range st.versions {
		k := 0
		for _, sh := range vs.shares {
			k = sh.K
			break
		}
		if len(vs.shares) < k {
			continue
		}
		content, err := caps.DecodeMutable(rc, vs.list())
		if err != nil {
			// Signed by the writer yet undecodable: a buggy or hostile
			// writer. Try the next version rather than fail.
			c.log.Warn("Mutable version undecodable", "si", si, "seq", vs.v.Seq, "err", err)
			lastErr = err
			continue
		}
		if seen := c.seqs.Seen(si); vs.v.Seq < seen {
			return nil, Version{}, st, fmt.Errorf("retrieve %v: newest recoverable version is seq %d, but seq %d was seen before: %w",
				si, vs.v.Seq, seen, ErrRollback)
		}
		c.seqs.Observe(si, vs.v.Seq)
		return content, vs.v, st, nil
	}
	if len(st.versions) == 0 && st.corrupt == 0 {
		if st.servers == 0 {
			return nil, Version{}, st, fmt.Errorf("retrieve %v: no server answered: %w", si, ErrNotEnoughShares)
		}
		return nil, Version{}, st, fmt.Errorf("retrieve %v: no shares on %d servers: %w", si, st.servers, ErrNotFound)
	}
	best := 0
	for _, vs := range st.versions {
		best = max(best, len(vs.shares))
	}
	err := fmt.Errorf("retrieve %v: no version recoverable (%d versions, at most %d verified shares of one, %d shares rejected, %d of %d servers answered): %w",
		si, len(st.versions), best, st.corrupt, st.servers, len(c.servers), ErrNotEnoughShares)
	if lastErr != nil {
		err = fmt.Errorf("%w (last decode error: %v)", err, lastErr)
	}
	if st.newer > 0 {
		err = fmt.Errorf("%w; %d shares were %w", err, st.newer, caps.ErrNewerFormat)
	}
	return nil, Version{}, st, err
}

// publishAt encodes content as version seq and writes its n shares to the
// permuted ring of the slot, every server's shares in one atomic WriteSlot
// under that server's write enabler; shares whose server failed are tried
// once more on the next unused servers of the ring. It succeeds when shares reached at
// least Happy distinct servers and no server refused the write as stale;
// otherwise the error wraps ErrStale (someone published seq or higher
// first) or ErrNotHappy. The returned Version is set even on error.
func (c *Client) publishAt(ctx context.Context, wc caps.MutableWriteCap, content []byte, seq uint64) (Version, error) {
	if seq == 0 || seq == math.MaxUint64 {
		return Version{}, fmt.Errorf("publish %v: %w", wc.StorageIndex(), ErrSeqExhausted)
	}
	p := c.params
	shares, root, err := caps.EncodeMutable(wc, seq, content, p.K, p.N, rand.Reader)
	if err != nil {
		return Version{}, fmt.Errorf("encode: %w", err)
	}
	v := Version{Seq: seq, Root: root}
	si := wc.StorageIndex()
	ring := PermutedRing(si, c.servers)
	assigned := assignShares(ring, p.N)
	type target struct {
		srv    Server
		writes []SlotShare
	}
	var targets []*target
	byID := make(map[ServerID]*target)
	for shnum, srv := range assigned {
		t := byID[srv.ID()]
		if t == nil {
			t = &target{srv: srv}
			byID[srv.ID()] = t
			targets = append(targets, t)
		}
		t.writes = append(t.writes, SlotShare{Shnum: shnum, Seq: seq, Data: shares[shnum]})
	}
	write := func(ts []*target) []error {
		errs := make([]error, len(ts))
		var wg sync.WaitGroup
		for i, t := range ts {
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				defer cancel()
				id := t.srv.ID()
				we := WriteEnabler(caps.WriteEnabler(wc, []byte(id)))
				errs[i] = t.srv.WriteSlot(rctx, si, we, t.writes, c.lease(si, id))
			})
		}
		wg.Wait()
		return errs
	}
	ok := 0
	var stale, other error
	tally := func(ts []*target, errs []error) (failed []*target) {
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrStale):
				if stale == nil {
					stale = fmt.Errorf("server %v: %w", ts[i].srv.ID(), err)
				}
			default:
				c.log.Debug("Mutable share write failed", "si", si, "server", ts[i].srv.ID().String(), "err", err)
				if other == nil {
					other = fmt.Errorf("server %v: %w", ts[i].srv.ID(), err)
				}
				failed = append(failed, ts[i])
			}
		}
		return failed
	}
	failed := tally(targets, write(targets))
	// One more round: the shares of servers that failed go to servers
	// further along the ring that hold none of this version yet.
	if stale == nil && len(failed) > 0 {
		var retry []*target
		for _, srv := range ring {
			if len(retry) == len(failed) {
				break
			}
			if byID[srv.ID()] == nil {
				t := &target{srv: srv, writes: failed[len(retry)].writes}
				byID[srv.ID()] = t
				retry = append(retry, t)
			}
		}
		tally(retry, write(retry))
	}
	if stale != nil {
		return v, fmt.Errorf("publish %v seq %d: a concurrent writer published first: %w", si, seq, stale)
	}
	if want := p.Happy; ok < want {
		err := notHappy(ok, want)
		if other != nil {
			err = fmt.Errorf("%w (first failure: %v)", err, other)
		}
		return v, fmt.Errorf("publish %v seq %d: %w", si, seq, err)
	}
	c.seqs.Observe(si, seq)
	c.latest.put(si, v, content)
	return v, nil
}

// CreateDir creates a directory holding t (nil: empty) as version 1 and
// returns its write cap. Child write caps in t are sealed under the new
// directory's write key.
func (c *Client) CreateDir(ctx context.Context, t *caps.Table) (caps.MutableWriteCap, error) {
	wc, err := caps.NewMutableWriteCap(rand.Reader, true)
	if err != nil {
		return caps.MutableWriteCap{}, fmt.Errorf("create dir: %w", err)
	}
	if t == nil {
		t = caps.NewTable()
	}
	content, err := t.Encode(&wc)
	if err != nil {
		return caps.MutableWriteCap{}, fmt.Errorf("create dir: %w", err)
	}
	if _, err := c.publishAt(ctx, wc, content, 1); err != nil {
		return caps.MutableWriteCap{}, fmt.Errorf("create dir: %w", err)
	}
	return wc, nil
}

// ReadDir retrieves and decodes the directory cp names. With a dir-rw cap
// the entries carry their children's write caps; with a dir-ro cap they
// carry none (transitive read-only).
func (c *Client) ReadDir(ctx context.Context, cp caps.Cap) (*caps.Table, Version, error) {
	rc, ok := caps.MutableReadCapOf(cp)
	if !ok || !rc.Dir {
		return nil, Version{}, fmt.Errorf("read dir: want a dir-rw or dir-ro cap, have %s: %w", kindOf(cp), errNotMutable)
	}
	var wc *caps.MutableWriteCap
	switch w := cp.(type) {
	case caps.MutableWriteCap:
		wc = &w
	case *caps.MutableWriteCap:
		wc = w
	}
	content, v, _, err := c.retrieve(ctx, rc, true)
	if err != nil {
		return nil, Version{}, fmt.Errorf("read dir: %w", err)
	}
	if wc != nil {
		c.latest.put(rc.StorageIndex(), v, content) // a write usually follows
	}
	t, err := caps.DecodeTable(content, wc)
	if err != nil {
		return nil, Version{}, fmt.Errorf("read dir %v seq %d: %w", rc.StorageIndex(), v.Seq, err)
	}
	return t, v, nil
}

// ModifyDir applies entry-level changes to the directory wc names with
// Modify and caps.Table.Apply: changes to other names made concurrently by
// other writers are kept, and a change whose Prev no longer matches returns
// a *caps.ConflictError (errors.Is(err, ErrConflict)) with nothing written.
func (c *Client) ModifyDir(ctx context.Context, wc caps.MutableWriteCap, changes []caps.Change) (Version, error) {
	if !wc.Dir {
		return Version{}, fmt.Errorf("modify dir: want a dir-rw cap, have %s: %w", wc.Kind(), errNotMutable)
	}
	return c.Modify(ctx, wc, func(old []byte, v Version) ([]byte, error) {
		t, err := caps.DecodeTable(old, &wc)
		if err != nil {
			return nil, fmt.Errorf("modify dir seq %d: %w", v.Seq, err)
		}
		if err := t.Apply(changes); err != nil {
			return nil, err
		}
		return t.Encode(&wc)
	})
}

// Bounds of latestCache: big directories are what it is for (a 10,000
// entry table is about 1.5 MB), and it must not grow with the number of
// files a client ever touched.
const (
	latestCacheBytes = 64 << 20
	latestCacheMax   = 16 << 20 // larger contents are not kept
)

// latestCache remembers, per storage index, the content and version this
// client last published or read for a Modify, so that the next Modify can
// skip retrieving it again (the retrieve of a 1.5 MB directory reads,
// verifies and decodes every share from every server). It is only a
// guess: the servers' compare-and-swap decides, and an entry is used only
// while its seq is the highest this client has seen. The zero value is
// ready to use and safe for concurrent use.
type latestCache struct {
	mu    sync.Mutex
	m     map[caps.StorageIndex]latestEntry
	bytes int
}

type latestEntry struct {
	v       Version
	content []byte
}

// get returns the cached content of si, which the caller must not change,
// if its version is seen, the highest seq this client knows of. Entries
// are replaced, never changed in place, so the slice stays valid.
func (lc *latestCache) get(si caps.StorageIndex, seen uint64) ([]byte, Version, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	e, ok := lc.m[si]
	if !ok || e.v.Seq != seen {
		return nil, Version{}, false
	}
	return e.content, e.v, true
}

// put records a copy of content as version v of si, unless a newer
// version is already recorded.
func (lc *latestCache) put(si caps.StorageIndex, v Version, content []byte) {
	if len(content) > latestCacheMax {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.m == nil {
		lc.m = make(map[caps.StorageIndex]latestEntry)
	}
	if e, ok := lc.m[si]; ok {
		if e.v.Seq > v.Seq || e.v == v {
			return
		}
		lc.bytes -= len(e.content)
		delete(lc.m, si)
	}
	// Evict arbitrary entries until the new one fits.
	for k, e := range lc.m {
		if lc.bytes+len(content) <= latestCacheBytes {
			break
		}
		lc.bytes -= len(e.content)
		delete(lc.m, k)
	}
	lc.m[si] = latestEntry{v: v, content: bytes.Clone(content)}
	lc.bytes += len(content)
}
