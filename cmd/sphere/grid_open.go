package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
)

// openClient returns a grid client for the home: through the running node's
// grid when a node is running or the home has joined a grid (remoteServers),
// else over the embedded local grid's stores opened in this process.
// close releases the servers.
func openClient(ctx context.Context, h *home.Home) (c *grid.Client, closeFn func(), err error) {
	servers, closeFn, ok, err := remoteServers(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		servers, closeFn, err = openLocalServers(ctx, h)
		if err != nil {
			return nil, nil, err
		}
	}
	conv, err := h.Secret("convergence")
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	ls, err := h.Secret("lease")
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	var leaseSecret [32]byte
	copy(leaseSecret[:], ls)
	// Rollback protection outlives the process: the highest version seen
	// of each mutable file is kept in the home.
	seqs, err := h.OpenSeqDB(slog.Default())
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("open grid: %w", err)
	}
	closeServers := closeFn
	closeFn = func() {
		if err := seqs.Close(); err != nil {
			slog.Warn("Saving mutable sequence numbers failed", "err", err)
		}
		closeServers()
	}
	c, err = grid.NewClient(grid.ClientConfig{
		Servers: servers, Params: h.Config.Params, Convergence: conv, LeaseSecret: leaseSecret,
		Logger: slog.Default(), SeqStore: seqs,
	})
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("open grid: %w", err)
	}
	return c, closeFn, nil
}
