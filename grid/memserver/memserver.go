// Package memserver is an in-memory grid.Server for tests and for the local
// demo grid: every contract of grid.Server, no durability.
package memserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// Compile-time checks of the abilities Server offers.
var (
	_ grid.Server         = (*Server)(nil)
	_ grid.Statter        = (*Server)(nil)
	_ grid.LeaseCanceller = (*Server)(nil)
	_ grid.Failer         = (*Server)(nil)
)

// MaxShnum is the highest share number accepted (shares are numbered 0..255,
// the most reedsolomon can code).
const MaxShnum = 255

// Option configures a Server.
type Option func(*Server)

// WithQuota limits the bytes the server holds, share data plus metadata
// charges (grid.ShareCharge, grid.SlotCharge, grid.LeaseCharge); 0 means no
// limit.
func WithQuota(bytes int64) Option { return func(s *Server) { s.quota = bytes } }

// WithClock replaces time.Now, so tests can expire leases without waiting.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithGrace sets how long after its last lease expires Sweep keeps an entry
// (default grid.DefaultLeaseGrace; zero or negative: not at all).
func WithGrace(d time.Duration) Option { return func(s *Server) { s.grace = max(d, 0) } }

// WithLeaseTerm sets how long an added or renewed lease lasts (default
// grid.DefaultLeaseTerm).
func WithLeaseTerm(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.term = d
		}
	}
}

// Server holds shares in maps under one mutex. It is safe for concurrent use.
type Server struct {
	id    grid.ServerID
	quota int64
	now   func() time.Time
	term  time.Duration
	grace time.Duration

	failed atomic.Pointer[grid.FailedError]

	mu       sync.Mutex
	entries  map[caps.StorageIndex]*entry
	used     int64 // bytes of share data held plus metadata charges
	reserved int64 // bytes promised to WriteShare calls still reading
}

// entry is everything held for one storage index. Leases are per storage
// index: they cover every share held for it, immutable or mutable.
type entry struct {
	shares map[int][]byte // immutable shares
	slot   *slot
	leases map[[32]byte]grid.Lease // by RenewSecret
}

type slot struct {
	we     grid.WriteEnabler
	shares map[int]grid.SlotShare
}

