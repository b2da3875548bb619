package fusefs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fstest"
	"github.com/sphere-grid/sphere/fs/fusefs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// requireFuse skips when FUSE is absent, unless SPHERE_REQUIRE_FUSE=1.
func requireFuse(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
			t.Fatalf("SPHERE_REQUIRE_FUSE=1 but /dev/fuse: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mount opens a tree over g at root and mounts it; cleanup unmounts and
// closes the tree, failing the test if anything could not be saved.
func mount(t testing.TB, g fs.Grid, root caps.Cap) (string, *fs.FS, *fuse.Server) {
	t.Helper()
	requireFuse(t)
	tr, err := fs.New(ctxT(t), g, root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := fusefs.Mount(dir, tr, fusefs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitMount(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Unmount()
		if err := tr.Close(context.Background()); err != nil {
			t.Errorf("close tree: %v", err)
		}
	})
	return dir, tr, srv
}

func TestMountBasics(t *testing.T) {
	g := fstest.New()
	root, err := g.CreateDir(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	mnt, tr, srv := mount(t, g, root)
	big := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB: many FUSE writes
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(mnt, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(mnt, "a/b/big"), big, 0o644))
	must(os.WriteFile(filepath.Join(mnt, "small"), []byte("hi\n"), 0o600))
	must(os.Symlink("a/b/big", filepath.Join(mnt, "link")))
	got, err := os.ReadFile(filepath.Join(mnt, "link"))
	must(err)
	if !bytes.Equal(got, big) {
		t.Fatalf("read back through symlink: %d bytes, differ", len(got))
	}
	st, err := os.Stat(filepath.Join(mnt, "small"))
	must(err)
	if st.Size() != 3 || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat small: size %d mode %v", st.Size(), st.Mode())
	}
	// editor-style save: write a temp file, rename over
	must(os.WriteFile(filepath.Join(mnt, "small.tmp"), []byte("new\n"), 0o644))
	must(os.Rename(filepath.Join(mnt, "small.tmp"), filepath.Join(mnt, "small")))
	got, err = os.ReadFile(filepath.Join(mnt, "small"))
	must(err)
	if string(got) != "new\n" {
		t.Fatalf("after rename over: %q", got)
	}
	must(os.Rename(filepath.Join(mnt, "small"), filepath.Join(mnt, "a/moved")))
	must(os.Truncate(filepath.Join(mnt, "a/moved"), 2))
	mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(mnt, "a/moved"), mt, mt))
	st, err = os.Stat(filepath.Join(mnt, "a/moved"))
	must(err)
	if st.Size() != 2 || !st.ModTime().Equal(mt) {
		t.Fatalf("after truncate+chtimes: %d %v", st.Size(), st.ModTime())
	}
	if err := os.Remove(filepath.Join(mnt, "a")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("rmdir non-empty: want ENOTEMPTY, have %v", err)
	}
	ents, err := os.ReadDir(mnt)
	must(err)
	if len(ents) != 2 || ents[0].Name() != "a" || ents[1].Name() != "link" {
		t.Fatalf("readdir: %v", ents)
	}
	// sharing attributes
	buf := make([]byte, 1024)
	n, err := syscall.Getxattr(filepath.Join(mnt, "a"), fusefs.XattrReadCap, buf)
	must(err)
	rc, err := fstest.ParseCap(string(buf[:n]))
	must(err)
	if g.Writable(rc) || !g.IsDir(rc) {
		t.Fatalf("readcap xattr %q is not a dir read cap", buf[:n])
	}
	// fsync reports success and makes the tree durable
	f, err := os.OpenFile(filepath.Join(mnt, "a/synced"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(err)
	_, err = f.Write([]byte("durable"))
	must(err)
	must(f.Sync())
	ents2, err := g.ReadDir(ctxT(t), root)
	must(err)
	if _, ok := ents2["a"]; !ok {
		t.Fatal("after fsync the root directory does not hold a")
	}
	must(f.Close())
	must(os.Remove(filepath.Join(mnt, "link")))
	must(srv.Unmount())
	must(tr.Close(ctxT(t)))

	// A fresh tree over the same root sees it all.
	tr2, err := fs.New(ctxT(t), g, root, fs.Options{})
	must(err)
	h, err := tr2.Open(ctxT(t), "a/b/big")
	must(err)
	if h.Stat().Size != int64(len(big)) {
		t.Fatalf("remounted big: size %d", h.Stat().Size)
	}
	if in, err := tr2.Stat(ctxT(t), "a/synced"); err != nil || in.Size != 7 {
		t.Fatalf("remounted synced: %+v %v", in, err)
	}
	if _, err := tr2.Stat(ctxT(t), "link"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed link came back: %v", err)
	}
}

func TestReadOnlyMount(t *testing.T) {
	g := fstest.New()
	ctx := ctxT(t)
	root, err := g.CreateDir(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := fs.New(ctx, g, root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := owner.Create(ctx, "f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h.WriteAt(ctx, []byte("shared"), 0)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Close(ctx)
	rc, _ := g.ReadOnly(root)
	mnt, _, _ := mount(t, g, rc)
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || string(got) != "shared" {
		t.Fatalf("friend reads %q %v", got, err)
	}
	for name, err := range map[string]error{
		"create": os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644),
		"write":  os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644),
		"mkdir":  os.Mkdir(filepath.Join(mnt, "d"), 0o755),
		"remove": os.Remove(filepath.Join(mnt, "f")),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a read-only mount: want EROFS, have %v", name, err)
		}
	}
	// A shell sees EROFS in the redirected stderr of the failing command.
	errFile := filepath.Join(t.TempDir(), "err")
	out, err := exec.Command("bash", "-c", `echo x > "$1/new" 2>"$2"; echo x > "$1/new" 2>>"$2"`, "bash", mnt, errFile).CombinedOutput()
	if err == nil {
		t.Fatalf("echo into a read-only mount succeeded: %s", out)
	}
	if b, _ := os.ReadFile(errFile); !strings.Contains(string(b), "Read-only file system") {
		t.Fatalf("shell error: want EROFS in stderr, have %q %q", b, out)
	}
	if _, err := os.Stat(filepath.Join(mnt, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused create left a name: %v", err)
	}
	// The owner's fsynced change shows within the stated cache time.
	h, _ = owner.Create(ctx, "g", 0o644)
	h.WriteAt(ctx, []byte("later"), 0)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Close(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, err := os.ReadFile(filepath.Join(mnt, "g")); err == nil && string(got) == "later" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("friend never saw the owner's change")
		}
		time.Sleep(100 * time.Millisecond)
	}
	owner.Close(ctx)
}

// TestMountRealGrid runs the basic cycle over the real grid client on
// memservers: a multi-segment file, a directory, read back after remount.
func TestMountRealGrid(t *testing.T) {
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:     gridtest.NewMemGrid(10),
		Params:      caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 64 << 10},
		Convergence: bytes.Repeat([]byte{1}, 32),
		LeaseSecret: [32]byte{1},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	g := fs.FromClient(c)
	root, err := g.CreateDir(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	mnt, tr, srv := mount(t, g, root)
	big := make([]byte, 1<<20+12345)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	if err := os.MkdirAll(filepath.Join(mnt, "d/ünï cødé"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "d/ünï cødé/big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mnt2, _, _ := mount(t, g, root)
	got, err := os.ReadFile(filepath.Join(mnt2, "d/ünï cødé/big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after remount: %d bytes, %v", len(got), err)
	}
	// A 4 KiB read in the middle returns the right bytes.
	f, err := os.Open(filepath.Join(mnt2, "d/ünï cødé/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, 700000); err != nil || !bytes.Equal(b, big[700000:704096]) {
		t.Fatalf("pread: %v", err)
	}
	rc := make([]byte, 1024)
	n, err := syscall.Getxattr(filepath.Join(mnt2, "d"), fusefs.XattrReadCap, rc)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := caps.Parse(string(rc[:n]))
	if err != nil || pc.Kind() != caps.KindDirRead {
		t.Fatalf("readcap xattr: %q %v", rc[:n], err)
	}
}
