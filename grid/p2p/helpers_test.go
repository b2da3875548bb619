package p2p

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// transport selects how test hosts talk.
type transport int

const (
	tcpNoise transport = iota
	tcpTLS
	quic
)

// newHost returns a libp2p host on 127.0.0.1 (listen=false: dial only),
// with the resource manager a node uses, no relay, no discovery.
func newHost(tb testing.TB, tr transport, listen bool) host.Host {
	tb.Helper()
	return newHostLimits(tb, tr, listen, Limits{})
}

// newHostLimits is newHost with resource-manager limits l.
func newHostLimits(tb testing.TB, tr transport, listen bool, l Limits) host.Host {
	tb.Helper()
	rm, err := ResourceManager(l)
	if err != nil {
		tb.Fatal(err)
	}
	opts := []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	}
	switch tr {
	case tcpNoise:
		opts = append(opts, libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(noise.ID, noise.New))
	case tcpTLS:
		opts = append(opts, libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(libp2ptls.ID, libp2ptls.New))
	case quic:
		opts = append(opts, libp2p.Transport(libp2pquic.NewTransport))
	}
	switch {
	case !listen:
		opts = append(opts, libp2p.NoListenAddrs)
	case tr == quic:
		opts = append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"))
	default:
		opts = append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// introduce tells from where to reach to.
func introduce(from, to host.Host) {
	from.Peerstore().AddAddrs(to.ID(), to.Addrs(), peerstore.PermanentAddrTTL)
}

// sinkStore is a grid.Server for benchmarks: WriteShare drains and counts,
// ReadShare returns slices of one fixed share. It measures the protocol,
// not a store.
type sinkStore struct {
	id    grid.ServerID
	share []byte
}

func (s *sinkStore) ID() grid.ServerID { return s.id }
func (s *sinkStore) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != size {
		return io.ErrUnexpectedEOF
	}
	return nil
}
func (s *sinkStore) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	if off >= int64(len(s.share)) {
		return nil, io.ErrUnexpectedEOF
	}
	return s.share[off:min(int64(len(s.share)), off+length)], nil
}
func (s *sinkStore) ListShares(context.Context, caps.StorageIndex) ([]grid.ShareInfo, error) {
	return []grid.ShareInfo{{Shnum: 0, Size: int64(len(s.share))}}, nil
}
func (s *sinkStore) AddLease(context.Context, caps.StorageIndex, grid.Lease) error { return nil }
func (s *sinkStore) ReadSlot(context.Context, caps.StorageIndex) ([]grid.SlotShare, error) {
	return []grid.SlotShare{}, nil
}
func (s *sinkStore) WriteSlot(context.Context, caps.StorageIndex, grid.WriteEnabler, []grid.SlotShare, grid.Lease) error {
	return nil
}

// errStore fails every method with err (after draining nothing).
type errStore struct {
	id  grid.ServerID
	err error
}

func (s *errStore) ID() grid.ServerID { return s.id }
func (s *errStore) WriteShare(context.Context, caps.StorageIndex, int, int64, io.Reader, grid.Lease) error {
	return s.err
}
func (s *errStore) ReadShare(context.Context, caps.StorageIndex, int, int64, int64) ([]byte, error) {
	return nil, s.err
}
func (s *errStore) ListShares(context.Context, caps.StorageIndex) ([]grid.ShareInfo, error) {
	return nil, s.err
}
func (s *errStore) AddLease(context.Context, caps.StorageIndex, grid.Lease) error { return s.err }
func (s *errStore) ReadSlot(context.Context, caps.StorageIndex) ([]grid.SlotShare, error) {
	return nil, s.err
}
func (s *errStore) WriteSlot(context.Context, caps.StorageIndex, grid.WriteEnabler, []grid.SlotShare, grid.Lease) error {
	return s.err
}

// waitFor polls a condition until its deadline (bounded in time).
type waitFor struct {
	deadline time.Time
}

func (w waitFor) until(cond func() bool) bool {
	for time.Now().Before(w.deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
