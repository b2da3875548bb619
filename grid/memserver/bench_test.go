package memserver_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

func BenchmarkWriteShare(b *testing.B) {
	const size = 8 << 20
	data := gridtest.Data(1, size)
	s := memserver.New("bench")
	l := gridtest.NewLease("x", time.Now().Add(time.Hour))
	b.SetBytes(size)
	for b.Loop() {
		si := gridtest.SI()
		if err := s.WriteShare(b.Context(), si, 0, size, bytes.NewReader(data), l); err != nil {
			b.Fatal(err)
		}
		if err := s.CancelLease(b.Context(), si, l.CancelSecret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadShare(b *testing.B) {
	const size, read = 64 << 20, 1 << 20
	s := memserver.New("bench")
	si := gridtest.SI()
	if err := s.WriteShare(b.Context(), si, 0, size, bytes.NewReader(gridtest.Data(2, size)), gridtest.NewLease("x", time.Now().Add(time.Hour))); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(read)
	off := int64(0)
	for b.Loop() {
		if got, err := s.ReadShare(b.Context(), si, 0, off, read); err != nil || len(got) != read {
			b.Fatal(err)
		}
		off = (off + read) % size
	}
}
