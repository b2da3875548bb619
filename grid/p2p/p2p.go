package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ProtocolID is the libp2p protocol of version 1 of the storage protocol.
const ProtocolID protocol.ID = "/sphere/storage/1.0.0"

// Defaults for zero option fields. The client and server defaults agree, so
// an honest client never trips the server's limits.
const (
	DefaultRequestTimeout    = 10 * time.Minute
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxMessageSize    = 16 << 20 // bounds WriteSlot / ReadSlot bodies
	DefaultMaxStreamsPerPeer = 32
	DefaultMaxInflight       = 256
	DefaultMaxBufferedBytes  = 256 << 20
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
	// MaxInflight bounds requests served at once for all peers.
	MaxInflight int
	// MaxBufferedBytes bounds request bodies (WriteSlot) held in memory at
	// once for all peers. Streamed share data is not counted (this package
	// never holds it); what a store returns (ReadShare, ReadSlot) is the
	// store's.
	MaxBufferedBytes int64
	// MaxBufferedBytesPerPeer bounds the same for one peer; default
	// MaxBufferedBytes / 8, at least MaxMessageSize.
	MaxBufferedBytesPerPeer int64
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
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.MaxBufferedBytes < int64(o.MaxMessageSize) {
		o.MaxBufferedBytes = int64(o.MaxMessageSize)
	}
	if o.MaxBufferedBytesPerPeer <= 0 {
		o.MaxBufferedBytesPerPeer = o.MaxBufferedBytes / 8
	}
	o.MaxBufferedBytesPerPeer = min(max(o.MaxBufferedBytesPerPeer, int64(o.MaxMessageSize)), o.MaxBufferedBytes)
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
	// MaxMessageSize bounds a response body the client accepts (ReadSlot).
	MaxMessageSize int
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
