package main

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// requireFuse skips without /dev/fuse unless SPHERE_REQUIRE_FUSE=1.
func requireFuse(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
			t.Fatalf("SPHERE_REQUIRE_FUSE=1 but /dev/fuse: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// startMount runs `sphere mount args...` in the background and waits
// (bounded) until DIR, the last argument, is mounted; the returned channel
// yields the exit code.
func startMount(t *testing.T, args ...string) <-chan int {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		_, _, code := sph(t, append([]string{"mount"}, args...)...)
		done <- code
	}()
	dir := args[len(args)-1]
	for i := 0; i < 600 && !isMounted(t, dir); i++ { // up to 30 s
		select {
		case code := <-done:
			t.Fatalf("mount exited with %d before mounting", code)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !isMounted(t, dir) {
		t.Fatalf("%s not mounted after 30 s", dir)
	}
	t.Cleanup(func() {
		if isMounted(t, dir) {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return done
}

func stopMount(t *testing.T, dir string, done <-chan int) {
	t.Helper()
	mustRun(t, "unmount", dir)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("mount exited with %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("mount did not exit after unmount")
	}
}

func TestMountVerb(t *testing.T) {
	requireFuse(t)
	treeHome(t)
	mnt := t.TempDir()
	done := startMount(t, mnt)
	if err := os.MkdirAll(filepath.Join(mnt, "photos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "photos/a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := syscall.Getxattr(filepath.Join(mnt, "photos"), "user.sphere.readcap", buf)
	if err != nil {
		t.Fatal(err)
	}
	rc := string(buf[:n])
	if c, err := caps.Parse(rc); err != nil || c.Kind() != caps.KindDirRead {
		t.Fatalf("readcap xattr %q: %v", rc, err)
	}
	stopMount(t, mnt, done)
	if _, err := os.Stat(filepath.Join(mnt, "photos")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after unmount the folder still shows the drive: %v", err)
	}

	// The drive comes back (root.cap), and the read cap mounts read-only.
	done = startMount(t, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "photos/a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("after remount: %q %v", b, err)
	}
	stopMount(t, mnt, done)
	friend := t.TempDir()
	done = startMount(t, rc, friend)
	if b, err := os.ReadFile(filepath.Join(friend, "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("friend reads %q %v", b, err)
	}
	if err := os.Mkdir(filepath.Join(friend, "x"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir through a read cap: want EROFS, have %v", err)
	}
	stopMount(t, friend, done)
}

func TestMountUsage(t *testing.T) {
	treeHome(t)
	mustFail(t, exitUsage, "mount")
	mustFail(t, exitBadCap, "mount", "sphere:nonsense", t.TempDir())
	mustFail(t, exitBadCap, "mount", caps.LitCap{Data: []byte("file")}.String(), t.TempDir())
}
