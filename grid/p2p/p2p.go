package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol IDs of the storage protocol. A Service serves both; a Client
// speaks the newest the peer offers. Version 2 carries mutable slots as
// raw runs of bytes after a small message, so a slot is not bounded by
// MaxMessageSize; version 1 carries them inside one message.
const (
	ProtocolID   protocol.ID = "/sphere/storage/2.0.0"
	ProtocolIDV1 protocol.ID = "/sphere/storage/1.0.0"
)

// Defaults for zero option fields. The client and server defaults agree, so
// an honest client never trips the server's limits.
const (
	DefaultRequestTimeout    = 10 * time.Minute
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxMessageSize    = 16 << 20 // bounds WriteSlot / ReadSlot bodies
	DefaultMaxStreamsPerPeer = 32
	DefaultMaxInflight       = 256
	DefaultMaxBufferedBytes  = 256 << 20
	// DefaultMaxSlotSize bounds the share data of one ReadSlot or
	// WriteSlot (all shares of the slot on this server) in version 2.
	DefaultMaxSlotSize = 128 << 20
	// DefaultReadPiece is the most share data a server reads from its
	// store at once to answer a ReadShare, whatever length was asked.
	DefaultReadPiece = 1 << 20
	// DefaultMinRate and DefaultRateGrace: after the grace, a request (and
	// the share data it sends or is sent) must move at least this many
	// bytes per second on average, or the stream is cut off (trickles).
	// Low enough for one of ten parallel uploads over a 1 Mbit/s uplink.
	DefaultMinRate   = 8 << 10
	DefaultRateGrace = 10 * time.Second
	// DefaultMaxSlotReads bounds store ReadSlot calls running at once
	// (their result is in memory before its size is known); one source
	// runs one at a time.
	DefaultMaxSlotReads = 2
)

var (
	// ErrBusy: the remote server is at its concurrency or memory limit.
	// It is transient (grid.IsPermanent is false): retry later or elsewhere.
	ErrBusy = errors.New("server busy")
	// ErrProtocol: the peer sent a message that breaks the protocol
	// (bad version, oversized or truncated field). The stream is dropped.
	ErrProtocol = errors.New("storage protocol violation")
)

