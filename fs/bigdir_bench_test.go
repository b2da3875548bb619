package fs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// BenchmarkAddEntryLargeDirBolt is BenchmarkAddEntryLargeDir on 10 bolt
// stores, as the mount's local grid: in a temporary directory (disk) and
// in /dev/shm. It reports the file's upload (flush) and the directory
// write (fsync after flush) apart.
func BenchmarkAddEntryLargeDirBolt(b *testing.B) {
	for _, pl := range gridtest.ScratchPlaces(b) {
		b.Run(pl.Name, func(b *testing.B) {
			c := gridtest.NewBoltClient(b, pl.Dir, 10)
			tr, _ := newTree(b, fs.FromClient(c), nil, fs.Options{FlushDelay: -1})
			ctx := context.Background()
			if err := tr.Mkdir(ctx, "big", 0o755); err != nil {
				b.Fatal(err)
			}
			for i := range 10000 {
				writeFile(b, tr, fmt.Sprintf("big/e%05d", i), []byte("tiny")) // literal caps: no upload
			}
			if err := tr.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			buf := data(4096, 7)
			var upload, dirs time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h, err := tr.Create(ctx, fmt.Sprintf("big/new%d", i), 0o644)
				if err != nil {
					b.Fatal(err)
				}
				buf[0], buf[1] = byte(i), byte(i>>8)
				if _, err := h.WriteAt(ctx, buf, 0); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := h.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := h.Fsync(ctx); err != nil {
					b.Fatal(err)
				}
				upload += t1.Sub(t0)
				dirs += time.Since(t1)
				h.Close(ctx)
			}
			b.ReportMetric(float64(upload.Microseconds())/1000/float64(b.N), "upload-ms/op")
			b.ReportMetric(float64(dirs.Microseconds())/1000/float64(b.N), "dir-ms/op")
		})
	}
}
