package fs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fstest"
)

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newTree opens a tree over g at root (a new root dir when nil).
func newTree(t testing.TB, g fs.Grid, root caps.Cap, opts fs.Options) (*fs.FS, caps.Cap) {
	t.Helper()
	ctx := ctxT(t)
	if root == nil {
		var err error
		if root, err = g.CreateDir(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	tr, err := fs.New(ctx, g, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close(context.Background()) })
	return tr, root
}

func writeFile(t testing.TB, tr *fs.FS, p string, data []byte) {
	t.Helper()
	ctx := ctxT(t)
	h, err := tr.Create(ctx, p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, tr *fs.FS, p string) []byte {
	t.Helper()
	ctx := ctxT(t)
	h, err := tr.Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	var buf bytes.Buffer
	b := make([]byte, 7919) // odd size, to cross segment-like boundaries
	for off := int64(0); ; {
		n, err := h.ReadAt(ctx, b, off)
		buf.Write(b[:n])
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func names(t testing.TB, tr *fs.FS, p string) string {
	t.Helper()
	infos, err := tr.ReadDir(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, in := range infos {
		s = append(s, in.Name)
	}
	return strings.Join(s, ",")
}

func data(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func TestTreeBasics(t *testing.T) { forGrids(t, testTreeBasics) }

func testTreeBasics(t *testing.T, g fs.Grid) {
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	if err := tr.Mkdir(ctx, "a", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tr.Mkdir(ctx, "a/b", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := tr.Mkdir(ctx, "a", 0o755); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("mkdir twice: want ErrExist, have %v", err)
	}
	big := data(300000, 1)
	writeFile(t, tr, "a/b/big", big)
	writeFile(t, tr, "one", []byte("x"))
	writeFile(t, tr, "empty", nil)
	if err := tr.Symlink(ctx, "a/b/big", "link"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tr, "a/b/big"); !bytes.Equal(got, big) {
		t.Fatalf("big: read %d bytes, differ", len(got))
	}
	if got := names(t, tr, ""); got != "a,empty,link,one" {
		t.Fatalf("root: %s", got)
	}
	if tgt, err := tr.Readlink(ctx, "link"); err != nil || tgt != "a/b/big" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	in, err := tr.Stat(ctx, "a/b")
	if err != nil || in.Type != fs.TypeDir || in.Mode != 0o700 {
		t.Fatalf("stat a/b: %+v %v", in, err)
	}
	if _, err := tr.Stat(ctx, "one/x"); !errors.Is(err, fs.ErrNotDir) {
		t.Fatalf("stat through a file: want ErrNotDir, have %v", err)
	}
	if _, err := tr.Stat(ctx, "nope"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat missing: want ErrNotExist, have %v", err)
	}
	if err := tr.Rmdir(ctx, "a"); !errors.Is(err, fs.ErrNotEmpty) {
		t.Fatalf("rmdir non-empty: want ErrNotEmpty, have %v", err)
	}
	// rename within and across directories, over an existing file
	if err := tr.Rename(ctx, "one", "a/b/one"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Rename(ctx, "a/b/one", "empty"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tr, "empty"); string(got) != "x" {
		t.Fatalf("renamed over: %q", got)
	}
	if err := tr.Rename(ctx, "a", "a/b/c"); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("rename into itself: want ErrInvalid, have %v", err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := tr.Utimens(ctx, "empty", mt); err != nil {
		t.Fatal(err)
	}
	if err := tr.Chmod(ctx, "empty", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.Unlink(ctx, "link"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Unlink(ctx, "a"); !errors.Is(err, fs.ErrIsDir) {
		t.Fatalf("unlink dir: want ErrIsDir, have %v", err)
	}
	if err := tr.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A fresh tree over the same root sees everything.
	tr2, _ := newTree(t, g, root, fs.Options{})
	if got := names(t, tr2, ""); got != "a,empty" {
		t.Fatalf("reopened root: %s", got)
	}
	if got := readFile(t, tr2, "a/b/big"); !bytes.Equal(got, big) {
		t.Fatal("reopened big differs")
	}
	in, err = tr2.Stat(ctx, "empty")
	if err != nil || !in.Mtime.Equal(mt) || in.Mode != 0o600 || in.Size != 1 {
		t.Fatalf("reopened metadata: %+v %v", in, err)
	}
	if err := tr.Rmdir(ctx, "a/b/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rmdir missing: %v", err)
	}
}

func TestHandles(t *testing.T) { forGrids(t, testHandles) }

func testHandles(t *testing.T, g fs.Grid) {
	tr, _ := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	writeFile(t, tr, "f", []byte("hello world"))
	// two handles share state
	w, err := tr.OpenFile(ctx, "f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tr.Open(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(ctx, []byte("WORLD!"), 6); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	n, err := r.ReadAt(ctx, b, 0)
	if err != io.EOF || string(b[:n]) != "hello WORLD!" {
		t.Fatalf("read through 2nd handle: %q %v", b[:n], err)
	}
	if _, err := r.WriteAt(ctx, []byte("x"), 0); err == nil {
		t.Fatal("write through read-only handle succeeded")
	}
	if err := w.Truncate(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if in := w.Stat(); in.Size != 5 {
		t.Fatalf("size after truncate: %d", in.Size)
	}
	if err := w.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	r.Close(ctx)
	if got := readFile(t, tr, "f"); string(got) != "hello" {
		t.Fatalf("after truncate: %q", got)
	}
	// O_EXCL and truncate-on-open
	if _, err := tr.OpenFile(ctx, "f", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL: want ErrExist, have %v", err)
	}
	h, err := tr.OpenFile(ctx, "f", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Close(ctx)
	if got := readFile(t, tr, "f"); len(got) != 0 {
		t.Fatalf("O_TRUNC left %q", got)
	}
	// unlink while open: the handle keeps working, the name is gone
	writeFile(t, tr, "tmp", []byte("abc"))
	h, err = tr.OpenFile(ctx, "tmp", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Unlink(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("d"), 3); err != nil {
		t.Fatal(err)
	}
	n, _ = h.ReadAt(ctx, b, 0)
	if string(b[:n]) != "abcd" {
		t.Fatalf("unlinked read: %q", b[:n])
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Stat(ctx, "tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unlinked file came back: %v", err)
	}
}

// An upload failure must reach close and fsync, and the data must survive
// for a later Sync.
func TestUploadFailureIsReported(t *testing.T) {
	g := fstest.New()
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	h, err := tr.Create(ctx, "f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("precious"), 0); err != nil {
		t.Fatal(err)
	}
	g.FailUploads.Store(true)
	if err := h.Fsync(ctx); !errors.Is(err, fstest.ErrInjected) {
		t.Fatalf("fsync: want injected error, have %v", err)
	}
	if err := h.Close(ctx); !errors.Is(err, fstest.ErrInjected) {
		t.Fatalf("close: want injected error, have %v", err)
	}
	g.FailUploads.Store(false)
	g.FailModify.Store(true)
	if err := tr.Sync(ctx); !errors.Is(err, fstest.ErrInjected) {
		t.Fatalf("sync with failing dir writes: want injected error, have %v", err)
	}
	g.FailModify.Store(false)
	if err := tr.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tr2, _ := newTree(t, g, root, fs.Options{})
	if got := readFile(t, tr2, "f"); string(got) != "precious" {
		t.Fatalf("after retry: %q", got)
	}
}

// A file whose save failed at close is saved later by the background
// flush, without anyone calling Sync.
func TestFailedCloseIsRetried(t *testing.T) {
	g := fstest.New()
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: 10 * time.Millisecond})
	ctx := ctxT(t)
	h, err := tr.Create(ctx, "f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h.WriteAt(ctx, []byte("kept"), 0)
	g.FailUploads.Store(true)
	if err := h.Close(ctx); !errors.Is(err, fstest.ErrInjected) {
		t.Fatalf("close: want injected error, have %v", err)
	}
	g.FailUploads.Store(false)
	for i := 0; ; i++ { // bounded: 10 s
		ents, err := g.ReadDir(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := ents["f"]; ok && e.Size == 4 {
			break
		}
		if i > 1000 {
			t.Fatal("the failed save was never retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tr2, _ := newTree(t, g, root, fs.Options{})
	if got := readFile(t, tr2, "f"); string(got) != "kept" {
		t.Fatalf("retried save: %q", got)
	}
}

// Many creates become few directory writes.
func TestDirectoryWritesAreBatched(t *testing.T) {
	g := fstest.New()
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	for i := range 200 {
		writeFile(t, tr, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), data(100, byte(i)))
	}
	before := g.Modifies.Load()
	if err := tr.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.Modifies.Load() - before; n != 1 {
		t.Fatalf("200 creates: want 1 directory write, have %d", n)
	}
	tr2, _ := newTree(t, g, root, fs.Options{})
	infos, err := tr2.ReadDir(ctx, "")
	if err != nil || len(infos) != 200 {
		t.Fatalf("reopened: %d entries, %v", len(infos), err)
	}
}

// The debounced background flush writes directories without an fsync.
func TestBackgroundFlush(t *testing.T) {
	g := fstest.New()
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: 20 * time.Millisecond})
	writeFile(t, tr, "f", []byte("bg"))
	ctx := ctxT(t)
	for i := 0; i < 500; i++ { // bounded wait, up to 10 s
		ents, err := g.ReadDir(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ents["f"]; ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("background flush never wrote the directory")
}

func TestReadOnlyTree(t *testing.T) { forGrids(t, testReadOnlyTree) }

func testReadOnlyTree(t *testing.T, g fs.Grid) {
	owner, _ := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	if err := owner.Mkdir(ctx, "shared", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, owner, "shared/a", []byte("A"))
	writeFile(t, owner, "secret", []byte("S"))
	if err := owner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_, rc, err := owner.Caps(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if g.Writable(rc) {
		t.Fatal("read cap is writable")
	}
	friend, _ := newTree(t, g, rc, fs.Options{DirTTL: 10 * time.Millisecond})
	if !friend.ReadOnly() {
		t.Fatal("tree over a read cap is not read-only")
	}
	if got := names(t, friend, ""); got != "a" {
		t.Fatalf("friend sees %q", got)
	}
	for name, err := range map[string]error{
		"create":  func() error { _, err := friend.Create(ctx, "new", 0o644); return err }(),
		"openrw":  func() error { _, err := friend.OpenFile(ctx, "a", os.O_RDWR, 0); return err }(),
		"mkdir":   friend.Mkdir(ctx, "d", 0o755),
		"unlink":  friend.Unlink(ctx, "a"),
		"rename":  friend.Rename(ctx, "a", "b"),
		"chmod":   friend.Chmod(ctx, "a", 0o600),
		"symlink": friend.Symlink(ctx, "x", "l"),
	} {
		if !errors.Is(err, fs.ErrReadOnly) || fs.ToErrno(err) != 30 /* EROFS */ {
			t.Errorf("%s through a read cap: want ErrReadOnly, have %v", name, err)
		}
	}
	// the friend sees the owner's fsynced change once the TTL passes
	writeFile(t, owner, "shared/b", []byte("B"))
	if err := owner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if names(t, friend, "") == "a,b" {
			break
		}
		if i > 500 {
			t.Fatal("friend never saw the new file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := readFile(t, friend, "b"); string(got) != "B" {
		t.Fatalf("friend reads %q", got)
	}
	if _, err := fs.New(ctx, g, fstest.Cap{}, fs.Options{}); err == nil {
		t.Fatal("New accepted a non-directory cap")
	}
}

// Two trees over one directory: changes to different names merge; a
// collision on one name keeps both versions.
func TestConcurrentWriters(t *testing.T) { forGrids(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T, g fs.Grid) {
	a, root := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	b, _ := newTree(t, g, root, fs.Options{FlushDelay: -1})
	ctx := ctxT(t)
	writeFile(t, a, "from-a", []byte("a"))
	writeFile(t, b, "from-b", []byte("b"))
	writeFile(t, a, "same", []byte("version a"))
	writeFile(t, b, "same", []byte("version b"))
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := newTree(t, g, root, fs.Options{})
	infos, err := c.ReadDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var conflictCopy string
	for _, in := range infos {
		got = append(got, in.Name)
		if strings.HasPrefix(in.Name, "same.conflict-") {
			conflictCopy = in.Name
		}
	}
	if len(infos) != 4 || conflictCopy == "" {
		t.Fatalf("after two writers: %v", got)
	}
	if string(readFile(t, c, "same")) != "version a" || string(readFile(t, c, conflictCopy)) != "version b" {
		t.Fatal("conflict versions wrong")
	}
}

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{os.ErrNotExist, 2},
		{fs.ErrReadOnly, 30},
		{fs.ErrNotEmpty, 39},
		{fs.ErrExist, 17},
		{context.Canceled, 4},
		{errors.New("grid on fire"), 5},
	} {
		if got := fs.ToErrno(tc.err); int(got) != tc.want {
			t.Errorf("ToErrno(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
