package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// Put and get go through the running node when there is one (it holds
// the grid's connections and its stores in-process, so the CLI skips
// dialling every peer); ok=false means no node offers it and the caller
// does the work itself. SPHERE_NO_NODE_IO=1 forces the direct path (for
// comparisons).

func nodeControl(ctx context.Context, h *home.Home) *node.Control {
	if os.Getenv("SPHERE_NO_NODE_IO") == "1" {
		return nil
	}
	c, err := node.DialControl(ctx, h.ControlFile())
	if err != nil {
		return nil
	}
	return c
}

// putViaNode hands a regular file to the running node by path.
func putViaNode(ctx context.Context, h *home.Home, name string, random bool) (capStr string, size int64, ok bool, err error) {
	if name == "-" {
		return "", 0, false, nil
	}
	st, err := os.Stat(name)
	if err != nil || !st.Mode().IsRegular() {
		return "", 0, false, nil // the direct path reports it
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", 0, false, nil
	}
	c := nodeControl(ctx, h)
	if c == nil {
		return "", 0, false, nil
	}
	r, err := c.Put(ctx, abs, random)
	if errors.Is(err, node.ErrNoGridAPI) {
		slog.Debug("Node does not offer put; doing it here", "err", err)
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, true, err
	}
	return r.Cap, r.Size, true, nil
}

// getViaNode streams the file from the running node to w.
func getViaNode(ctx context.Context, h *home.Home, capStr string, w io.Writer, progress func(int64)) (ok bool, err error) {
	c := nodeControl(ctx, h)
	if c == nil {
		return false, nil
	}
	err = c.Get(ctx, capStr, w, progress)
	if errors.Is(err, node.ErrNoGridAPI) {
		slog.Debug("Node does not offer get; doing it here", "err", err)
		return false, nil
	}
	return true, err
}
