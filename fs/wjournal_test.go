package fs_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fstest"
	"github.com/sphere-grid/sphere/fs/journal"
)

// TestJournalCloseDoesNotUpload: with a journal, close returns without
// uploading; the files read back at once from the tree; a batch (Sync)
// uploads them all, writing each directory once.
func TestJournalCloseDoesNotUpload(t *testing.T) {
	g := fstest.New()
	jdir := filepath.Join(t.TempDir(), "j")
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: -1, JournalDir: jdir})
	ctx := ctxT(t)
	if err := tr.Mkdir(ctx, "d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tr, "d/first", data(10, 1)) // uploads the empty file once
	up, mod := g.Uploads.Load(), g.Modifies.Load()
	for i := range 100 {
		writeFile(t, tr, fmt.Sprintf("d/f%03d", i), data(4096, byte(i)))
	}
	if n := g.Uploads.Load() - up; n != 0 {
		t.Fatalf("100 closes uploaded %d files, want 0 (journalled)", n)
	}
	if n := g.Modifies.Load() - mod; n != 0 {
		t.Fatalf("100 closes wrote directories %d times, want 0", n)
	}
	if got := readFile(t, tr, "d/f042"); !bytes.Equal(got, data(4096, 42)) {
		t.Fatal("journalled file reads back wrong")
	}
	if r, b := tr.Pending(); r == 0 || b < 100*4096 {
		t.Fatalf("Pending: %d records, %d bytes; want >0 and >= %d", r, b, 100*4096)
	}
	if err := tr.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.Uploads.Load() - up; n != 101 {
		t.Errorf("Sync uploaded %d files, want 101", n)
	}
	if n := g.Modifies.Load() - mod; n > 2 {
		t.Errorf("Sync wrote directories %d times, want at most 2 (d and the root)", n)
	}
	if r, b := tr.Pending(); r != 0 || b != 0 {
		t.Errorf("after Sync: %d records, %d bytes pending", r, b)
	}
	other, _ := newTree(t, g, root, fs.Options{FlushDelay: -1})
	for i := range 100 {
		if got := readFile(t, other, fmt.Sprintf("d/f%03d", i)); !bytes.Equal(got, data(4096, byte(i))) {
			t.Fatalf("d/f%03d on the grid differs", i)
		}
	}
}

// TestJournalReplay: a tree abandoned (as by kill -9) with files closed
// but not uploaded, then renamed, removed, chmodded, overwritten, and a
// new directory; the next tree on the journal uploads exactly that state.
func TestJournalReplay(t *testing.T) { forGrids(t, testJournalReplay) }

