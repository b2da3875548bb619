// Package faultserver wraps a grid.Server and injects the failures real
// peers show: vanishing, hanging, latency, flipped bits, a full disk and
// stale mutable versions. Faults switch at runtime so a test can break a
// server in the middle of an upload or download.
package faultserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

var (
	_ grid.Server         = (*Server)(nil)
	_ grid.Statter        = (*Server)(nil)
	_ grid.LeaseCanceller = (*Server)(nil)
	_ grid.Failer         = (*Server)(nil)
)

// ErrVanished is what every call returns while the server has vanished. It
// is transient: grid.IsPermanent reports false, as for a dropped connection.
var ErrVanished = errors.New("faultserver: server unreachable")

// FlipMode says which read results get a bit flipped.
type FlipMode int

const (
	// FlipNone leaves reads alone.
	FlipNone FlipMode = iota
	// FlipEvery flips the low bit of the middle byte of every non-empty
	// ReadShare result and of every slot share's Data in ReadSlot.
	FlipEvery
	// FlipAtOffset flips the low bit of the byte at share offset
	// Faults.FlipOffset, in every ReadShare result that covers it and in
	// every slot share long enough: one bad spot on a disk.
	FlipAtOffset
)

// Faults is the set of faults a Server injects. The zero value injects none.
type Faults struct {
	Vanish     bool          // every call returns ErrVanished
	Hang       bool          // every call blocks until its ctx ends (or Hang is switched off)
	Latency    time.Duration // added before every call (cut short by ctx)
	Flip       FlipMode      // corrupt read results
	FlipOffset int64         // the share offset for FlipAtOffset
	Full       bool          // WriteShare and WriteSlot return grid.ErrNoSpace without reading the data
	Stale      bool          // ReadSlot returns the oldest version of the slot seen through this wrapper
}

// maxHistory bounds the slot versions remembered per storage index.
const maxHistory = 8

// Server is a grid.Server that passes calls to the server it wraps unless a
// fault says otherwise. It is safe for concurrent use.
type Server struct {
	inner grid.Server

	mu      sync.Mutex
	faults  Faults
	changed chan struct{} // closed and replaced on every Set
	history map[caps.StorageIndex][][]grid.SlotShare

	calls sync.Map // method name -> *atomic.Int64
}

// New wraps inner, injecting no faults until Set is called.
func New(inner grid.Server) *Server {
	return &Server{inner: inner, changed: make(chan struct{}), history: make(map[caps.StorageIndex][][]grid.SlotShare)}
}

// Inner returns the wrapped server.
func (s *Server) Inner() grid.Server { return s.inner }

// Set replaces the faults in effect. Calls hanging because of Hang resume
// once Hang is off.
func (s *Server) Set(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	close(s.changed)
	s.changed = make(chan struct{})
}

// Update changes the faults in effect with fn, atomically.
func (s *Server) Update(fn func(*Faults)) {
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()
	fn(&f)
	s.Set(f)
}

// Faults returns the faults in effect.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Reset switches every fault off.
func (s *Server) Reset() { s.Set(Faults{}) }

// Calls returns how many times method (e.g. "ReadShare") was called,
// including calls that failed by injected faults.
func (s *Server) Calls(method string) int64 {
	if v, ok := s.calls.Load(method); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// enter counts the call and applies Hang, Vanish and Latency. It returns the
// faults in effect for the rest of the call.
func (s *Server) enter(ctx context.Context, method string) (Faults, error) {
	v, _ := s.calls.LoadOrStore(method, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	// Bounded: each pass waits for ctx or a Set.
	for {
		s.mu.Lock()
		f, changed := s.faults, s.changed
		s.mu.Unlock()
		if !f.Hang {
			break
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("%s on %v: hung: %w", method, s.inner.ID(), ctx.Err())
		case <-changed:
		}
	}
	f := s.Faults()
	if f.Vanish {
		return f, fmt.Errorf("%s on %v: %w", method, s.inner.ID(), ErrVanished)
	}
	if f.Latency > 0 {
		tm := time.NewTimer(f.Latency)
		defer tm.Stop()
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("%s on %v: %w", method, s.inner.ID(), ctx.Err())
		case <-tm.C:
		}
	}
	return f, nil
}

// ID returns the wrapped server's id; it is never faulty (it does no I/O).
func (s *Server) ID() grid.ServerID { return s.inner.ID() }

// WriteShare implements grid.Server.
func (s *Server) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	f, err := s.enter(ctx, "WriteShare")
	if err != nil {
		return err
	}
	if f.Full {
		return fmt.Errorf("write share %d of %v on %v: %w", shnum, si, s.inner.ID(), grid.ErrNoSpace)
	}
	return s.inner.WriteShare(ctx, si, shnum, size, r, lease)
}

// ReadShare implements grid.Server.
func (s *Server) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	f, err := s.enter(ctx, "ReadShare")
	if err != nil {
		return nil, err
	}
	b, err := s.inner.ReadShare(ctx, si, shnum, off, length)
	if err != nil {
		return b, err
	}
	flip(f, b, off)
	return b, nil
}

// flip corrupts b, which holds the share bytes from offset off, as f says.
func flip(f Faults, b []byte, off int64) {
	switch f.Flip {
	case FlipEvery:
		if len(b) > 0 {
			b[len(b)/2] ^= 1
		}
	case FlipAtOffset:
		if i := f.FlipOffset - off; f.FlipOffset >= off && i < int64(len(b)) {
			b[i] ^= 1
		}
	}
}

// ListShares implements grid.Server.
func (s *Server) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	if _, err := s.enter(ctx, "ListShares"); err != nil {
		return nil, err
	}
	return s.inner.ListShares(ctx, si)
}

