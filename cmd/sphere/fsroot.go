package main

// The user's root directory: its write cap lives in <home>/root.cap,
// created on first use, and shared by mount and the tree verbs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs"
)

// rootCapFile is the file under the home holding the root dir write cap.
const rootCapFile = "root.cap"

// userRootCap returns the user's root directory write cap, creating the
// directory (and root.cap) on first use. Two processes racing here agree:
// the file is published with link(2), which fails if it exists.
func userRootCap(ctx context.Context, h *home.Home, g fs.Grid) (caps.Cap, error) {
	p := h.Path(rootCapFile)
	if c, err := readRootCap(p, g); err == nil || !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	c, err := g.CreateDir(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("create root directory: %w", err)
	}
	tmp, err := os.CreateTemp(h.Dir, ".root.cap-")
	if err != nil {
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	if _, err := tmp.WriteString(c.String() + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	if err := os.Link(tmp.Name(), p); errors.Is(err, os.ErrExist) {
		return readRootCap(p, g) // another process won; use its root
	} else if err != nil {
		return nil, fmt.Errorf("save root cap: %w", err)
	}
	return c, nil
}

func readRootCap(p string, g fs.Grid) (caps.Cap, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	c, err := caps.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if !g.IsDir(c) {
		return nil, fmt.Errorf("%s: holds a %s cap, want a directory cap", p, c.Kind())
	}
	return c, nil
}
