package fs_test

import (
	"io"
	iofs "io/fs"
	"testing"
	"testing/fstest"

	"github.com/sphere-grid/sphere/fs"
)

// TestIOFS runs the standard io/fs conformance test on a tree view, over
// the fake and the real grid.
func TestIOFS(t *testing.T) {
	forGrids(t, func(t *testing.T, g fs.Grid) {
		tr, _ := newTree(t, g, nil, fs.Options{FlushDelay: -1})
		ctx := ctxT(t)
		for _, d := range []string{"a", "a/b", "empty"} {
			if err := tr.Mkdir(ctx, d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, tr, "top.txt", []byte("top"))
		writeFile(t, tr, "a/b/big", data(200000, 4))
		writeFile(t, tr, "a/zero", nil)
		v := tr.IOFS(ctx)
		if err := fstest.TestFS(v, "top.txt", "a/b/big", "a/zero", "empty"); err != nil {
			t.Fatal(err)
		}
		b, err := iofs.ReadFile(v, "a/b/big")
		if err != nil || len(b) != 200000 {
			t.Fatalf("ReadFile: %d bytes, %v", len(b), err)
		}
		f, err := v.Open("top.txt")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.(io.Seeker).Seek(1, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(f)
		if string(rest) != "op" {
			t.Fatalf("after seek: %q", rest)
		}
		if _, err := v.Open("../x"); err == nil {
			t.Fatal("opened an invalid path")
		}
	})
}
