package fs_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"testing"

	"github.com/sphere-grid/sphere/fs"
)

// TestRandomOpsModel runs seeded random file operations through the tree
// and a plain in-memory model, comparing them after every Sync and after
// every reopen of the tree. A failure prints its seed.
func TestRandomOpsModel(t *testing.T) {
	forGrids(t, func(t *testing.T, g fs.Grid) {
		ops := 5000 // the fake is fast: the full run
		if _, ok := g.(interface{ IsFake() }); !ok {
			ops = 400 // the real grid checks the adapter; ~5 s
		}
		for _, seed := range []uint64{1, 2} {
			t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, g, seed, ops) })
		}
	})
}

func runModel(t *testing.T, g fs.Grid, seed uint64, ops int) {
	ctx := ctxT(t)
	r := rand.New(rand.NewPCG(seed, 99))
	tr, root := newTree(t, g, nil, fs.Options{FlushDelay: -1})
	dirs := []string{"", "d1", "d2", "d1/sub"}
	for _, d := range dirs[1:] {
		if err := tr.Mkdir(ctx, d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model := map[string][]byte{}
	randPath := func() string {
		return fmt.Sprintf("%s/f%d", dirs[r.IntN(len(dirs))], r.IntN(6))
	}
	randData := func(max int) []byte {
		b := make([]byte, r.IntN(max)+1)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	fail := func(op int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d op %d: %s", seed, op, fmt.Sprintf(format, args...))
	}
	check := func(op int) {
		t.Helper()
		var got []string
		for _, d := range dirs {
			infos, err := tr.ReadDir(ctx, d)
			if err != nil {
				fail(op, "readdir %q: %v", d, err)
			}
			for _, in := range infos {
				if in.Type == fs.TypeFile {
					got = append(got, d+"/"+in.Name)
				}
			}
		}
		var want []string
		for p := range model {
			want = append(want, p)
		}
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			fail(op, "names: have %v, want %v", got, want)
		}
		for p, w := range model {
			h, err := tr.Open(ctx, p)
			if err != nil {
				fail(op, "open %s: %v", p, err)
			}
			b := make([]byte, len(w)+5)
			n, _ := h.ReadAt(ctx, b, 0)
			h.Close(ctx)
			if !bytes.Equal(b[:n], w) {
				fail(op, "%s: content differs (have %d bytes, want %d)", p, n, len(w))
			}
		}
	}
	for op := 0; op < ops; op++ {
		p := randPath()
		switch k := r.IntN(10); {
		case k < 4: // pwrite (creating if needed)
			h, err := tr.OpenFile(ctx, p, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				fail(op, "open %s: %v", p, err)
			}
			cur := model[p]
			off := int64(r.IntN(len(cur) + 1000))
			d := randData(3000)
			if _, err := h.WriteAt(ctx, d, off); err != nil {
				fail(op, "write: %v", err)
			}
			if end := off + int64(len(d)); end > int64(len(cur)) {
				cur = append(cur, make([]byte, end-int64(len(cur)))...)
			}
			copy(cur[off:], d)
			model[p] = cur
			if r.IntN(4) == 0 {
				if err := h.Fsync(ctx); err != nil {
					fail(op, "fsync: %v", err)
				}
			}
			if err := h.Close(ctx); err != nil {
				fail(op, "close: %v", err)
			}
		case k < 5: // truncate
			if _, ok := model[p]; !ok {
				continue
			}
			size := int64(r.IntN(4000))
			if err := tr.Truncate(ctx, p, size); err != nil {
				fail(op, "truncate: %v", err)
			}
			cur := model[p]
			if size < int64(len(cur)) {
				cur = cur[:size]
			} else {
				cur = append(cur, make([]byte, size-int64(len(cur)))...)
			}
			model[p] = cur
		case k < 7: // rename over whatever is there
			if _, ok := model[p]; !ok {
				continue
			}
			q := randPath()
			if err := tr.Rename(ctx, p, q); err != nil {
				fail(op, "rename %s %s: %v", p, q, err)
			}
			if p != q {
				model[q] = model[p]
				delete(model, p)
			}
		case k < 8: // unlink
			_, ok := model[p]
			err := tr.Unlink(ctx, p)
			if ok != (err == nil) {
				fail(op, "unlink %s: exists %v, err %v", p, ok, err)
			}
			delete(model, p)
		case k < 9:
			if err := tr.Sync(ctx); err != nil {
				fail(op, "sync: %v", err)
			}
			check(op)
		default: // reopen the tree ("remount")
			if err := tr.Close(ctx); err != nil {
				fail(op, "close tree: %v", err)
			}
			var err error
			if tr, err = fs.New(ctx, g, root, fs.Options{FlushDelay: -1, CacheDir: t.TempDir()}); err != nil {
				fail(op, "reopen: %v", err)
			}
			check(op)
		}
	}
	tr.Close(ctx)
}
