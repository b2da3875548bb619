// Package gridtest holds what tests of grid.Server users and implementers
// share: the conformance suite every server passes (TestServer, TestQuota,
// TestSweep, TestExpiringSoon, TestFailed, TestLeaseFlood) and ready-made
// in-process grids, plain or fault-injecting.
package gridtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

var siCounter atomic.Uint64

// SI returns a fresh storage index, distinct from every other SI returned in
// this process.
func SI() caps.StorageIndex {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], siCounter.Add(1))
	h := sha256.Sum256(append([]byte("gridtest-si"), b[:]...))
	var si caps.StorageIndex
	copy(si[:], h[:])
	return si
}

// Data returns n deterministic pseudo-random bytes derived from seed.
func Data(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	return b
}

// NewLease returns a lease whose secrets derive from name, expiring at exp.
func NewLease(name string, exp time.Time) grid.Lease {
	return grid.Lease{
		RenewSecret:  sha256.Sum256([]byte("renew:" + name)),
		CancelSecret: sha256.Sum256([]byte("cancel:" + name)),
		Expires:      exp,
	}
}

// Enabler returns a write enabler derived from name.
func Enabler(name string) grid.WriteEnabler { return sha256.Sum256([]byte("we:" + name)) }

func farLease(name string) grid.Lease {
	return NewLease(name, time.Now().Add(31*24*time.Hour))
}

// countingReader counts the bytes read through it and hands out at most
// chunk bytes per Read, so servers see a stream, not one slice.
type countingReader struct {
	r     io.Reader
	chunk int
	n     atomic.Int64
	after func(total int64) // called after each Read, if set
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n, err := c.r.Read(p)
	t := c.n.Add(int64(n))
	if c.after != nil {
		c.after(t)
	}
	return n, err
}

// failReader fails the test if anyone reads it.
type failReader struct{ t *testing.T }

func (f failReader) Read(p []byte) (int, error) {
	f.t.Errorf("server read the data of a write it should have refused first")
	return 0, errors.New("must not be read")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func writeShare(t *testing.T, s grid.Server, si caps.StorageIndex, shnum int, data []byte, lease grid.Lease) {
	t.Helper()
	if err := s.WriteShare(ctxT(t), si, shnum, int64(len(data)), bytes.NewReader(data), lease); err != nil {
		t.Fatalf("WriteShare(%d, %d bytes): %v", shnum, len(data), err)
	}
}

// wantNoShare checks that nothing is stored for share shnum of si.
func wantNoShare(t *testing.T, s grid.Server, si caps.StorageIndex, shnum int) {
	t.Helper()
	ctx := ctxT(t)
	if b, err := s.ReadShare(ctx, si, shnum, 0, 1); !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("ReadShare of a share that must not exist: got %d bytes, err %v; want ErrNotFound", len(b), err)
	}
	l, err := s.ListShares(ctx, si)
	if err != nil {
		t.Fatalf("ListShares: %v", err)
	}
	for _, sh := range l {
		if sh.Shnum == shnum {
			t.Errorf("ListShares lists share %d that must not exist", shnum)
		}
	}
}

func readAll(t *testing.T, s grid.Server, si caps.StorageIndex, shnum int, size int64) []byte {
	t.Helper()
	b, err := s.ReadShare(ctxT(t), si, shnum, 0, size)
	if err != nil {
		t.Fatalf("ReadShare(%d, 0, %d): %v", shnum, size, err)
	}
	return b
}

func readSlot(t *testing.T, s grid.Server, si caps.StorageIndex) []grid.SlotShare {
	t.Helper()
	got, err := s.ReadSlot(ctxT(t), si)
	if err != nil {
		t.Fatalf("ReadSlot: %v", err)
	}
	return got
}

func equalSlot(a, b []grid.SlotShare) bool {
	return slices.EqualFunc(a, b, func(x, y grid.SlotShare) bool {
		return x.Shnum == y.Shnum && x.Seq == y.Seq && bytes.Equal(x.Data, y.Data)
	})
}

func fmtSlot(ss []grid.SlotShare) string {
	var b bytes.Buffer
	for _, s := range ss {
		fmt.Fprintf(&b, "{sh%d seq%d %dB %x} ", s.Shnum, s.Seq, len(s.Data), sha256.Sum256(s.Data))
	}
	return b.String()
}

// concurrently runs fn(i) for i in [0,n) on n goroutines and waits.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}
