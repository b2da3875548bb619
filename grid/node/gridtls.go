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
	sc, err := g.tls.SecureInbound(ctx, insecure, p)
	if err != nil {
		return nil, err
	}
	return g.confirm(ctx, sc, false)
}

// SecureOutbound implements sec.SecureTransport.
func (g *gridTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	sc, err := g.tls.SecureOutbound(ctx, insecure, p)
	if err != nil {
		return nil, err
	}
	return g.confirm(ctx, sc, true)
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