// ServeOptions configures a Service. Zero fields take the Default* values.
type ServeOptions struct {
	// RequestTimeout bounds one whole request, share data included.
	RequestTimeout time.Duration
	// IdleTimeout bounds each single read or write on a stream, and the
	// time a request header may take to arrive (slowloris).
	IdleTimeout time.Duration
	// MaxMessageSize bounds a request body (WriteSlot is the only large one).
	MaxMessageSize int
	// MaxStreamsPerPeer bounds requests served at once for one peer; up to
	// as many more wait (for at most IdleTimeout), the rest get ErrBusy.
	MaxStreamsPerPeer int
	// MaxStreamsPerSource bounds requests served at once for all peers
	// connecting from one source (an IPv4 address or an IPv6 /64), so
	// throwaway peer identities share one limit; default 4 ×
	// MaxStreamsPerPeer. Up to as many more wait, the rest get ErrBusy.
	MaxStreamsPerSource int
	// MaxInflight bounds requests served at once for all peers.
	MaxInflight int
	// MaxBufferedBytes bounds the memory requests hold at once for all
	// peers: request bodies and slot data received, ReadShare pieces and
	// slot data being sent. Streamed WriteShare data is not counted (it
	// goes to the store in the store's buffers).
	MaxBufferedBytes int64
	// MaxBufferedBytesPerPeer bounds the same for one peer; default
	// MaxBufferedBytes / 8, or room for a MaxSlotSize slot if that is
	// larger (but at most MaxBufferedBytes / 2).
	MaxBufferedBytesPerPeer int64
	// MaxBufferedBytesPerSource bounds the same for one source (see
	// MaxStreamsPerSource); default MaxBufferedBytes / 2, at least
	// MaxBufferedBytesPerPeer.
	MaxBufferedBytesPerSource int64
	// MaxSlotSize bounds the share data of one version 2 ReadSlot or
	// WriteSlot; it is lowered to fit MaxBufferedBytesPerPeer.
	MaxSlotSize int64
	// ReadPiece is the most share data read from the store at once for a
	// ReadShare; longer reads are answered piece by piece.
	ReadPiece int
	// MaxSlotReads bounds store ReadSlot calls running at once.
	MaxSlotReads int
	// MinRate (bytes/s) and RateGrace: the rate floor. A request must
	// arrive, and share data sent or received must move, at MinRate on
	// average once RateGrace has passed; otherwise the stream is cut off.
	// A negative MinRate disables the floor.
	MinRate   int64
	RateGrace time.Duration
	// Logger gets a Debug line per failed or refused request; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o ServeOptions) withDefaults() ServeOptions {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxStreamsPerPeer <= 0 {
		o.MaxStreamsPerPeer = DefaultMaxStreamsPerPeer
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.MaxStreamsPerSource <= 0 {
		o.MaxStreamsPerSource = 4 * o.MaxStreamsPerPeer
	}
	if o.MaxSlotSize <= 0 {
		o.MaxSlotSize = DefaultMaxSlotSize
	}
	if o.ReadPiece <= 0 {
		o.ReadPiece = DefaultReadPiece
	}
	if o.MaxSlotReads <= 0 {
		o.MaxSlotReads = DefaultMaxSlotReads
	}
	if o.MinRate == 0 {
		o.MinRate = DefaultMinRate
	}
	if o.RateGrace <= 0 {
		o.RateGrace = DefaultRateGrace
	}
	// The budgets are what the operator set; limits that cannot fit in
	// them shrink. One request must fit each budget it is counted in.
	need := max(int64(o.MaxMessageSize), int64(o.ReadPiece))
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	o.MaxBufferedBytes = max(o.MaxBufferedBytes, need)
	o.MaxSlotSize = min(o.MaxSlotSize, o.MaxBufferedBytes)
	if o.MaxBufferedBytesPerPeer <= 0 {
		// Room for one full slot, unless that would let one peer take
		// more than one source may.
		o.MaxBufferedBytesPerPeer = max(o.MaxBufferedBytes/8, min(o.MaxSlotSize, o.MaxBufferedBytes/2))
	}
	o.MaxBufferedBytesPerPeer = min(max(o.MaxBufferedBytesPerPeer, need), o.MaxBufferedBytes)
	o.MaxSlotSize = min(o.MaxSlotSize, o.MaxBufferedBytesPerPeer)
	if o.MaxBufferedBytesPerSource <= 0 {
		o.MaxBufferedBytesPerSource = o.MaxBufferedBytes / 2
	}
	o.MaxBufferedBytesPerSource = min(max(o.MaxBufferedBytesPerSource, o.MaxBufferedBytesPerPeer), o.MaxBufferedBytes)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ClientOptions configures a Client. Zero fields take the Default* values.
type ClientOptions struct {
	// RequestTimeout bounds one request when ctx has no earlier deadline.
	RequestTimeout time.Duration
	// IdleTimeout bounds each single read or write on a stream.
	IdleTimeout time.Duration
	// MaxMessageSize bounds a response body the client accepts (a
	// version 1 ReadSlot).
	MaxMessageSize int
	// MaxSlotSize bounds the slot data of a version 2 ReadSlot the client
	// accepts, and of a WriteSlot it sends.
	MaxSlotSize int64
	// Version forces a protocol version (1 or 2); 0 speaks the newest the
	// peer supports.
	Version int
	// MaxConcurrent bounds requests in flight to this peer; further calls
	// wait. Keep it at or below the server's MaxStreamsPerPeer.
	MaxConcurrent int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxStreamsPerPeer
	}
	if o.MaxSlotSize <= 0 {
		o.MaxSlotSize = DefaultMaxSlotSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// RemoteError is an error reported by the remote server. Err is the grid
// sentinel (or *grid.StaleError, errors.ErrUnsupported, ErrBusy) it mapped
// to, so errors.Is and errors.As see through it; Msg is the server's text.
type RemoteError struct {
	Peer peer.ID
	Msg  string
	Err  error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("peer %s: %s", shortPeer(e.Peer), e.Msg)
}

// Unwrap returns the sentinel the remote error maps to.
func (e *RemoteError) Unwrap() error { return e.Err }

func shortPeer(p peer.ID) string {
	s := p.String()
	if len(s) > 12 {
		s = s[len(s)-12:]
	}
	return s
}
