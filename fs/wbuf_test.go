package fs

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestWbufModel drives the write-back buffer across the memory/file limit
// with random writes and truncates and compares it with a plain slice.
func TestWbufModel(t *testing.T) {
	for seed := uint64(1); seed <= 2; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		b := newWbuf(t.TempDir())
		var model []byte
		for op := 0; op < 150; op++ {
			switch r.IntN(3) {
			case 0, 1:
				off := r.Int64N(memLimit * 3 / 2)
				p := make([]byte, r.IntN(64<<10))
				for i := range p {
					p[i] = byte(r.Uint32())
				}
				if _, err := b.WriteAt(p, off); err != nil {
					t.Fatalf("seed %d op %d: %v", seed, op, err)
				}
				if end := off + int64(len(p)); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], p)
			case 2:
				size := r.Int64N(memLimit * 3 / 2)
				if err := b.Truncate(size); err != nil {
					t.Fatalf("seed %d op %d: %v", seed, op, err)
				}
				if size < int64(len(model)) {
					model = model[:size]
				} else {
					model = append(model, make([]byte, size-int64(len(model)))...)
				}
			}
			got := make([]byte, len(model)+10)
			n, err := b.ReadAt(got, 0)
			if err != io.EOF || !bytes.Equal(got[:n], model) {
				t.Fatalf("seed %d op %d: content differs (have %d bytes, want %d; err %v; in file: %v)", seed, op, n, len(model), err, b.file != nil)
			}
		}
		b.Close()
	}
}

// TestLazyWbufModel: a lazy copy over a saved file behaves like a plain
// copy of it under random writes, truncates and reads at random offsets.
func TestLazyWbufModel(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		base := make([]byte, 3*memLimit+12345)
		for i := range base {
			base[i] = byte(r.Uint32())
		}
		released := false
		b, err := newLazyWbuf(t.TempDir(), bytes.NewReader(base), int64(len(base)), func() { released = true })
		if err != nil {
			t.Fatal(err)
		}
		model := bytes.Clone(base)
		for op := 0; op < 300; op++ {
			switch r.IntN(5) {
			case 0, 1, 2:
				off := r.Int64N(int64(len(base)) * 5 / 4)
				p := make([]byte, r.IntN(40<<10)+1)
				for i := range p {
					p[i] = byte(r.Uint32())
				}
				if _, err := b.WriteAt(p, off); err != nil {
					t.Fatalf("seed %d op %d: %v", seed, op, err)
				}
				if end := off + int64(len(p)); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], p)
			case 3:
				size := r.Int64N(int64(len(base)) * 5 / 4)
				if err := b.Truncate(size); err != nil {
					t.Fatal(err)
				}
				if size < int64(len(model)) {
					model = model[:size]
				} else {
					model = append(model, make([]byte, size-int64(len(model)))...)
				}
			case 4:
				off := r.Int64N(int64(len(model)) + 1)
				p := make([]byte, r.IntN(100<<10))
				n, err := b.ReadAt(p, off)
				want := model[min(off, int64(len(model))):]
				want = want[:min(len(want), len(p))]
				if n != len(want) || !bytes.Equal(p[:n], want) || (n < len(p) && err != io.EOF) {
					t.Fatalf("seed %d op %d: ReadAt(%d, %d) = %d, %v; want %d bytes", seed, op, len(p), off, n, err, len(want))
				}
			}
			if op%25 == 0 || op == 299 {
				got := make([]byte, len(model)+10)
				n, err := b.ReadAt(got, 0)
				if err != io.EOF || !bytes.Equal(got[:n], model) {
					t.Fatalf("seed %d op %d: content differs (have %d bytes, want %d; err %v)", seed, op, n, len(model), err)
				}
			}
		}
		b.Close()
		if !released {
			t.Fatal("Close did not release the saved file")
		}
	}
}
