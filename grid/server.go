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

// Lease keeps a share alive on a server. A lease is owned by whoever knows
// RenewSecret (to extend it) and CancelSecret (to drop it); the client
// derives both per storage index and per server from its own lease secret,
// so a server cannot use one client's secret against another server.
//
// The server dates leases itself, as Tahoe's do: adding or renewing a lease
// sets its expiry to the server's now plus the server's lease term
// (DefaultLeaseTerm unless configured). Expires is what the client asks for
// and servers ignore it: a client cannot make a lease outlive the term, so
// a share nobody renews is collected a term plus a grace period
// (DefaultLeaseGrace) after its last renewal. docs/spec/storage-protocol.md,
// "Leases".
type Lease struct {
	RenewSecret  [32]byte
	CancelSecret [32]byte
	Expires      time.Time // ignored by servers (see above)
}

// Lease terms servers use unless configured otherwise; clients renew well
// within DefaultLeaseTerm (e.g. monthly) and recovery tools may count on a
// share outliving its last renewal by DefaultLeaseTerm + DefaultLeaseGrace.
const (
	// DefaultLeaseTerm is how long an added or renewed lease lasts.
	DefaultLeaseTerm = 90 * 24 * time.Hour
	// DefaultLeaseGrace is how long a share whose leases all expired is
	// kept before the server deletes it.
	DefaultLeaseGrace = 30 * 24 * time.Hour
	// MaxLeases is how many leases (distinct renew secrets) one storage
	// index holds at most; a further distinct one is refused with
	// ErrLeaseLimit while renewals of held ones succeed.
	MaxLeases = 16
	// ExpiringWindow is the horizon of Stat.ExpiringSoon.
	ExpiringWindow = 7 * 24 * time.Hour
)

// What a server charges against its quota beside share bytes, so that a
// client cannot fill a disk with metadata: every implementation counts
// these in Stat.Used and refuses with ErrNoSpace what would not fit.
const (
	ShareCharge = 128 // per immutable share and per mutable slot share held
	SlotCharge  = 128 // per mutable slot (its write enabler)
	LeaseCharge = 256 // per lease
)

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
// other nodes. Every share lives while a lease covers it; leases are dated
// by the server, limited and charged to its quota (see Lease, MaxLeases,
// LeaseCharge). A store that finds its storage damaged answers every call
// with a *FailedError (see Failer). Implementations are in-memory, on-disk (bbolt) and remote (a
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
	// (quota, counting the share's and the lease's charges) or that would
	// refuse the lease (ErrLeaseLimit) returns ErrNoSpace before reading r
	// (a rewrite of a held share refuses before draining r). Share numbers
	// are 0..255.
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
	// or renews the held lease with the same RenewSecret (its cancel secret
	// stays the first one given). Either way the lease then expires the
	// server's lease term from now; lease.Expires is ignored. It returns
	// ErrNotFound if nothing is held for si, and ErrLeaseLimit if si holds
	// MaxLeases leases and lease.RenewSecret is none of theirs. Every
	// method that takes a lease adds it by these rules, and counts it
	// against the quota (LeaseCharge).
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
	Quota int64 // bytes the server offers; 0 means no limit
	// Used is the bytes counted against Quota: share data plus the
	// metadata charges (ShareCharge, SlotCharge, LeaseCharge).
	Used   int64
	Shares int // immutable shares plus mutable slot shares held
	// ExpiringSoon counts the shares whose last lease ends within
	// ExpiringWindow (-1: the server does not say). Local only: the
	// storage protocol's Stat does not carry it.
	ExpiringSoon int
}

// Statter is an optional ability of a Server: report capacity and usage.
// A server that cannot serve (see ErrFailed) returns its failure instead.
type Statter interface {
	Stat(ctx context.Context) (Stat, error)
}

// Failer is an optional ability of a Server: say whether it has taken
// itself out of service because its storage is damaged. Failure returns
// nil while the server serves, else the *FailedError every call returns.
type Failer interface {
	Failure() error
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
	// ErrFailed: the store found its storage damaged and serves nothing
	// until repaired (see FailedError). It is also ErrCorrupt, so peers
	// that know only that see a permanent error.
	ErrFailed = errors.New("store failed")
	// ErrLeaseLimit: a storage index already holds MaxLeases leases and
	// the lease offered is a new one. It is a kind of ErrNoSpace.
	ErrLeaseLimit = fmt.Errorf("%d leases held, no room for another: %w", MaxLeases, ErrNoSpace)
)

// FailedError is what every call on a failed store returns: which store
// and why. A failed store never recovers by itself; an operator repairs it
// (for the bbolt store: sphere store fsck --rebuild) and restarts it.
type FailedError struct {
	Store string // where the store lives (a directory), for people
	Cause error  // the damage found (a recovered panic, a failed check)
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("store %s failed and serves nothing until repaired: %v", e.Store, e.Cause)
}

// Is makes errors.Is(err, ErrFailed) and errors.Is(err, ErrCorrupt) true.
func (e *FailedError) Is(target error) bool { return target == ErrFailed || target == ErrCorrupt }

// Unwrap returns the cause.
func (e *FailedError) Unwrap() error { return e.Cause }

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
