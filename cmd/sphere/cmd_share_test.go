package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fusefs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// TestShareMountedPath: `sphere share` of a local path inside a mounted
// Sphere folder prints the read cap the mount shows as user.sphere.readcap.
func TestShareMountedPath(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
			t.Fatalf("SPHERE_REQUIRE_FUSE=1 but no FUSE: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
	ctx := context.Background()
	servers := make([]grid.Server, 10)
	for i := range servers {
		servers[i] = memserver.New(grid.ServerID(fmt.Sprintf("s%d", i)))
	}
	conv := sha256.Sum256([]byte("conv"))
	cl, err := grid.NewClient(grid.ClientConfig{Servers: servers, Convergence: conv[:], LeaseSecret: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	g := fs.FromClient(cl)
	root, err := g.CreateDir(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := fs.New(ctx, g, root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := fusefs.Mount(dir, tree, fusefs.Options{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if err := tree.Close(ctx); err != nil {
			t.Errorf("close tree: %v", err)
		}
	})
	if err := os.MkdirAll(filepath.Join(dir, "photos/2024"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "photos/2024/a.jpg"), []byte("jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, want, err := tree.Caps(ctx, "photos")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(mustRun(t, "share", filepath.Join(dir, "photos")))
	if got != want.String() {
		t.Fatalf("share of the mounted folder = %q, want its read cap %q", got, want)
	}
	if strings.Contains(got, "-rw") {
		t.Fatalf("share printed a write cap %q", got)
	}
	// A file too; and a path outside any mount is an error.
	if out := strings.TrimSpace(mustRun(t, "share", filepath.Join(dir, "photos/2024/a.jpg"))); !strings.HasPrefix(out, "sphere:") {
		t.Fatalf("share of a mounted file = %q", out)
	}
	errs := mustFail(t, exitError, "share", t.TempDir())
	if !strings.Contains(errs, "not inside a mounted Sphere folder") {
		t.Fatalf("share outside a mount: %s", errs)
	}
}
