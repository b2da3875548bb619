package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
)

// openLocalServers opens the embedded local grid's stores in this process.
// A store held by a running `sphere up` gives a clear "in use" error.
func openLocalServers(ctx context.Context, h *home.Home) ([]grid.Server, func(), error) {
	n := h.Config.LocalServers
	if n == 0 {
		return nil, nil, errors.New("this home has no local grid and no node is running (start one with `sphere up` or `sphere node`)")
	}
	var opened []*boltserver.Server
	closeAll := func() {
		for _, s := range opened {
			if err := s.Close(); err != nil {
				slog.Warn("Close local server", "err", err)
			}
		}
	}
	servers := make([]grid.Server, 0, n)
	for i := 0; i < n; i++ {
		dir := h.ServerDir(i)
		_, id, err := home.Identity(dir)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		s, err := boltserver.Open(dir, boltserver.Options{ID: id, Quota: h.StoreQuota(n), Logger: slog.Default()})
		if errors.Is(err, boltserver.ErrInUse) {
			closeAll()
			return nil, nil, fmt.Errorf("the local grid is held by another sphere process (a mount?); "+
				"run `sphere up` so that several commands can share it: %w", err)
		}
		if err != nil {
			// A damaged store stays out of service; the others serve
			// (sphere store fsck --rebuild repairs it).
			slog.Warn("Local server failed", "server", i, "err", err)
			s = boltserver.NewFailed(dir, id, err)
		}
		opened = append(opened, s)
		servers = append(servers, s)
	}
	return servers, closeAll, nil
}
