package fusetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// gridServers is how many storage servers the test grids have (the default
// encoding is 3-of-10, happy 7).
const gridServers = 10

// newClient is a grid client over servers with fixed test secrets (so a
// reopened on-disk grid is the same user's).
func newClient(t testing.TB, servers []grid.Server) *grid.Client {
	t.Helper()
	conv := sha256.Sum256([]byte("fusetest convergence"))
	c, err := grid.NewClient(grid.ClientConfig{
		Servers: servers, Convergence: conv[:], LeaseSecret: sha256.Sum256([]byte("fusetest lease")),
	})
	if err != nil {
		t.Fatalf("grid client: %v", err)
	}
	return c
}

func parseCap(s string) (caps.Cap, error) { return caps.Parse(s) }

// newMemGridBackend is a grid.Client over in-memory servers with a fresh
// root directory.
func newMemGridBackend(t testing.TB) *sphereBackend {
	t.Helper()
	servers := make([]grid.Server, gridServers)
	for i := range servers {
		servers[i] = memserver.New(grid.ServerID(fmt.Sprintf("mem-%02d", i)))
	}
	g := fs.FromClient(newClient(t, servers))
	root, err := g.CreateDir(context.Background(), nil)
	if err != nil {
		t.Fatalf("create root directory: %v", err)
	}
	return &sphereBackend{g: g, root: root, parse: parseCap}
}

// openBoltBackend opens on-disk (bbolt) servers under dir, creating them
// and the root directory on first use; the root cap is kept in dir/root.
func openBoltBackend(t testing.TB, dir string) *sphereBackend {
	t.Helper()
	var opened []*boltserver.Server
	closeAll := func() error {
		var errs []error
		for _, s := range opened {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	servers := make([]grid.Server, gridServers)
	for i := range servers {
		s, err := boltserver.Open(filepath.Join(dir, fmt.Sprintf("s%02d", i)),
			boltserver.Options{ID: grid.ServerID(fmt.Sprintf("bolt-%02d", i))})
		if err != nil {
			_ = closeAll()
			t.Fatalf("open bolt server %d: %v", i, err)
		}
		opened = append(opened, s)
		servers[i] = s
	}
	g := fs.FromClient(newClient(t, servers))
	b := &sphereBackend{g: g, parse: parseCap, closeFn: closeAll}
	rootFile := filepath.Join(dir, "root")
	if s, err := os.ReadFile(rootFile); err == nil {
		if b.root, err = caps.Parse(string(s)); err != nil {
			t.Fatalf("root cap in %s: %v", rootFile, err)
		}
		return b
	}
	root, err := g.CreateDir(context.Background(), nil)
	if err != nil {
		_ = closeAll()
		t.Fatalf("create root directory: %v", err)
	}
	if err := os.WriteFile(rootFile, []byte(root.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.root = root
	return b
}

// newFaultGridBackend is newMemGridBackend with every server wrapped in a
// faultserver, so a test can make the grid fail under the mount.
func newFaultGridBackend(t testing.TB) (*sphereBackend, []*faultserver.Server) {
	t.Helper()
	servers := make([]grid.Server, gridServers)
	faulty := make([]*faultserver.Server, gridServers)
	for i := range servers {
		faulty[i] = faultserver.New(memserver.New(grid.ServerID(fmt.Sprintf("mem-%02d", i))))
		servers[i] = faulty[i]
	}
	g := fs.FromClient(newClient(t, servers))
	root, err := g.CreateDir(context.Background(), nil)
	if err != nil {
		t.Fatalf("create root directory: %v", err)
	}
	return &sphereBackend{g: g, root: root, parse: parseCap}, faulty
}
