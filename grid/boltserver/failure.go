package boltserver

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/sphere-grid/sphere/grid"
)

// Containment. bbolt trusts its file: a damaged page makes it panic (or
// fault on a wild pointer into the mmap), and under `sphere up` every store
// of the local grid lives in one process. So every entry point of a Server
// runs under contain: a panic, and a memory fault (turned into a panic by
// debug.SetPanicOnFault), is recovered there, the store marks itself
// failed and from then on answers every call with the same
// *grid.FailedError, while the other stores serve on.

// panicError carries a panic recovered inside bbolt work done for another
// caller (a group commit's leader runs its followers' functions).
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// enter returns the failure if the store has failed, and switches on
// panic-on-fault for this goroutine; the caller defers s.contain with the
// returned setting.
func (s *Server) enter() (oldFault bool, err error) {
	if f := s.failed.Load(); f != nil {
		return false, f
	}
	return debug.SetPanicOnFault(true), nil
}

// contain is deferred by every entry point after enter: it restores the
// fault setting and turns a recovered panic, or a panic recovered
// elsewhere for this call, into the store's failure.
func (s *Server) contain(errp *error, oldFault bool) {
	r := recover()
	debug.SetPanicOnFault(oldFault)
	var pe *panicError
	switch {
	case r != nil:
		*errp = s.fail(&panicError{r})
	case *errp != nil && errors.As(*errp, &pe):
		*errp = s.fail(pe)
	}
}

// fail marks the store failed (the first cause wins) and returns the
// failure every later call gets.
func (s *Server) fail(cause error) error {
	f := &grid.FailedError{Store: s.dir, Cause: fmt.Errorf("%w (stop the node and run `sphere store fsck --rebuild %s`)", cause, s.dir)}
	if s.failed.CompareAndSwap(nil, f) {
		s.log.Error("Store failed; serving nothing until repaired", "err", cause)
		return f
	}
	return s.failed.Load()
}

// Failure implements grid.Failer: nil while the store serves, else why it
// stopped.
func (s *Server) Failure() error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	return nil
}

// NewFailed returns a Server for dir that is failed from the start with
// cause (typically the error Open returned for a damaged store): it
// answers every call with a *grid.FailedError naming dir, so a node can
// keep serving its other stores and report this one.
func NewFailed(dir string, id grid.ServerID, cause error) *Server {
	s := &Server{dir: dir, id: id, log: defaultLogger(nil).With("store", dir), fds: newFDCache(0)}
	var f *grid.FailedError
	if errors.As(cause, &f) {
		s.failed.Store(f)
	} else {
		s.failed.Store(&grid.FailedError{Store: dir, Cause: cause})
	}
	s.closed = true // nothing to close
	return s
}

// damaged wraps an error found while opening a store in a
// *grid.FailedError, so callers tell a damaged store (errors.Is
// grid.ErrFailed) from one they could not open (in use, no permission).
func damaged(dir string, cause error) error {
	var f *grid.FailedError
	if errors.As(cause, &f) {
		return f
	}
	return &grid.FailedError{Store: dir, Cause: fmt.Errorf("%w (run `sphere store fsck --rebuild %s`)", cause, dir)}
}

// Fail takes the store out of service with cause, as damage found during
// a call does: every later call returns the *grid.FailedError it returns.
func (s *Server) Fail(cause error) error { return s.fail(cause) }
