package fusetest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sphere-grid/sphere/fs/fusefs"
)

// getxattr reads attribute name of p.
func getxattr(t testing.TB, p, name string) (string, error) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestXattrCaps checks that every file and directory shows its caps as
// user.sphere.cap and user.sphere.readcap, that listxattr names them, and
// that a file's cap changes once new contents are saved.
func TestXattrCaps(t *testing.T) {
	w := newWorld(t)
	if !w.b.caps() {
		t.Skip("backend has no caps")
	}
	m := w.mount(t, "")
	if err := os.MkdirAll(m.p("photos/2024"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeSync(m.p("photos/a.jpg"), []byte("jpeg bytes")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{m.dir, m.p("photos"), m.p("photos/2024"), m.p("photos/a.jpg")} {
		rc, err := getxattr(t, p, "user.sphere.readcap")
		if err != nil || !strings.HasPrefix(rc, "sphere:") {
			t.Fatalf("getxattr user.sphere.readcap %s = %q, %v", p, rc, err)
		}
		c, err := getxattr(t, p, "user.sphere.cap")
		if err != nil || !strings.HasPrefix(c, "sphere:") {
			t.Fatalf("getxattr user.sphere.cap %s = %q, %v", p, c, err)
		}
		buf := make([]byte, 4096)
		n, err := unix.Listxattr(p, buf)
		if err != nil || !bytes.Contains(buf[:n], []byte("user.sphere.readcap\x00")) {
			t.Fatalf("listxattr %s = %q, %v", p, buf[:n], err)
		}
	}
	if _, err := getxattr(t, m.p("photos"), "user.nope"); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("getxattr of a missing attribute: %v, want ENODATA", err)
	}
	before, _ := getxattr(t, m.p("photos/a.jpg"), "user.sphere.readcap")
	if err := writeSync(m.p("photos/a.jpg"), []byte("other jpeg bytes")); err != nil {
		t.Fatal(err)
	}
	after, _ := getxattr(t, m.p("photos/a.jpg"), "user.sphere.readcap")
	if before == after {
		t.Fatalf("a file's read cap did not change with its contents: %q", after)
	}
	// A directory's read cap stays the same across changes (it names the slot).
	d1, _ := getxattr(t, m.p("photos"), "user.sphere.readcap")
	if err := writeSync(m.p("photos/b.jpg"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if d2, _ := getxattr(t, m.p("photos"), "user.sphere.readcap"); d1 != d2 {
		t.Fatalf("a directory's read cap changed: %q -> %q", d1, d2)
	}
}

// friendSees is how long a read-cap mount may take to show an owner's
// fsynced change: the stated cache time (the read-only tree's DirTTL, 1 s
// by default, plus the kernel's entry/attribute cache, fusefs.CacheTime),
// with 8 s of room for a loaded machine. The test polls and stops as soon
// as the change shows.
const friendSees = time.Second + fusefs.CacheTime + 8*time.Second

// TestFriendReadCap mounts the read cap of a subfolder as a friend would.
func TestFriendReadCap(t *testing.T) {
	w := newWorld(t)
	if !w.b.caps() {
		t.Skip("backend has no caps")
	}
	owner := w.mount(t, "")
	for _, d := range []string{"private", "shared/sub"} {
		if err := os.MkdirAll(owner.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeSync(owner.p("private/secret"), []byte("owner only")); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 700_000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := writeSync(owner.p("shared/sub/big"), big); err != nil {
		t.Fatal(err)
	}
	if err := writeSync(owner.p("shared/note"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/big", owner.p("shared/link")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, owner.p("shared"))

	rc, err := getxattr(t, owner.p("shared"), "user.sphere.readcap")
	if err != nil {
		t.Fatalf("getxattr user.sphere.readcap: %v", err)
	}
	wc, _ := getxattr(t, owner.p("shared"), "user.sphere.cap")
	if rc == wc {
		t.Fatalf("read cap equals write cap %q", rc)
	}
	friend := w.mount(t, rc)

	// Sees the files.
	got, err := os.ReadFile(friend.p("sub/big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("friend reads sub/big: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(friend.p("link")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("friend follows the symlink: %d bytes, %v", len(got), err)
	}
	names := namesIn(t, friend.dir)
	if names != "link note sub" {
		t.Fatalf("friend lists %q", names)
	}

	// Cannot write: EROFS everywhere.
	for what, op := range map[string]func() error{
		"create":   func() error { return os.WriteFile(friend.p("new"), []byte("x"), 0o644) },
		"write":    func() error { return openWrite(friend.p("note")) },
		"truncate": func() error { return os.Truncate(friend.p("note"), 0) },
		"mkdir":    func() error { return os.Mkdir(friend.p("d"), 0o755) },
		"unlink":   func() error { return os.Remove(friend.p("note")) },
		"rmdir":    func() error { return os.Remove(friend.p("sub")) },
		"rename":   func() error { return os.Rename(friend.p("note"), friend.p("note2")) },
		"symlink":  func() error { return os.Symlink("x", friend.p("l2")) },
		"chmod":    func() error { return os.Chmod(friend.p("note"), 0o600) },
		"utimes":   func() error { return os.Chtimes(friend.p("note"), time.Now(), time.Now()) },
		"setxattr": func() error { return unix.Setxattr(friend.p("note"), "user.x", []byte("y"), 0) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("friend %s: %v, want EROFS", what, err)
		}
	}
	// Cannot reach the parent: the mount's root is the shared folder, its
	// caps are read caps, and nothing of the owner's other folders shows.
	if c, _ := getxattr(t, friend.dir, "user.sphere.cap"); strings.Contains(c, "-rw") || c == wc {
		t.Fatalf("friend's root exposes a write cap %q", c)
	}
	if r, _ := getxattr(t, friend.dir, "user.sphere.readcap"); r != rc {
		t.Fatalf("friend's root read cap %q, want %q", r, rc)
	}
	if _, err := os.Stat(filepath.Join(friend.dir, "..", "private")); err == nil {
		t.Fatalf("friend reaches the owner's private folder through ..")
	}
	_ = filepath.WalkDir(friend.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Errorf("friend walk %s: %v", p, err)
			return nil
		}
		if d.Name() == "private" || d.Name() == "secret" {
			t.Errorf("friend sees %s", p)
		}
		if c, _ := getxattr(t, p, "user.sphere.cap"); strings.Contains(c, "-rw") {
			t.Errorf("friend sees a write cap on %s", p)
		}
		return nil
	})

	// Sees the owner's fsynced change within friendSees (polled).
	if got, _ := os.ReadFile(friend.p("note")); string(got) != "v1" {
		t.Fatalf("friend reads note = %q, want v1", got)
	}
	if err := writeSync(owner.p("shared/note"), []byte("v2, longer")); err != nil {
		t.Fatal(err)
	}
	if err := writeSync(owner.p("shared/added"), []byte("new file")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(friendSees)
	start := time.Now()
	for {
		note, _ := os.ReadFile(friend.p("note"))
		added, _ := os.ReadFile(friend.p("added"))
		if string(note) == "v2, longer" && string(added) == "new file" {
			t.Logf("friend saw the change after %v", time.Since(start).Round(10*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("friend still reads note=%q added=%q %v after the owner's fsync", note, added, friendSees)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func openWrite(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// syncDir fsyncs a directory (what makes its entries durable).
func syncDir(t testing.TB, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync dir %s: %v", p, err)
	}
}

// namesIn lists a directory's names, space-separated and sorted.
func namesIn(t testing.TB, p string) string {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatalf("readdir %s: %v", p, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
