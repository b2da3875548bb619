package memserver_test

import (
	"bytes"
	"syscall"
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
	stop := cpuMeter(b, size)
	for b.Loop() {
		si := gridtest.SI()
		if err := s.WriteShare(b.Context(), si, 0, size, bytes.NewReader(data), l); err != nil {
			b.Fatal(err)
		}
		if err := s.CancelLease(b.Context(), si, l.CancelSecret); err != nil {
			b.Fatal(err)
		}
	}
	stop()
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
	stop := cpuMeter(b, read)
	for b.Loop() {
		if got, err := s.ReadShare(b.Context(), si, 0, off, read); err != nil || len(got) != read {
			b.Fatal(err)
		}
		off = (off + read) % size
	}
	stop()
}

// cpuMeter reports bytes per CPU-second of the process ("MB/cpu-s"), which
// a loaded shared machine disturbs far less than wall-clock MB/s.
func cpuMeter(b *testing.B, bytesPerOp int64) func() {
	start := cpuTime()
	return func() {
		if d := cpuTime() - start; d > 0 {
			b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
