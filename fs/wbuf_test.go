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
