package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/node"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// remoteDialTimeout bounds connecting to one storage peer.
const remoteDialTimeout = 5 * time.Second

// remoteServers returns the grid's servers as libp2p clients when a node is
// running for this home (it holds the stores; it lists the storage peers
// it reaches) or the home has joined a grid (the peers in config and
// peers.json); ok=false means use the embedded local grid. The clients
// dial from a short-lived host on the grid key, as the node's delegated
// client while the node runs, else as the node itself (peers serve only
// members); only peers that answer are returned.
func remoteServers(ctx context.Context, h *home.Home) (servers []grid.Server, closeFn func(), ok bool, err error) {
	var addrs []string
	priv, _, err := h.NodeIdentity()
	if err != nil {
		return nil, nil, false, err
	}
	c, err := node.DialControl(ctx, h.ControlFile())
	switch {
	case err == nil:
		// The node's own id cannot dial the node: dial as its client.
		if priv, err = node.ClientKey(priv); err != nil {
			return nil, nil, false, err
		}
		if addrs, err = c.Peers(ctx); err != nil {
			return nil, nil, false, fmt.Errorf("ask node for peers: %w", err)
		}
	case errors.Is(err, node.ErrNotRunning):
		if len(h.Config.Node.Peers) == 0 {
			return nil, nil, false, nil
		}
		addrs = append(addrs, h.Config.Node.Peers...)
		known, err := node.LoadKnownPeers(h.PeersFile())
		if err != nil {
			return nil, nil, false, err
		}
		addrs = append(addrs, known...)
	default:
		return nil, nil, false, err
	}
	infos, err := node.ParseAddrs(addrs)
	if err != nil {
		return nil, nil, false, err
	}
	psk, err := h.GridKey()
	if err != nil {
		return nil, nil, false, err
	}
	ch, err := node.NewClientHost(priv, psk)
	if err != nil {
		return nil, nil, false, err
	}
	closeFn = func() { _ = ch.Close() }
	start := time.Now()
	reached := make([]bool, len(infos))
	var wg sync.WaitGroup
	for i, ai := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, remoteDialTimeout)
			defer cancel()
			if err := ch.Connect(dctx, ai); err != nil {
				slog.Info("Storage peer unreachable", "peer", ai.ID.String(), "err", err)
				return
			}
			reached[i] = true
		}()
	}
	wg.Wait()
	for i, ai := range infos {
		if reached[i] {
			servers = append(servers, p2p.NewClient(ch, ai.ID, p2p.ClientOptions{Logger: slog.Default()}))
		}
	}
	slog.Debug("Dialled storage peers", "known", len(infos), "reached", len(servers), "took", time.Since(start))
	if len(servers) == 0 {
		closeFn()
		return nil, nil, false, fmt.Errorf("none of the grid's %d known storage peers answered", len(infos))
	}
	return servers, closeFn, true, nil
}

var _ = peer.ID("")