// AddLease implements grid.Server.
func (s *Server) AddLease(ctx context.Context, si caps.StorageIndex, lease grid.Lease) error {
	if _, err := s.enter(ctx, "AddLease"); err != nil {
		return err
	}
	return s.inner.AddLease(ctx, si, lease)
}

// ReadSlot implements grid.Server. With Stale it returns the oldest
// non-empty version of the slot this wrapper has seen (by reading or before
// a write), if any.
func (s *Server) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	f, err := s.enter(ctx, "ReadSlot")
	if err != nil {
		return nil, err
	}
	got, err := s.inner.ReadSlot(ctx, si)
	if err != nil {
		return got, err
	}
	s.remember(si, got)
	if f.Stale {
		s.mu.Lock()
		if h := s.history[si]; len(h) > 0 {
			got = cloneSlot(h[0])
		}
		s.mu.Unlock()
	}
	for i := range got {
		flip(f, got[i].Data, 0)
	}
	return got, nil
}

// remember records a version of slot si unless it is empty or the same as
// the newest one remembered.
func (s *Server) remember(si caps.StorageIndex, v []grid.SlotShare) {
	if len(v) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[si]
	if len(h) > 0 && sameSlot(h[len(h)-1], v) {
		return
	}
	h = append(h, cloneSlot(v))
	if len(h) > maxHistory {
		h = h[1:]
	}
	s.history[si] = h
}

// WriteSlot implements grid.Server. It remembers the version being replaced
// so that Stale can serve it later.
func (s *Server) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) error {
	f, err := s.enter(ctx, "WriteSlot")
	if err != nil {
		return err
	}
	if f.Full {
		return fmt.Errorf("write slot %v on %v: %w", si, s.inner.ID(), grid.ErrNoSpace)
	}
	if old, err := s.inner.ReadSlot(ctx, si); err == nil {
		s.remember(si, old)
	}
	return s.inner.WriteSlot(ctx, si, we, writes, lease)
}

// Stat implements grid.Statter if the wrapped server does (else it answers
// errors.ErrUnsupported; AsServer hides it instead). With Full, Used
// is reported as the quota (or 1 if there is none), so the server looks full.
func (s *Server) Stat(ctx context.Context) (grid.Stat, error) {
	f, err := s.enter(ctx, "Stat")
	if err != nil {
		return grid.Stat{}, err
	}
	st, ok := s.inner.(grid.Statter)
	if !ok {
		return grid.Stat{}, fmt.Errorf("stat on %v: %w", s.inner.ID(), errors.ErrUnsupported)
	}
	out, err := st.Stat(ctx)
	if err == nil && f.Full {
		if out.Quota == 0 {
			out.Quota = max(out.Used, 1)
		}
		out.Used = out.Quota
	}
	return out, err
}

// CancelLease implements grid.LeaseCanceller if the wrapped server does.
func (s *Server) CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) error {
	if _, err := s.enter(ctx, "CancelLease"); err != nil {
		return err
	}
	lc, ok := s.inner.(grid.LeaseCanceller)
	if !ok {
		return fmt.Errorf("cancel lease on %v: %w", s.inner.ID(), errors.ErrUnsupported)
	}
	return lc.CancelLease(ctx, si, cancelSecret)
}

func cloneSlot(v []grid.SlotShare) []grid.SlotShare {
	out := make([]grid.SlotShare, len(v))
	for i, sh := range v {
		sh.Data = bytes.Clone(sh.Data)
		out[i] = sh
	}
	return out
}

func sameSlot(a, b []grid.SlotShare) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Shnum != b[i].Shnum || a[i].Seq != b[i].Seq || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// Failure implements grid.Failer: the wrapped server's failure, if it can
// fail, else nil.
func (s *Server) Failure() error {
	if f, ok := s.inner.(grid.Failer); ok {
		return f.Failure()
	}
	return nil
}

// AsServer returns s as a grid.Server that has exactly the optional
// abilities (grid.Statter, grid.LeaseCanceller) of the server it wraps: a
// caller that looks for them by type assertion finds what the wrapped
// server really offers. *Server itself always has both, and answers
// errors.ErrUnsupported where the wrapped server lacks one.
func (s *Server) AsServer() grid.Server {
	_, st := s.inner.(grid.Statter)
	_, lc := s.inner.(grid.LeaseCanceller)
	switch {
	case st && lc:
		return s
	case st:
		return statOnly{core{s}}
	case lc:
		return cancelOnly{core{s}}
	default:
		return core{s}
	}
}

// core is a *Server seen through grid.Server (and grid.Failer) only.
type core struct{ s *Server }

func (c core) ID() grid.ServerID { return c.s.ID() }
func (c core) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, l grid.Lease) error {
	return c.s.WriteShare(ctx, si, shnum, size, r, l)
}
func (c core) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, n int64) ([]byte, error) {
	return c.s.ReadShare(ctx, si, shnum, off, n)
}
func (c core) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	return c.s.ListShares(ctx, si)
}
func (c core) AddLease(ctx context.Context, si caps.StorageIndex, l grid.Lease) error {
	return c.s.AddLease(ctx, si, l)
}
func (c core) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	return c.s.ReadSlot(ctx, si)
}
func (c core) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, w []grid.SlotShare, l grid.Lease) error {
	return c.s.WriteSlot(ctx, si, we, w, l)
}
func (c core) Failure() error { return c.s.Failure() }

type statOnly struct{ core }

func (v statOnly) Stat(ctx context.Context) (grid.Stat, error) { return v.s.Stat(ctx) }

type cancelOnly struct{ core }

func (v cancelOnly) CancelLease(ctx context.Context, si caps.StorageIndex, cancel [32]byte) error {
	return v.s.CancelLease(ctx, si, cancel)
}
