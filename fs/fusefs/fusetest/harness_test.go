package fusetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// requireFUSE skips t when FUSE is unusable here, or fails it when
// SPHERE_REQUIRE_FUSE=1 says CI must run real mounts.
func requireFUSE(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	if err == nil {
		return
	}
	if os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
		t.Fatalf("SPHERE_REQUIRE_FUSE=1 but FUSE is unusable: %v", err)
	}
	t.Skipf("no FUSE here (%v); set SPHERE_REQUIRE_FUSE=1 to fail instead", err)
}

// requireTool skips t when an external tool is missing, or fails it when
// SPHERE_REQUIRE_FUSE=1 (CI installs every tool the suite uses).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
		t.Fatalf("tool %s is missing (install it; see .ci/run): %v", name, err)
	}
	t.Skipf("tool %s is missing: %v", name, err)
	return ""
}

// backend mounts trees for the suite: Sphere's FUSE frontend over an
// in-process grid, or go-fuse's loopback filesystem to check the tests.
type backend interface {
	// mount serves the tree named by capStr ("" = the owner's root) at dir
	// until the returned unmount is called.
	mount(t testing.TB, dir, capStr string, opts mountOpts) (unmount func() error, err error)
	// caps tells whether the backend has caps (xattrs, read-only mounts).
	caps() bool
}

// mountOpts are per-mount knobs.
type mountOpts struct {
	journal string // write-back journal directory (Sphere backend); "" for none
}

// world is one grid and the owner's tree on it, shared by every mount a test
// makes (so a remount sees what an earlier mount stored).
type world struct {
	b backend
}

// newWorld returns a fresh world for t on the backend chosen by
// SPHERE_FUSETEST_BACKEND (default: sphere).
func newWorld(t testing.TB) *world {
	t.Helper()
	requireFUSE(t)
	switch name := os.Getenv("SPHERE_FUSETEST_BACKEND"); name {
	case "", "sphere":
		return &world{b: newSphereBackend(t)}
	case "loopback":
		return &world{b: newLoopbackBackend(t)}
	default:
		t.Fatalf("SPHERE_FUSETEST_BACKEND=%q: want sphere or loopback", name)
	}
	return nil
}

// mnt is one live mount.
type mnt struct {
	w       *world
	dir     string
	capStr  string
	opts    mountOpts
	unmount func() error
}

// mount mounts capStr ("" = owner's root) on a fresh directory and unmounts
// it in t.Cleanup.
func (w *world) mount(t testing.TB, capStr string) *mnt {
	t.Helper()
	return w.mountWith(t, capStr, mountOpts{})
}

// mountWith is mount with knobs.
func (w *world) mountWith(t testing.TB, capStr string, opts mountOpts) *mnt {
	t.Helper()
	m := &mnt{w: w, dir: t.TempDir(), capStr: capStr, opts: opts}
	m.up(t)
	t.Cleanup(func() {
		if err := m.down(); err != nil {
			t.Errorf("unmount %s: %v", m.dir, err)
		}
	})
	return m
}

func (m *mnt) up(t testing.TB) {
	t.Helper()
	un, err := m.w.b.mount(t, m.dir, m.capStr, m.opts)
	if err != nil {
		t.Fatalf("mount %q at %s: %v", m.capStr, m.dir, err)
	}
	m.unmount = un
}

// down unmounts, retrying while the kernel still holds files open, and
// detaches lazily as a last resort so a test never leaves a mount behind.
func (m *mnt) down() error {
	if m.unmount == nil {
		return nil
	}
	un := m.unmount
	m.unmount = nil
	var err error
	for try := 0; try < 10; try++ {
		if err = un(); err == nil {
			return nil
		}
		time.Sleep(time.Duration(try+1) * 50 * time.Millisecond)
	}
	_ = exec.Command("umount", "-l", m.dir).Run()
	return err
}

// remount unmounts and mounts the same cap at the same place: everything the
// tree shows afterwards came from the grid, not from this mount's caches.
func (m *mnt) remount(t testing.TB) {
	t.Helper()
	if err := m.down(); err != nil {
		t.Fatalf("unmount for remount: %v", err)
	}
	m.up(t)
}

// p joins names onto the mount point.
func (m *mnt) p(elem ...string) string { return filepath.Join(append([]string{m.dir}, elem...)...) }

// runCmd runs name args in dir and fails t with its output on error.
func runCmd(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The child changes directory itself (env -C), after exec: a child of
	// this process that chdirs into the mount between fork and exec would
	// deadlock, because the FUSE server answering it lives in this process
	// and cannot start threads until the exec.
	cmd := exec.CommandContext(ctx, "env", append([]string{"-C", dir, name}, args...)...)
	cmd.Dir = os.TempDir()
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "GIT_CONFIG_NOSYSTEM=1", "HOME="+os.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// entry is one file-tree entry as the manifest records it.
type entry struct {
	kind string // "d", "f", "l"
	perm fs.FileMode
	size int64
	sum  string // sha256 of a file, target of a symlink
}

func (e entry) String() string { return fmt.Sprintf("%s %v %d %s", e.kind, e.perm, e.size, e.sum) }

// manifest maps every path under root (relative, slash-separated) to its
// entry, hashing file contents; symlinks are recorded, not followed.
func manifest(t testing.TB, root string, withPerm bool) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var e entry
		if withPerm {
			e.perm = info.Mode().Perm()
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.kind = "l"
			e.sum, err = os.Readlink(p)
			if err != nil {
				return err
			}
		case info.IsDir():
			e.kind = "d"
		case info.Mode().IsRegular():
			e.kind = "f"
			e.size = info.Size()
			e.sum, err = hashFile(p)
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected mode %v", p, info.Mode())
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("manifest of %s: %v", root, err)
	}
	return out
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sameManifest fails t listing every difference between want and got.
func sameManifest(t testing.TB, what string, want, got map[string]entry) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q (%v)", p, w))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%q: want %v, got %v", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %q (%v)", p, g))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
		}
		t.Fatalf("%s: %d differences:\n%s", what, len(diffs), strings.Join(diffs, "\n"))
	}
}

// writeRandom writes n pseudo-random bytes from seed to p.
func writeRandom(t testing.TB, p string, seed uint64, n int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.NewChaCha8(seedBytes(seed))
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", p, err)
	}
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := 0; i < 8; i++ {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}
