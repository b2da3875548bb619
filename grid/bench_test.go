package grid_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds MB per CPU-second (all cores, GC included) to a benchmark:
// a figure that stays meaningful when other processes share the machine.
func reportCPU(b *testing.B, cpu time.Duration, bytesPerOp int64) {
	if cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// benchSizes are the file sizes benchmarked: 64 MiB always, 1 GiB with
// SPHERE_BENCH_LARGE=1.
func benchSizes() []struct {
	name string
	size int
} {
	out := []struct {
		name string
		size int
	}{{"64MiB", 64 << 20}}
	if os.Getenv("SPHERE_BENCH_LARGE") != "" {
		out = append(out, struct {
			name string
			size int
		}{"1GiB", 1 << 30})
	}
	return out
}

// BenchmarkUpload uploads to 10 fresh in-memory servers with the default
// parameters (3-of-10, 1 MiB segments), convergent key included.
func BenchmarkUpload(b *testing.B) {
	for _, sz := range benchSizes() {
		for _, mode := range []struct {
			name   string
			random bool
		}{{"convergent", false}, {"randomkey", true}} {
			b.Run(sz.name+"/"+mode.name, func(b *testing.B) {
				data := gridtest.Data(1, sz.size)
				b.SetBytes(int64(sz.size))
				b.ReportAllocs()
				// Warm up: grow the heap to its working size outside the
				// measurement (b.Loop resets the timer on its first call).
				warm := newClient(b, gridtest.NewMemGrid(10), caps.DefaultParams(), 0)
				if _, err := warm.Upload(context.Background(), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{RandomKey: true}); err != nil {
					b.Fatal(err)
				}
				warm = nil
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					// A fresh grid per upload; collecting the last one first
					// lets the new one reuse its memory instead of faulting
					// in fresh pages, which would measure the kernel.
					c := newClient(b, gridtest.NewMemGrid(10), caps.DefaultParams(), 0)
					runtime.GC()
					b.StartTimer()
					start := cpuTime()
					if _, err := c.Upload(context.Background(), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{RandomKey: mode.random}); err != nil {
						b.Fatal(err)
					}
					cpu += cpuTime() - start
				}
				reportCPU(b, cpu, int64(sz.size))
			})
		}
	}
}

// BenchmarkDownload streams a file from 10 in-memory servers to io.Discard.
func BenchmarkDownload(b *testing.B) {
	for _, sz := range benchSizes() {
		b.Run(sz.name, func(b *testing.B) {
			c := newClient(b, gridtest.NewMemGrid(10), caps.DefaultParams(), 0)
			data := gridtest.Data(2, sz.size)
			cp, err := c.Upload(context.Background(), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			data = nil
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				if err := c.Download(context.Background(), cp, io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime()-start, int64(sz.size))
		})
	}
}

// BenchmarkReadAt4K reads an open 64 MiB file 4 KiB at a time, as FUSE
// does: sequentially (read-ahead and the segment cache serve most reads) and
// at random offsets (nearly every read fetches and decodes a 1 MiB segment).
func BenchmarkReadAt4K(b *testing.B) {
	c := newClient(b, gridtest.NewMemGrid(10), caps.DefaultParams(), 0)
	const size = 64 << 20
	data := gridtest.Data(3, size)
	cp, err := c.Upload(context.Background(), bytes.NewReader(data), size, grid.UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"sequential", "random"} {
		b.Run(mode, func(b *testing.B) {
			f, err := c.Open(context.Background(), cp)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(buf)))
			off := int64(0)
			rng := uint64(1)
			for b.Loop() {
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if mode == "sequential" {
					off = (off + int64(len(buf))) % size
				} else {
					rng = rng*6364136223846793005 + 1442695040888963407
					off = int64(rng>>20) % (size - int64(len(buf)))
				}
			}
		})
	}
}

// BenchmarkVerify is Check with Verify over a 64 MiB file on 10 in-memory
// servers: every block of all 10 shares read and hashed (3.3× the file).
func BenchmarkVerify(b *testing.B) {
	c := newClient(b, gridtest.NewMemGrid(10), caps.DefaultParams(), 0)
	const size = 64 << 20
	cp, err := c.Upload(context.Background(), bytes.NewReader(gridtest.Data(4, size)), size, grid.UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	start := cpuTime()
	for b.Loop() {
		rep, err := c.Check(context.Background(), cp, grid.CheckOptions{Verify: true})
		if err != nil || !rep.Healthy {
			b.Fatalf("verify: %v %v", err, rep)
		}
	}
	reportCPU(b, cpuTime()-start, size)
}
