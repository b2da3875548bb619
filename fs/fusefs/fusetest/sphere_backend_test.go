package fusetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fusefs"
)

// sphereBackend mounts Sphere's FUSE frontend (fusefs over fs.FS) over a
// grid.Client on in-process storage servers.
type sphereBackend struct {
	g       fs.Grid
	root    caps.Cap
	parse   func(string) (caps.Cap, error)
	closeFn func() error
}

// newSphereBackend is a grid of in-memory servers with a fresh, empty root
// directory.
func newSphereBackend(t testing.TB) *sphereBackend {
	t.Helper()
	b := newMemGridBackend(t)
	t.Cleanup(func() { b.close(t) })
	return b
}

func (b *sphereBackend) caps() bool { return true }

// rootCapString is the owner's root directory cap.
func (b *sphereBackend) rootCapString() string { return b.root.String() }

func (b *sphereBackend) close(t testing.TB) {
	if b.closeFn != nil {
		if err := b.closeFn(); err != nil {
			t.Errorf("close grid: %v", err)
		}
		b.closeFn = nil
	}
}

func (b *sphereBackend) capOf(capStr string) (caps.Cap, error) {
	if capStr == "" {
		return b.root, nil
	}
	return b.parse(capStr)
}

func (b *sphereBackend) mount(t testing.TB, dir, capStr string, opts mountOpts) (func() error, error) {
	c, err := b.capOf(capStr)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	tree, err := fs.New(ctx, b.g, c, fs.Options{CacheDir: t.TempDir(), JournalDir: opts.journal})
	if err != nil {
		return nil, err
	}
	srv, err := fusefs.Mount(dir, tree, fusefs.Options{Debug: os.Getenv("SPHERE_FUSE_DEBUG") == "1"})
	if err != nil {
		_ = tree.Close(ctx)
		return nil, err
	}
	unmounted := false
	return func() error {
		if !unmounted {
			if err := srv.Unmount(); err != nil {
				return fmt.Errorf("unmount: %w", err)
			}
			unmounted = true
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return tree.Close(cctx)
	}, nil
}

// readFromGrid reads path through a fresh tree on the same grid: what a
// new mount (or another machine) would see, bypassing every cache of the
// mounted tree.
func (b *sphereBackend) readFromGrid(t testing.TB, p string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tree, err := fs.New(ctx, b.g, b.root, fs.Options{CacheDir: t.TempDir(), DirTTL: -1})
	if err != nil {
		return nil, err
	}
	defer tree.Close(ctx)
	h, err := tree.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer h.Close(ctx)
	return io.ReadAll(io.NewSectionReader(handleReaderAt{ctx, h}, 0, h.Stat().Size))
}

type handleReaderAt struct {
	ctx context.Context
	h   *fs.Handle
}

func (r handleReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.h.ReadAt(r.ctx, p, off) }
