package grid_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// changingReader serves a on the first pass over the file (until the last
// byte has been read once) and b after that, as a file edited while put
// reads it.
type changingReader struct {
	a, b    []byte
	reads   atomic.Int64 // bytes served so far
	swapped atomic.Bool
}

func (r *changingReader) ReadAt(p []byte, off int64) (int, error) {
	src := r.a
	if r.swapped.Load() {
		src = r.b
	}
	n := copy(p, src[off:])
	if r.reads.Add(int64(n)) >= int64(len(r.a)) {
		r.swapped.Store(true)
	}
	return n, nil
}

// convergentSI returns the storage index and share size convergent upload
// would give data.
func convergentSI(t *testing.T, conv []byte, p caps.Params, data []byte) (caps.StorageIndex, int64) {
	t.Helper()
	h := caps.NewKeyHasher(conv, p)
	h.Write(data)
	enc, err := caps.NewEncoder(h.Key(), p, uint64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return enc.StorageIndex(), enc.Layout().ShareSize()
}

func TestUploadFileChangedBetweenPasses(t *testing.T) {
	p := testParams()
	servers := gridtest.NewMemGrid(10)
	c := newClient(t, servers, p, 10*time.Second)
	a := gridtest.Data(1, 9*testSegSize+17)
	b := bytes.Clone(a)
	b[len(b)-1] ^= 1 // one byte in the last segment
	r := &changingReader{a: a, b: b}
	cp, err := c.Upload(ctxT(t), r, int64(len(a)), grid.UploadOptions{})
	if !r.swapped.Load() {
		t.Fatal("reader never changed content; test is broken")
	}
	if !errors.Is(err, grid.ErrChanged) {
		t.Fatalf("Upload of a file changed between passes: cap %v, err %v; want ErrChanged", cp, err)
	}
	conv := bytes.Repeat([]byte{7}, 32)
	for _, content := range [][]byte{a, b} {
		si, _ := convergentSI(t, conv, p, content)
		for _, s := range servers {
			infos, err := s.ListShares(context.Background(), si)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 0 {
				t.Errorf("server %v keeps %d shares of the failed upload", s.ID(), len(infos))
			}
		}
	}
	// The file, once still, uploads and reads back.
	cp, err = c.Upload(ctxT(t), bytes.NewReader(b), int64(len(b)), grid.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := download(t, c, cp); err != nil || !bytes.Equal(got, b) {
		t.Fatal("re-upload reads back other bytes")
	}
}

func TestUploadHeldShareOfOtherContent(t *testing.T) {
	p := testParams()
	conv := bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name   string
		size   int
		seeded int // servers holding a planted share
		ok     bool
	}{
		{"one segment, all planted", 2 * testSegSize / 3, 10, false},
		{"many segments, all planted", 5*testSegSize + 3, 10, false},
		{"many segments, 3 planted", 5*testSegSize + 3, 3, true},
		{"many segments, 4 planted", 5*testSegSize + 3, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := gridtest.NewMemGrid(10)
			c := newClient(t, servers, p, 10*time.Second)
			data := gridtest.Data(uint64(tc.size), tc.size)
			si, shareSize := convergentSI(t, conv, p, data)
			// Every server gets every share number planted: whatever the
			// placement, a seeded server holds garbage of the right size.
			junk := bytes.Repeat([]byte{0xa5}, int(shareSize))
			for _, s := range servers[:tc.seeded] {
				for shnum := range p.N {
					if err := s.WriteShare(ctxT(t), si, shnum, shareSize, bytes.NewReader(junk), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			cp, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
			if !tc.ok {
				if !errors.Is(err, grid.ErrNotHappy) {
					t.Fatalf("Upload onto planted shares: cap %v err %v, want ErrNotHappy", cp, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if got, err := download(t, c, cp); err != nil || !bytes.Equal(got, data) {
				t.Fatal("read back other bytes")
			}
		})
	}
}

func TestUploadHeldSameShareCounts(t *testing.T) {
	// A second upload of the same file finds every share held, reads back
	// header and trailer, and succeeds.
	p := testParams()
	c := newClient(t, gridtest.NewMemGrid(10), p, 10*time.Second)
	for _, size := range []int{testSegSize / 2, 4*testSegSize + 9} {
		data := gridtest.Data(uint64(size), size)
		cp1 := upload(t, c, data)
		cp2 := upload(t, c, data)
		if cp1.String() != cp2.String() {
			t.Fatal("convergent uploads differ")
		}
	}
}
