package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// GridTLSID is the security protocol of a grid's TLS connections: libp2p's
// TLS 1.3 handshake followed by a grid-key confirmation (see gridTLS). Its
// own ID keeps plain /tls/1.0.0 peers from negotiating it.
const GridTLSID protocol.ID = "/sphere/grid-tls/1.0.0"

// gridTLSLabel is the TLS exporter label whose output the confirmation MACs.
const gridTLSLabel = "EXPORTER-sphere-grid-tls-v1"

// gridTLSTimeout bounds the confirmation when ctx has no deadline.
const gridTLSTimeout = 10 * time.Second

// gridTLS is libp2p's TLS transport (AES-GCM: cheaper per byte than Noise's
// ChaCha20 on AES-NI machines, see docs/BENCHMARKS.md) bound to the grid
// key. TLS has no place for a pre-shared key in libp2p's handshake, so
// after it each side sends HMAC-SHA256(grid key, role || exporter), where
// exporter is 32 bytes of the session's keying material (RFC 8446 §7.5)
// and role is "client" or "server", and checks the other side's MAC before
// any multiplexed stream exists. The exporter is unique to this session,
// so a MAC cannot be replayed or relayed, and the role stops a peer from
// reflecting ours. A host without the grid key gets no stream: it only
// learns the peer's identity (the certificate), which Noise with the grid
// prologue does not reveal.
type gridTLS struct {
	tls *libp2ptls.Transport
	psk []byte
}

var _ sec.SecureTransport = (*gridTLS)(nil)

func newGridTLS(psk []byte) func(protocol.ID, crypto.PrivKey, []tptu.StreamMuxer) (*gridTLS, error) {
	key := append([]byte(nil), psk...)
	return func(id protocol.ID, priv crypto.PrivKey, muxers []tptu.StreamMuxer) (*gridTLS, error) {
		t, err := libp2ptls.New(id, priv, muxers)
		if err != nil {
			return nil, fmt.Errorf("grid tls: %w", err)
		}
		return &gridTLS{tls: t, psk: key}, nil
	}
}

// ID implements sec.SecureTransport.
func (g *gridTLS) ID() protocol.ID { return g.tls.ID() }

// SecureInbound implements sec.SecureTransport.
func (g *gridTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &batchConn{Conn: insecure}
	sc, err := g.tls.SecureInbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	if sc, err = g.confirm(ctx, sc, false); err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

// SecureOutbound implements sec.SecureTransport.
func (g *gridTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &batchConn{Conn: insecure}
	sc, err := g.tls.SecureOutbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	if sc, err = g.confirm(ctx, sc, true); err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

// batchFlush bounds the bytes a batchConn holds before writing them.
const batchFlush = 1 << 20

// batchConn is the TCP connection under TLS. crypto/tls writes each record
// (at most 16 KiB) with its own Write, one syscall each; while batching,
// the records of one TLS Write are gathered and written at once (yamux
// writes frames of up to 256 KiB: ~16 times fewer syscalls).
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		return b.Conn.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchFlush {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// batch starts (on) or ends (off, writing what was gathered) a batch.
func (b *batchConn) batch(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = on
	if on {
		return nil
	}
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 2*batchFlush {
		b.buf = nil // a rare huge write: do not keep its buffer
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// batchedConn is a grid TLS connection whose Writes reach TCP as one write
// each (see batchConn).
type batchedConn struct {
	sec.SecureConn
	raw *batchConn
	wmu sync.Mutex
}

func (c *batchedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.raw.batch(true); err != nil {
		return 0, err
	}
	n, err := c.SecureConn.Write(p)
	if ferr := c.raw.batch(false); err == nil && ferr != nil {
		// The records are lost with the connection: report nothing sent.
		return 0, ferr
	}
	return n, err
}

// errGridKey: the peer did not prove it holds the grid key.
var errGridKey = errors.New("peer failed the grid key check")

// confirm exchanges and checks the grid-key MACs; on failure sc is closed.
func (g *gridTLS) confirm(ctx context.Context, sc sec.SecureConn, client bool) (_ sec.SecureConn, err error) {
	defer func() {
		if err != nil {
			_ = sc.Close()
		}
	}()
	cs, ok := sc.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil, fmt.Errorf("grid tls: %T exposes no TLS state", sc)
	}
	state := cs.ConnectionState()
	ekm, err := state.ExportKeyingMaterial(gridTLSLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("grid tls: exporter: %w", err)
	}
	mine, theirs := gridTLSMAC(g.psk, "client", ekm), gridTLSMAC(g.psk, "server", ekm)
	if !client {
		mine, theirs = theirs, mine
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(gridTLSTimeout)
	}
	if err := sc.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("grid tls: %w", err)
	}
	// Both sides write first: 32 bytes fit any buffer, so neither blocks.
	if _, err := sc.Write(mine); err != nil {
		return nil, fmt.Errorf("grid tls: send key confirmation: %w", err)
	}
	got := make([]byte, len(theirs))
	if _, err := io.ReadFull(sc, got); err != nil {
		return nil, fmt.Errorf("grid tls: read key confirmation: %w: %w", errGridKey, err)
	}
	if !hmac.Equal(got, theirs) {
		return nil, fmt.Errorf("grid tls: %w", errGridKey)
	}
	if err := sc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("grid tls: %w", err)
	}
	return sc, nil
}

// gridTLSMAC is HMAC-SHA256(psk, "sphere-grid-tls-v1" || role || ekm).
func gridTLSMAC(psk []byte, role string, ekm []byte) []byte {
	m := hmac.New(sha256.New, psk)
	m.Write([]byte("sphere-grid-tls-v1"))
	m.Write([]byte(role))
	m.Write(ekm)
	return m.Sum(nil)
}
