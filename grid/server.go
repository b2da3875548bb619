// Package grid is where shares live: the storage-server interface and its
// implementations, server selection, upload, download, check, verify and
// repair, and leases.
package grid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// ServerID is a storage server's stable identity: the raw bytes of its libp2p
// peer ID (or, for in-memory test servers, any unique string). It is used for
// share placement (the permuted ring) and to derive per-server secrets such
// as write enablers and lease secrets.
type ServerID string

// String returns a short printable form of the id.
func (id ServerID) String() string {
	const max = 16
	s := fmt.Sprintf("%x", string(id))
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}

// Lease keeps a share alive on a server until Expires. A lease is owned by
// whoever knows RenewSecret (to extend it) and CancelSecret (to drop it); the
// client derives both per storage index and per server from its own lease
// secret, so a server cannot use one client's secret against another server.
type Lease struct {
	RenewSecret  [32]byte
	CancelSecret [32]byte
	Expires      time.Time
}

// ShareInfo describes one stored immutable share.
type ShareInfo struct {
	Shnum int
	Size  int64
}

// SlotShare is one share of a mutable slot as stored on a server.
type SlotShare struct {
	Shnum int
	Seq   uint64 // sequence number the writer declared for Data
	Data  []byte
}

// WriteEnabler authorizes replacing the shares of a mutable slot. Writers
// derive it from the slot's write key and the server's ID; the first write to
// a slot records it and later writes must present the same value.
type WriteEnabler [32]byte

// Server is a storage server: it holds immutable shares and mutable slots for
// other nodes. Implementations are in-memory, on-disk (bbolt) and remote (a
// libp2p peer). All of them pass the conformance suite in grid/gridtest.
//
// Every method may be called from many goroutines at once. Errors that
// callers branch on are the sentinels below, wrapped; IsPermanent tells
// whether retrying the same call on the same server can help.
type Server interface {
	// ID returns the server's stable identity. It never does I/O.
	ID() ServerID

	// WriteShare stores immutable share shnum of storage index si, reading
	// exactly size bytes from r, and adds lease. It returns only once the
	// share is durable (fsynced). If r yields fewer or more than size bytes,
	// or ctx ends, nothing is stored. Writing a share that already exists
	// with the same size only adds the lease and drains r; with another
	// size it is refused and the held share kept. A server that lacks room
	// returns ErrNoSpace before reading r. Share numbers are 0..255.
	WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease Lease) error

	// ReadShare returns length bytes of share shnum starting at off. A read
	// that runs past the end returns the bytes up to the end; a read starting
	// at or past the end returns io.ErrUnexpectedEOF. A missing share returns
	// ErrNotFound. The returned slice is the caller's to keep.
	ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error)

	// ListShares lists the immutable shares held for si, sorted by shnum. No
	// shares is an empty list and a nil error.
	ListShares(ctx context.Context, si caps.StorageIndex) ([]ShareInfo, error)

	// AddLease adds lease to every share (immutable or mutable) held for si,
	// or extends the existing lease with the same RenewSecret to the later of
	// the two expiry times. It returns ErrNotFound if nothing is held for si.
	AddLease(ctx context.Context, si caps.StorageIndex, lease Lease) error

	// ReadSlot returns the shares of mutable slot si held by this server,
	// sorted by shnum. A missing slot is an empty list and a nil error.
	ReadSlot(ctx context.Context, si caps.StorageIndex) ([]SlotShare, error)

	// WriteSlot replaces shares of mutable slot si, atomically for all
	// shares in writes, and adds lease. The first write to a slot records
	// we; later writes with another enabler return ErrBadWriteEnabler. A
	// share whose stored Seq is not lower than the new one is refused with a
	// *StaleError (and nothing in this call is written). writes must be
	// non-empty, with distinct share numbers in 0..255. Returns once
	// durable.
	WriteSlot(ctx context.Context, si caps.StorageIndex, we WriteEnabler, writes []SlotShare, lease Lease) error
}

// Stat is what a server reports about its space.
type Stat struct {
	Quota  int64 // bytes the server offers; 0 means no limit
	Used   int64 // bytes of share data held
	Shares int   // immutable shares plus mutable slot shares held
}

// Statter is an optional ability of a Server: report capacity and usage.
type Statter interface {
	Stat(ctx context.Context) (Stat, error)
}

// LeaseCanceller is an optional ability of a Server: drop the lease whose
// CancelSecret matches. Shares left with no lease are deleted (a deleted
// slot forgets its write enabler). A wrong secret returns ErrUnauthorized;
// nothing held for the storage index returns ErrNotFound.
type LeaseCanceller interface {
	CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) error
}

var (
	// ErrNotFound: the server holds no such share or slot.
	ErrNotFound = errors.New("not found")
	// ErrNoSpace: the server's quota would be exceeded.
	ErrNoSpace = errors.New("no space left on server")
	// ErrBadWriteEnabler: a mutable slot write presented the wrong write enabler.
	ErrBadWriteEnabler = errors.New("write enabler mismatch")
	// ErrUnauthorized: a lease operation presented the wrong secret.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrCorrupt: data failed an integrity check.
	ErrCorrupt = errors.New("integrity check failed")
	// ErrStale: a mutable write did not raise the sequence number (see StaleError).
	ErrStale = errors.New("stale sequence number")
)

// StaleError reports a mutable write refused because the server already
// holds a share with a sequence number at least as high.
type StaleError struct {
	Shnum int
	Have  uint64 // the sequence number the server holds
	Want  uint64 // the sequence number the writer sent
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("share %d: stale sequence number, have=%d want>%d", e.Shnum, e.Have, e.Want)
}

// Is makes errors.Is(err, ErrStale) true for a *StaleError.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// IsPermanent reports whether err means the same call on the same server
// will fail again (missing share, no space, bad secrets, stale writes), as
// opposed to a transient failure (timeout, dropped connection) worth retrying.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoSpace) ||
		errors.Is(err, ErrBadWriteEnabler) || errors.Is(err, ErrUnauthorized) ||
		errors.Is(err, ErrStale) || errors.Is(err, ErrCorrupt)
}
