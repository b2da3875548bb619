package boltserver_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

const (
	benchShare = 64 << 20 // one share of a large file
	benchRead  = 1 << 20  // one read of a download
)

// cpuMeter starts measuring the process's CPU time; the returned func
// reports bytes per CPU-second ("MB/cpu-s"). On a shared, loaded machine
// wall-clock MB/s falls with the load while this stays near the code's own
// cost. It does not count time waiting for the disk (fsync), so for disk
// writes only MB/s tells the truth.
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

// benchMedia returns a fresh directory on tmpfs (/dev/shm, if present) and
// on the disk under the test temp dir.
func benchMedia(b *testing.B) []struct{ name, dir string } {
	out := []struct{ name, dir string }{}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sphere-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		out = append(out, struct{ name, dir string }{"tmpfs", d})
	}
	return append(out, struct{ name, dir string }{"disk", b.TempDir()})
}

func BenchmarkWriteShare(b *testing.B) {
	data := gridtest.Data(1, benchShare)
	for _, m := range benchMedia(b) {
		b.Run(m.name, func(b *testing.B) {
			s, err := boltserver.Open(filepath.Join(m.dir, "ws"), boltserver.Options{ID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			l := gridtest.NewLease("x", time.Now().Add(time.Hour))
			b.SetBytes(benchShare)
			stop := cpuMeter(b, benchShare)
			for b.Loop() {
				si := gridtest.SI()
				if err := s.WriteShare(b.Context(), si, 0, benchShare, bytes.NewReader(data), l); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.CancelLease(b.Context(), si, l.CancelSecret); err != nil { // keep the medium from filling
					b.Fatal(err)
				}
				b.StartTimer()
			}
			stop()
		})
	}
}

func BenchmarkReadShare(b *testing.B) {
	data := gridtest.Data(2, benchShare)
	for _, m := range benchMedia(b) {
		for _, fc := range []struct {
			name  string
			files int
		}{{"fdcache", 0}, {"nocache", -1}} {
			b.Run(m.name+"/"+fc.name, func(b *testing.B) {
				s, err := boltserver.Open(filepath.Join(m.dir, "rs-"+fc.name), boltserver.Options{ID: "bench", OpenFiles: fc.files})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				si := gridtest.SI()
				if err := s.WriteShare(b.Context(), si, 0, benchShare, bytes.NewReader(data), gridtest.NewLease("x", time.Now().Add(time.Hour))); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(benchRead)
				off := int64(0)
				stop := cpuMeter(b, benchRead)
				for b.Loop() {
					got, err := s.ReadShare(b.Context(), si, 0, off, benchRead)
					if err != nil || len(got) != benchRead {
						b.Fatalf("read at %d: %d bytes, %v", off, len(got), err)
					}
					off = (off + benchRead) % benchShare
				}
				stop()
			})
		}
	}
}

// BenchmarkBoltOnly measures the alternative design: share data as bbolt
// values instead of files. Same sizes as WriteShare and ReadShare.
func BenchmarkBoltOnly(b *testing.B) {
	data := gridtest.Data(3, benchShare)
	for _, m := range benchMedia(b) {
		db, err := bolt.Open(filepath.Join(m.dir, "only.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		bucket := []byte("data")
		err = db.Update(func(tx *bolt.Tx) error { // the share the reads use
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return bk.Put([]byte("w0"), data)
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("write/"+m.name, func(b *testing.B) {
			b.SetBytes(benchShare)
			stop := cpuMeter(b, benchShare)
			for i := 0; b.Loop(); i++ {
				key := fmt.Appendf(nil, "w%d", i%2) // overwrite, so the file stays two shares big
				err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
				if err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
		b.Run("read/"+m.name, func(b *testing.B) {
			b.SetBytes(benchRead)
			off := 0
			stop := cpuMeter(b, benchRead)
			for b.Loop() {
				var got []byte
				err := db.View(func(tx *bolt.Tx) error {
					v := tx.Bucket(bucket).Get([]byte("w0"))
					got = bytes.Clone(v[off : off+benchRead])
					return nil
				})
				if err != nil || len(got) != benchRead {
					b.Fatal(err)
				}
				off = (off + benchRead) % benchShare
			}
			stop()
		})
	}
}

// Small metadata operations: one bbolt commit each.
func BenchmarkWriteSlot(b *testing.B) {
	for _, m := range benchMedia(b) {
		b.Run(m.name, func(b *testing.B) {
			s, err := boltserver.Open(filepath.Join(m.dir, "slot"), boltserver.Options{ID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := gridtest.Data(4, 4096)
			si := gridtest.SI()
			b.SetBytes(int64(len(data)))
			stop := cpuMeter(b, int64(len(data)))
			for i := uint64(1); b.Loop(); i++ {
				if err := s.WriteSlot(b.Context(), si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: i, Data: data}}, gridtest.NewLease("x", time.Now().Add(time.Hour))); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
	}
}

// BenchmarkLimit is what the medium allows with no store at all: one
// buffered write of a 64 MiB file plus fsync, and 1 MiB preads of it into a
// reused buffer. WriteShare and ReadShare are compared against it.
func BenchmarkLimit(b *testing.B) {
	data := gridtest.Data(5, benchShare)
	for _, m := range benchMedia(b) {
		path := filepath.Join(m.dir, "limit")
		b.Run("write/"+m.name, func(b *testing.B) {
			b.SetBytes(benchShare)
			stop := cpuMeter(b, benchShare)
			for b.Loop() {
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < len(data); off += 1 << 20 {
					if _, err := f.Write(data[off : off+1<<20]); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
			stop()
		})
		b.Run("pread/"+m.name, func(b *testing.B) {
			if _, err := os.Stat(path); err != nil { // write/ was filtered out
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, benchRead)
			b.SetBytes(benchRead)
			off := int64(0)
			stop := cpuMeter(b, benchRead)
			for b.Loop() {
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off = (off + benchRead) % benchShare
			}
			stop()
		})
	}
}

// BenchmarkUploadSmall is grid.Client.Upload of a 4 KiB file (distinct
// content each time, convergent key) to 10 bolt servers with the default
// 3-of-10 parameters: what each close of a small file in the FUSE mount
// costs. docs/BENCHMARKS.md ("small files") has the figures.
func BenchmarkUploadSmall(b *testing.B) {
	const size = 4 << 10
	for _, m := range benchMedia(b) {
		b.Run(m.name, func(b *testing.B) {
			servers := make([]grid.Server, 10)
			for i := range servers {
				s, err := boltserver.Open(filepath.Join(m.dir, fmt.Sprintf("up%d", i)), boltserver.Options{ID: grid.ServerID(fmt.Sprintf("bench-%d", i))})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				servers[i] = s
			}
			c, err := grid.NewClient(grid.ClientConfig{
				Servers:     servers,
				Convergence: bytes.Repeat([]byte{7}, 32),
				LeaseSecret: [32]byte{7},
				Logger:      slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			var seed atomic.Uint64
			upload := func(b *testing.B) {
				data := gridtest.Data(seed.Add(1), size)
				if _, err := c.Upload(b.Context(), bytes.NewReader(data), size, grid.UploadOptions{}); err != nil {
					b.Error(err)
				}
			}
			b.Run("serial", func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				stop := cpuMeter(b, size)
				for b.Loop() {
					upload(b)
				}
				stop()
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			})
			// 16 uploads at a time, as a write-back cache flushing many
			// files would do: each server's writes share commits.
			b.Run("parallel16", func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				stop := cpuMeter(b, size)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						upload(b)
					}
				})
				stop()
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			})
		})
	}
}
