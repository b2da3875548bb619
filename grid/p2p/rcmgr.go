package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// Limits sizes the resource manager built by ResourceManager. Zero fields
// take the defaults shown; they are fixed numbers, not scaled to the
// machine, so a node behaves the same everywhere.
type Limits struct {
	Memory            int64 // all of libp2p's buffers; 1 GiB
	FD                int   // file descriptors libp2p may use; 1024
	StreamsPerPeer    int   // storage-protocol streams per peer, each way; 4 × DefaultMaxStreamsPerPeer
	MemoryPerPeer     int64 // storage-protocol buffer memory per peer; 128 MiB
	StorageStreamsAll int   // storage-protocol streams for all peers; 4096
}

func (l Limits) withDefaults() Limits {
	if l.Memory <= 0 {
		l.Memory = 1 << 30
	}
	if l.FD <= 0 {
		l.FD = 1024
	}
	if l.StreamsPerPeer <= 0 {
		l.StreamsPerPeer = 4 * DefaultMaxStreamsPerPeer
	}
	if l.MemoryPerPeer <= 0 {
		l.MemoryPerPeer = 128 << 20
	}
	if l.StorageStreamsAll <= 0 {
		l.StorageStreamsAll = 4096
	}
	return l
}

// ResourceManager returns a libp2p resource manager with fixed limits for a
// Sphere node: libp2p's default limits computed for l.Memory and l.FD (so
// connections, transient streams and unnegotiated streams stay bounded),
// plus explicit limits for ProtocolID and ProtocolIDV1 per peer and in
// total (each version its own). Pass it to
// libp2p.New with libp2p.ResourceManager(rm).
//
// The per-peer stream limit sits above ServeOptions.MaxStreamsPerPeer (so
// the Service, which answers ErrBusy, trips first for honest overload)
// and the per-peer memory lets a few streams grow full yamux windows
// (16 MiB) for throughput.
func ResourceManager(l Limits) (network.ResourceManager, error) {
	l = l.withDefaults()
	cfg := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&cfg)
	for _, id := range []protocol.ID{ProtocolID, ProtocolIDV1} {
		cfg.AddProtocolLimit(id, rcmgr.BaseLimit{
			StreamsInbound:  l.StorageStreamsAll,
			StreamsOutbound: l.StorageStreamsAll,
			Streams:         2 * l.StorageStreamsAll,
			Memory:          l.Memory / 2,
		}, rcmgr.BaseLimitIncrease{})
		cfg.AddProtocolPeerLimit(id, rcmgr.BaseLimit{
			StreamsInbound:  l.StreamsPerPeer,
			StreamsOutbound: l.StreamsPerPeer,
			Streams:         2 * l.StreamsPerPeer,
			Memory:          l.MemoryPerPeer,
		}, rcmgr.BaseLimitIncrease{})
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(cfg.Scale(l.Memory, l.FD)))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}
