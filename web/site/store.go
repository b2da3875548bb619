package site

import (
	"context"
	"fmt"
	"io"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// File is an immutable file opened from the grid.
type File interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Store is what a site needs from the grid. *grid.Client satisfies it
// through GridStore. Every method may be called concurrently.
type Store interface {
	// Upload stores size bytes of r as an immutable file.
	Upload(ctx context.Context, r io.ReaderAt, size int64) (caps.Cap, error)
	// Open opens an immutable file for random access; ctx bounds its life.
	Open(ctx context.Context, c caps.Cap) (File, error)
	// Create makes a new mutable file holding content; returns its write cap.
	Create(ctx context.Context, content []byte) (caps.Cap, error)
	// Modify replaces the mutable file's content with fn(old), retrying
	// fn when another writer got in first.
	Modify(ctx context.Context, wc caps.Cap, fn func(old []byte) ([]byte, error)) error
	// Retrieve reads the newest content of a mutable file.
	Retrieve(ctx context.Context, c caps.Cap) ([]byte, error)
}

// GridStore adapts a grid client to Store.
func GridStore(c *grid.Client) Store { return gridStore{c} }

type gridStore struct{ c *grid.Client }

func (g gridStore) Upload(ctx context.Context, r io.ReaderAt, size int64) (caps.Cap, error) {
	return g.c.Upload(ctx, r, size, grid.UploadOptions{})
}

func (g gridStore) Open(ctx context.Context, c caps.Cap) (File, error) { return g.c.Open(ctx, c) }

func (g gridStore) Create(ctx context.Context, content []byte) (caps.Cap, error) {
	return g.c.CreateMutable(ctx, content, false)
}

func (g gridStore) Modify(ctx context.Context, wc caps.Cap, fn func(old []byte) ([]byte, error)) error {
	w, ok := writeCap(wc)
	if !ok {
		return fmt.Errorf("modify: a %s cap cannot write a site", wc.Kind())
	}
	_, err := g.c.Modify(ctx, w, func(old []byte, _ grid.Version) ([]byte, error) { return fn(old) })
	return err
}

func (g gridStore) Retrieve(ctx context.Context, c caps.Cap) ([]byte, error) {
	b, _, err := g.c.Retrieve(ctx, c)
	return b, err
}

func writeCap(c caps.Cap) (caps.MutableWriteCap, bool) {
	switch w := c.(type) {
	case caps.MutableWriteCap:
		return w, !w.Dir
	case *caps.MutableWriteCap:
		if w != nil {
			return *w, !w.Dir
		}
	}
	return caps.MutableWriteCap{}, false
}

// Address returns the site's address (the read cap of its refs file) for
// an address or a write cap; an error for any other cap.
func Address(c caps.Cap) (caps.MutableReadCap, error) {
	rc, ok := caps.MutableReadCapOf(c)
	if !ok || rc.Dir {
		return caps.MutableReadCap{}, fmt.Errorf("a %s cap is not a site's address (want %s)", c.Kind(), caps.KindMutableRead)
	}
	return rc, nil
}

// IsWriteCap reports whether c can update a site.
func IsWriteCap(c caps.Cap) bool { _, ok := writeCap(c); return ok }
