package fusetest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// loopbackBackend serves a plain directory through go-fuse's loopback
// filesystem: the reference the suite is checked against (every test that
// fails here is a broken test, not a broken Sphere).
type loopbackBackend struct{ store string }

func newLoopbackBackend(t testing.TB) *loopbackBackend {
	return &loopbackBackend{store: t.TempDir()}
}

func (b *loopbackBackend) caps() bool { return false }

func (b *loopbackBackend) mount(t testing.TB, dir, capStr string, _ mountOpts) (func() error, error) {
	root := b.store
	if capStr != "" {
		root = filepath.Join(b.store, capStr)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
	}
	node, err := gofs.NewLoopbackRoot(root)
	if err != nil {
		return nil, err
	}
	sec := time.Second
	srv, err := gofs.Mount(dir, node, &gofs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec,
		MountOptions: fuse.MountOptions{DirectMountStrict: os.Geteuid() == 0, EnableLocks: true, FsName: "loopback-test"},
	})
	if err != nil {
		return nil, err
	}
	return srv.Unmount, nil
}

// readFromGrid reads the backing file: the loopback's "grid".
func (b *loopbackBackend) readFromGrid(t testing.TB, p string) ([]byte, error) {
	return os.ReadFile(filepath.Join(b.store, p))
}