// New returns an empty server with identity id.
func New(id grid.ServerID, opts ...Option) *Server {
	s := &Server{id: id, now: time.Now, term: grid.DefaultLeaseTerm, grace: grid.DefaultLeaseGrace,
		entries: make(map[caps.StorageIndex]*entry)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ID returns the server's identity.
func (s *Server) ID() grid.ServerID { return s.id }

// fits reports whether n more bytes fit the quota. Callers hold s.mu.
func (s *Server) fits(n int64) bool {
	return s.quota == 0 || s.used+s.reserved+n <= s.quota
}

// WriteShare implements grid.Server.
func (s *Server) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	if err := checkShnum(shnum); err != nil {
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	if size < 0 {
		return fmt.Errorf("write share %d of %v: negative size %d", shnum, si, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	s.mu.Lock()
	if e := s.entries[si]; e != nil {
		if old, ok := e.shares[shnum]; ok {
			if int64(len(old)) != size {
				s.mu.Unlock()
				return fmt.Errorf("write share %d of %v: held with size %d, not %d", shnum, si, len(old), size)
			}
			if err := s.addLease(e, lease, false); err != nil {
				s.mu.Unlock()
				return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
			}
			s.mu.Unlock()
			// Drain so a streaming caller is not left blocked; bounded by size.
			if _, err := io.Copy(io.Discard, io.LimitReader(r, size+1)); err != nil {
				return fmt.Errorf("write share %d of %v: drain: %w", shnum, si, err)
			}
			return nil
		}
	}
	if e := s.entries[si]; e != nil {
		if err := s.leaseRoom(e, lease); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
		}
	}
	charge := size + grid.ShareCharge + grid.LeaseCharge
	if !s.fits(charge) {
		s.mu.Unlock()
		return fmt.Errorf("write share %d of %v (%d bytes): %w", shnum, si, size, grid.ErrNoSpace)
	}
	s.reserved += charge
	s.mu.Unlock()

	data, err := readExactly(ctx, r, size)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved -= charge
	if err != nil {
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	e := s.entry(si)
	if old, ok := e.shares[shnum]; ok { // a concurrent writer won
		if int64(len(old)) != size {
			return fmt.Errorf("write share %d of %v: held with size %d, not %d", shnum, si, len(old), size)
		}
	}
	if err := s.addLease(e, lease, true); err != nil {
		if len(e.shares) == 0 && e.slot == nil {
			delete(s.entries, si)
		}
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	if _, ok := e.shares[shnum]; !ok {
		e.shares[shnum] = data
		s.used += size + grid.ShareCharge
	}
	return nil
}

// ReadShare implements grid.Server.
func (s *Server) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	if f := s.failed.Load(); f != nil {
		return nil, f
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("read share %d of %v: negative offset %d or length %d", shnum, si, off, length)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read share %d of %v: %w", shnum, si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[si]
	if e == nil {
		return nil, fmt.Errorf("read share %d of %v: %w", shnum, si, grid.ErrNotFound)
	}
	data, ok := e.shares[shnum]
	if !ok {
		return nil, fmt.Errorf("read share %d of %v: %w", shnum, si, grid.ErrNotFound)
	}
	if off >= int64(len(data)) {
		return nil, fmt.Errorf("read share %d of %v at %d, size %d: %w", shnum, si, off, len(data), io.ErrUnexpectedEOF)
	}
	end := int64(len(data))
	if length < end-off {
		end = off + length
	}
	return bytes.Clone(data[off:end]), nil
}

// ListShares implements grid.Server.
func (s *Server) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	if f := s.failed.Load(); f != nil {
		return nil, f
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list shares of %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []grid.ShareInfo{}
	if e := s.entries[si]; e != nil {
		for n, d := range e.shares {
			out = append(out, grid.ShareInfo{Shnum: n, Size: int64(len(d))})
		}
	}
	slices.SortFunc(out, func(a, b grid.ShareInfo) int { return a.Shnum - b.Shnum })
	return out, nil
}

// AddLease implements grid.Server.
func (s *Server) AddLease(ctx context.Context, si caps.StorageIndex, lease grid.Lease) error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[si]
	if e == nil {
		return fmt.Errorf("add lease on %v: %w", si, grid.ErrNotFound)
	}
	if err := s.addLease(e, lease, false); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	return nil
}

// ReadSlot implements grid.Server.
func (s *Server) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	if f := s.failed.Load(); f != nil {
		return nil, f
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read slot %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []grid.SlotShare{}
	if e := s.entries[si]; e != nil && e.slot != nil {
		for _, sh := range e.slot.shares {
			sh.Data = bytes.Clone(sh.Data)
			out = append(out, sh)
		}
	}
	slices.SortFunc(out, func(a, b grid.SlotShare) int { return a.Shnum - b.Shnum })
	return out, nil
}

// WriteSlot implements grid.Server.
func (s *Server) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	if err := checkSlotWrites(writes); err != nil {
		return fmt.Errorf("write slot %v: %w", si, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write slot %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[si]
	var sl *slot
	if e != nil {
		sl = e.slot
	}
	var grow int64
	if sl != nil {
		if subtle.ConstantTimeCompare(sl.we[:], we[:]) != 1 {
			return fmt.Errorf("write slot %v: %w", si, grid.ErrBadWriteEnabler)
		}
	} else {
		grow += grid.SlotCharge
	}
	var leaseGrow int64 = grid.LeaseCharge // a new lease; addLease counts it
	if e != nil {
		if err := s.leaseRoom(e, lease); err != nil {
			return fmt.Errorf("write slot %v: %w", si, err)
		}
		if _, ok := e.leases[lease.RenewSecret]; ok {
			leaseGrow = 0
		}
	}
	for _, w := range writes {
		var oldLen int64
		if sl != nil {
			if old, ok := sl.shares[w.Shnum]; ok {
				if old.Seq >= w.Seq {
					return fmt.Errorf("write slot %v: %w", si, &grid.StaleError{Shnum: w.Shnum, Have: old.Seq, Want: w.Seq})
				}
				oldLen = int64(len(old.Data))
			}
		}
		if sl == nil || !hasShare(sl, w.Shnum) {
			grow += grid.ShareCharge
		}
		grow += int64(len(w.Data)) - oldLen
	}
	if grow+leaseGrow > 0 && !s.fits(grow+leaseGrow) {
		return fmt.Errorf("write slot %v (%d more bytes): %w", si, grow, grid.ErrNoSpace)
	}
	if e == nil {
		e = s.entry(si)
	}
	if e.slot == nil {
		e.slot = &slot{we: we, shares: make(map[int]grid.SlotShare)}
	}
	for _, w := range writes {
		w.Data = bytes.Clone(w.Data)
		e.slot.shares[w.Shnum] = w
	}
	s.used += grow
	if err := s.addLease(e, lease, true); err != nil { // checked above: cannot fail
		return fmt.Errorf("write slot %v: %w", si, err)
	}
	return nil
}

func hasShare(sl *slot, shnum int) bool {
	_, ok := sl.shares[shnum]
	return ok
}

// Stat implements grid.Statter.
func (s *Server) Stat(ctx context.Context) (grid.Stat, error) {
	if f := s.failed.Load(); f != nil {
		return grid.Stat{}, f
	}
	if err := ctx.Err(); err != nil {
		return grid.Stat{}, fmt.Errorf("stat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := grid.Stat{Quota: s.quota, Used: s.used}
	soon := s.now().Add(grid.ExpiringWindow)
	for _, e := range s.entries {
		n := len(e.shares)
		if e.slot != nil {
			n += len(e.slot.shares)
		}
		st.Shares += n
		if lastExpiry(e).Before(soon) {
			st.ExpiringSoon += n
		}
	}
	return st, nil
}

// CancelLease implements grid.LeaseCanceller. It returns ErrNotFound if
// nothing is held for si and ErrUnauthorized if no lease has cancelSecret.
func (s *Server) CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cancel lease on %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[si]
	if e == nil {
		return fmt.Errorf("cancel lease on %v: %w", si, grid.ErrNotFound)
	}
	found := false
	for k, l := range e.leases {
		if subtle.ConstantTimeCompare(l.CancelSecret[:], cancelSecret[:]) == 1 {
			delete(e.leases, k)
			s.used -= grid.LeaseCharge
			found = true
		}
	}
	if !found {
		return fmt.Errorf("cancel lease on %v: %w", si, grid.ErrUnauthorized)
	}
	if len(e.leases) == 0 {
		s.drop(si, e)
	}
	return nil
}

// Sweep deletes everything held for a storage index whose leases all
// expired more than the grace period ago, and returns how many shares
// (immutable and slot shares) it deleted.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	if f := s.failed.Load(); f != nil {
		return 0, f
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	cutoff := s.now().Add(-s.grace)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for si, e := range s.entries {
		if !lastExpiry(e).Before(cutoff) {
			continue
		}
		{
			n += len(e.shares)
			if e.slot != nil {
				n += len(e.slot.shares)
			}
			s.drop(si, e)
		}
	}
	return n, nil
}

// drop deletes everything held for si. Callers hold s.mu.
func (s *Server) drop(si caps.StorageIndex, e *entry) {
	for _, d := range e.shares {
		s.used -= int64(len(d)) + grid.ShareCharge
	}
	if e.slot != nil {
		s.used -= grid.SlotCharge
		for _, sh := range e.slot.shares {
			s.used -= int64(len(sh.Data)) + grid.ShareCharge
		}
	}
	s.used -= int64(len(e.leases)) * grid.LeaseCharge
	delete(s.entries, si)
}

// lastExpiry is when the last of e's leases ends.
func lastExpiry(e *entry) time.Time {
	var t time.Time
	for _, l := range e.leases {
		if l.Expires.After(t) {
			t = l.Expires
		}
	}
	return t
}

// entry returns the entry for si, creating it. Callers hold s.mu.
func (s *Server) entry(si caps.StorageIndex) *entry {
	e := s.entries[si]
	if e == nil {
		e = &entry{shares: make(map[int][]byte), leases: make(map[[32]byte]grid.Lease)}
		s.entries[si] = e
	}
	return e
}

// leaseRoom checks that l can be added to e: it is held already, or e has
// fewer than grid.MaxLeases (after dropping an expired one if at the
// limit). Callers hold s.mu.
func (s *Server) leaseRoom(e *entry, l grid.Lease) error {
	if _, ok := e.leases[l.RenewSecret]; ok || len(e.leases) < grid.MaxLeases {
		return nil
	}
	now := s.now()
	for k, old := range e.leases {
		if old.Expires.Before(now) {
			delete(e.leases, k)
			s.used -= grid.LeaseCharge
			return nil
		}
	}
	return grid.ErrLeaseLimit
}

// addLease adds l or renews the lease with the same renew secret (the
// first cancel secret stays); the lease then ends the server's term from
// now, whatever l.Expires says. A new lease must fit grid.MaxLeases and,
// unless reserved says its charge is already counted, the quota. Callers
// hold s.mu.
func (s *Server) addLease(e *entry, l grid.Lease, reserved bool) error {
	exp := s.now().Add(s.term)
	if old, ok := e.leases[l.RenewSecret]; ok {
		if exp.After(old.Expires) {
			old.Expires = exp
			e.leases[l.RenewSecret] = old
		}
		return nil
	}
	if err := s.leaseRoom(e, l); err != nil {
		return err
	}
	if !reserved && !s.fits(grid.LeaseCharge) {
		return fmt.Errorf("lease: %w", grid.ErrNoSpace)
	}
	l.Expires = exp
	e.leases[l.RenewSecret] = l
	s.used += grid.LeaseCharge
	return nil
}

func checkShnum(shnum int) error {
	if shnum < 0 || shnum > MaxShnum {
		return fmt.Errorf("share number %d out of range 0..%d", shnum, MaxShnum)
	}
	return nil
}

// checkSlotWrites validates the shape of a WriteSlot request: at least one
// share, share numbers in range and distinct.
func checkSlotWrites(writes []grid.SlotShare) error {
	if len(writes) == 0 {
		return errors.New("no shares to write")
	}
	seen := make(map[int]bool, len(writes))
	for _, w := range writes {
		if err := checkShnum(w.Shnum); err != nil {
			return err
		}
		if seen[w.Shnum] {
			return fmt.Errorf("share %d written twice", w.Shnum)
		}
		seen[w.Shnum] = true
	}
	return nil
}

// readExactly reads exactly size bytes from r, failing if r ends early, has
// more, or ctx ends first.
func readExactly(ctx context.Context, r io.Reader, size int64) ([]byte, error) {
	// Allocate up front (plus MinRead, so that Buffer.ReadFrom's probe for
	// extra bytes does not double it), but never trust a huge size for one
	// allocation: past 64 MiB, grow with the data.
	buf := bytes.NewBuffer(make([]byte, 0, min(size, 64<<20)+bytes.MinRead))
	n, err := io.Copy(buf, io.LimitReader(&ctxReader{ctx: ctx, r: r}, size+1))
	if err != nil {
		return nil, fmt.Errorf("read data: %w", err)
	}
	if n < size {
		return nil, fmt.Errorf("data ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if n > size {
		return nil, fmt.Errorf("data longer than declared size %d", size)
	}
	return buf.Bytes(), nil
}

// ctxReader fails reads once ctx has ended, so a cancelled upload stops at
// the next chunk instead of reading to the end.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Fail takes the server out of service, as a disk store that found itself
// damaged does: every later call returns a *grid.FailedError with cause.
// It returns that error.
func (s *Server) Fail(cause error) error {
	s.failed.CompareAndSwap(nil, &grid.FailedError{Store: "memory:" + string(s.id), Cause: cause})
	return s.failed.Load()
}

// Failure implements grid.Failer.
func (s *Server) Failure() error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	return nil
}