func testJournalReplay(t *testing.T, g fs.Grid) {
	ctx := ctxT(t)
	jdir := filepath.Join(t.TempDir(), "j")
	root, err := g.CreateDir(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := fs.New(ctx, g, root, fs.Options{FlushDelay: -1, JournalDir: jdir, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	write := func(p string, b []byte) { writeFile(t, tr, p, b); want[p] = b }
	// A big file already on the grid, then patched: the journal holds only
	// the patch (a delta over its cap), and the tree never loads it whole.
	onGrid := data(3<<20, 12)
	write("ongrid", onGrid)
	if err := tr.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_, before0, _ := journal.Stat(jdir)
	h, err := tr.OpenFile(ctx, "ongrid", 1 /* O_WRONLY */, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte("a patch in a file only on the grid")
	if _, err := h.WriteAt(ctx, patch, 1<<20+5); err != nil {
		t.Fatal(err)
	}
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	copy(onGrid[1<<20+5:], patch)
	want["ongrid"] = onGrid
	if _, after0, _ := journal.Stat(jdir); after0-before0 > 1000 {
		t.Errorf("a patch of a file on the grid added %d bytes to the journal, want a delta", after0-before0)
	}
	if got := readFile(t, tr, "ongrid"); !bytes.Equal(got, onGrid) {
		t.Fatal("patched file reads back wrong from the tree")
	}
	if err := tr.Mkdir(ctx, "new", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tr.Mkdir(ctx, "new/deeper", 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		write(fmt.Sprintf("new/deeper/f%d", i), data(1000+i, byte(i)))
	}
	write("top", data(70_000, 9))
	write("top", data(5, 10)) // overwritten after close
	if err := tr.Rename(ctx, "new/deeper/f1", "moved"); err != nil {
		t.Fatal(err)
	}
	want["moved"] = want["new/deeper/f1"]
	delete(want, "new/deeper/f1")
	if err := tr.Unlink(ctx, "new/deeper/f2"); err != nil {
		t.Fatal(err)
	}
	delete(want, "new/deeper/f2")
	if err := tr.Chmod(ctx, "new/deeper/f3", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.Symlink(ctx, "top", "link"); err != nil {
		t.Fatal(err)
	}
	// A big file patched in place twice after its close: journalled as
	// deltas over its first copy, not as three copies.
	big := data(400_000, 11)
	writeFile(t, tr, "big", big)
	_, before, _ := journal.Stat(jdir)
	for _, p := range []struct {
		off int64
		b   []byte
	}{{200_000, []byte("patched in the middle")}, {399_990, []byte("and past the old end")}, {1000, []byte("x")}} {
		h, err := tr.OpenFile(ctx, "big", 1 /* O_WRONLY */, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteAt(ctx, p.b, p.off); err != nil {
			t.Fatal(err)
		}
		if err := h.Fsync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if end := p.off + int64(len(p.b)); end > int64(len(big)) {
			big = append(big, make([]byte, end-int64(len(big)))...)
		}
		copy(big[p.off:], p.b)
	}
	want["big"] = big
	if _, after, _ := journal.Stat(jdir); after-before > 1000 {
		t.Errorf("three small patches of a journalled file added %d bytes to the journal, want deltas (< 1000)", after-before)
	}
	if err := tr.Rename(ctx, "big", "big2"); err != nil {
		t.Fatal(err)
	}
	want["big2"] = big
	delete(want, "big")
	if err := tr.SyncLocal(ctx); err != nil {
		t.Fatal(err)
	}
	tr.CrashForTest()

	// Nothing of it is on the grid yet.
	fresh, _ := newTree(t, g, root, fs.Options{FlushDelay: -1})
	if n := names(t, fresh, ""); n != "ongrid" {
		t.Fatalf("before the replay the grid's root holds %q, want only ongrid", n)
	}
	if bytes.Equal(readFile(t, fresh, "ongrid"), onGrid) {
		t.Fatal("the patch is on the grid before the replay")
	}
	if r, _, err := journal.Stat(jdir); err != nil || r == 0 {
		t.Fatalf("journal: %d records, %v", r, err)
	}

	tr2, err := fs.New(ctx, g, root, fs.Options{FlushDelay: -1, JournalDir: jdir, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close(context.Background())
	if r, b, err := journal.Stat(jdir); err != nil || r != 0 || b != 0 {
		t.Fatalf("journal after the replay: %d records, %d bytes, %v", r, b, err)
	}
	check, _ := newTree(t, g, root, fs.Options{FlushDelay: -1})
	for p, b := range want {
		if got := readFile(t, check, p); !bytes.Equal(got, b) {
			t.Errorf("%s after the replay: %d bytes, want %d", p, len(got), len(b))
		}
	}
	if n := names(t, check, "new/deeper"); n != "f0,f10,f11,f12,f13,f14,f15,f16,f17,f18,f19,f3,f4,f5,f6,f7,f8,f9" {
		t.Errorf("new/deeper after the replay: %s", n)
	}
	if in, err := check.Stat(ctx, "new/deeper/f3"); err != nil || in.Mode != 0o600 {
		t.Errorf("chmod after close: %+v %v", in, err)
	}
	if target, err := check.Readlink(ctx, "link"); err != nil || target != "top" {
		t.Errorf("symlink: %q %v", target, err)
	}
}

// TestJournalInUse: two trees cannot share one journal.
func TestJournalInUse(t *testing.T) {
	g := fstest.New()
	jdir := filepath.Join(t.TempDir(), "j")
	_, root := newTree(t, g, nil, fs.Options{FlushDelay: -1, JournalDir: jdir})
	if _, err := fs.New(ctxT(t), g, root, fs.Options{FlushDelay: -1, JournalDir: jdir, CacheDir: t.TempDir()}); err == nil {
		t.Fatal("second tree on the same journal opened")
	}
}

// BenchmarkSmallFileClose creates, writes and closes 4 KiB files in one
// directory on a real in-process grid (10 memservers, 3-of-10): "upload"
// waits for the grid at every close (no journal), "journal" stores them in
// the write-back journal and counts the upload batch (Sync) of every 1,000
// files in the time, so the two figures are the whole cost.
func BenchmarkSmallFileClose(b *testing.B) {
	for _, withJournal := range []bool{false, true} {
		name := "upload"
		if withJournal {
			name = "journal"
		}
		b.Run(name, func(b *testing.B) {
			g := realGridParams(b, caps.DefaultParams())
			opts := fs.Options{FlushDelay: -1}
			if withJournal {
				opts.JournalDir = filepath.Join(b.TempDir(), "j")
			}
			tr, _ := newTree(b, g, nil, opts)
			ctx := context.Background()
			buf := data(4096, 1)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h, err := tr.Create(ctx, fmt.Sprintf("f%07d", i), 0o644)
				if err != nil {
					b.Fatal(err)
				}
				buf[0], buf[1], buf[2] = byte(i), byte(i>>8), byte(i>>16)
				if _, err := h.WriteAt(ctx, buf, 0); err != nil {
					b.Fatal(err)
				}
				if err := h.Close(ctx); err != nil {
					b.Fatal(err)
				}
				if i%1000 == 999 {
					if err := tr.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := tr.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
