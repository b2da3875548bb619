package grid

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Servers     []Server
	Params      caps.Params // zero value: caps.DefaultParams()
	Convergence []byte      // per-user convergence secret (at least 32 bytes; required)
	LeaseSecret [32]byte    // per-user secret all lease secrets derive from (required, not all zero)
	// LeaseDuration is the lease expiry the client asks for (zero: 31
	// days). Servers ignore it and date leases themselves
	// (grid.DefaultLeaseTerm); it only fills Lease.Expires.
	LeaseDuration time.Duration
	// RequestTimeout bounds each request to one server before the client
	// moves to another (zero: 20 s).
	RequestTimeout time.Duration
	Now            func() time.Time // zero: time.Now
	Logger         *slog.Logger     // zero: slog.Default()
	// SeqStore remembers the highest version seen of each mutable file, so
	// Retrieve notices rollback (zero: in memory, per Client).
	SeqStore SeqStore
}

// MinSecretSize is the shortest convergence secret NewClient accepts.
const MinSecretSize = 32

// Client uploads, downloads, checks and repairs files on a set of servers.
// It is safe for concurrent use.
type Client struct {
	servers []Server
	params  caps.Params
	conv    []byte
	leaseSK [32]byte
	leaseD  time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
	seqs    SeqStore    // highest mutable seq seen, per storage index (mutable.go)
	latest  latestCache // last mutable content per storage index, for Modify (mutable.go)
}

// NewClient returns a client over cfg.Servers.
func NewClient(cfg ClientConfig) (*Client, error) {
	c := &Client{
		servers: cfg.Servers, params: cfg.Params, conv: cfg.Convergence,
		leaseSK: cfg.LeaseSecret, leaseD: cfg.LeaseDuration, timeout: cfg.RequestTimeout,
		now: cfg.Now, log: cfg.Logger,
	}
	if c.params == (caps.Params{}) {
		c.params = caps.DefaultParams()
	}
	if err := c.params.Validate(); err != nil {
		return nil, fmt.Errorf("grid client: %w", err)
	}
	if len(c.servers) == 0 {
		return nil, errors.New("grid client: no servers")
	}
	// A short or missing secret would make keys guessable (convergence) or
	// let anyone renew and cancel this user's leases (lease): refuse.
	if len(c.conv) < MinSecretSize {
		return nil, fmt.Errorf("grid client: convergence secret of %d bytes, want at least %d", len(c.conv), MinSecretSize)
	}
	if c.leaseSK == ([32]byte{}) {
		return nil, errors.New("grid client: lease secret missing (all zero)")
	}
	if c.leaseD == 0 {
		c.leaseD = 31 * 24 * time.Hour
	}
	if c.timeout == 0 {
		c.timeout = 20 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.seqs = cfg.SeqStore; c.seqs == nil {
		c.seqs = NewMemSeqStore()
	}
	return c, nil
}

// Params returns the client's encoding parameters.
func (c *Client) Params() caps.Params { return c.params }

// Servers returns the servers the client knows.
func (c *Client) Servers() []Server { return c.servers }

// lease returns the lease this client holds on si at server id: its secrets
// derive one-way from the client's lease secret, si and id, as in Tahoe.
func (c *Client) lease(si caps.StorageIndex, id ServerID) Lease {
	return Lease{
		RenewSecret:  deriveSecret(c.leaseSK, "sphere-lease-renew-v1", si, id),
		CancelSecret: deriveSecret(c.leaseSK, "sphere-lease-cancel-v1", si, id),
		Expires:      c.now().Add(c.leaseD),
	}
}

func deriveSecret(master [32]byte, tag string, si caps.StorageIndex, id ServerID) [32]byte {
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write(master[:])
	h.Write(si[:])
	h.Write([]byte(id))
	var out [32]byte
	h.Sum(out[:0])
	return out
}
