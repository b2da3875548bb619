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
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// Compile-time checks of the abilities Server offers.
var (
	_ grid.Server         = (*Server)(nil)
	_ grid.Statter        = (*Server)(nil)
	_ grid.LeaseCanceller = (*Server)(nil)
)

// MaxShnum is the highest share number accepted (shares are numbered 0..255,
// the most reedsolomon can code).
const MaxShnum = 255

// Option configures a Server.
type Option func(*Server)

// WithQuota limits the bytes of share data the server holds; 0 means no limit.
func WithQuota(bytes int64) Option { return func(s *Server) { s.quota = bytes } }

// WithClock replaces time.Now, so tests can expire leases without waiting.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithGrace sets how long after its last lease expires Sweep keeps an entry.
func WithGrace(d time.Duration) Option { return func(s *Server) { s.grace = d } }

// Server holds shares in maps under one mutex. It is safe for concurrent use.
type Server struct {
	id    grid.ServerID
	quota int64
	now   func() time.Time
	grace time.Duration

	mu       sync.Mutex
	entries  map[caps.StorageIndex]*entry
	used     int64 // bytes of share data held
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
	s := &Server{id: id, now: time.Now, entries: make(map[caps.StorageIndex]*entry)}
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
			addLease(e, lease)
			s.mu.Unlock()
			// Drain so a streaming caller is not left blocked; bounded by size.
			if _, err := io.Copy(io.Discard, io.LimitReader(r, size+1)); err != nil {
				return fmt.Errorf("write share %d of %v: drain: %w", shnum, si, err)
			}
			return nil
		}
	}
	if !s.fits(size) {
		s.mu.Unlock()
		return fmt.Errorf("write share %d of %v (%d bytes): %w", shnum, si, size, grid.ErrNoSpace)
	}
	s.reserved += size
	s.mu.Unlock()

	data, err := readExactly(ctx, r, size)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved -= size
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
	} else {
		e.shares[shnum] = data
		s.used += size
	}
	addLease(e, lease)
	return nil
}

// ReadShare implements grid.Server.
func (s *Server) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
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
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[si]
	if e == nil {
		return fmt.Errorf("add lease on %v: %w", si, grid.ErrNotFound)
	}
	addLease(e, lease)
	return nil
}

// ReadSlot implements grid.Server.
func (s *Server) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
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
		grow += int64(len(w.Data)) - oldLen
	}
	if grow > 0 && !s.fits(grow) {
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
	addLease(e, lease)
	return nil
}

// Stat implements grid.Statter.
func (s *Server) Stat(ctx context.Context) (grid.Stat, error) {
	if err := ctx.Err(); err != nil {
		return grid.Stat{}, fmt.Errorf("stat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := grid.Stat{Quota: s.quota, Used: s.used}
	for _, e := range s.entries {
		st.Shares += len(e.shares)
		if e.slot != nil {
			st.Shares += len(e.slot.shares)
		}
	}
	return st, nil
}

// CancelLease implements grid.LeaseCanceller. It returns ErrNotFound if
// nothing is held for si and ErrUnauthorized if no lease has cancelSecret.
func (s *Server) CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) error {
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
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	cutoff := s.now().Add(-s.grace)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for si, e := range s.entries {
		live := false
		for _, l := range e.leases {
			if !l.Expires.Before(cutoff) {
				live = true
				break
			}
		}
		if !live {
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
		s.used -= int64(len(d))
	}
	if e.slot != nil {
		for _, sh := range e.slot.shares {
			s.used -= int64(len(sh.Data))
		}
	}
	delete(s.entries, si)
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

// addLease adds l or extends the lease with the same renew secret to the
// later expiry; the first cancel secret stays.
func addLease(e *entry, l grid.Lease) {
	if old, ok := e.leases[l.RenewSecret]; ok {
		if l.Expires.After(old.Expires) {
			old.Expires = l.Expires
			e.leases[l.RenewSecret] = old
		}
		return
	}
	e.leases[l.RenewSecret] = l
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
