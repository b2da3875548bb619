package fusefs_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

const benchSize = 64 << 20

func benchGrid(b *testing.B) fs.Grid {
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:     gridtest.NewMemGrid(10),
		Params:      caps.DefaultParams(),
		Convergence: bytes.Repeat([]byte{2}, 32),
		LeaseSecret: [32]byte{2},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return fs.FromClient(c)
}

// BenchmarkMountWrite writes 64 MiB through the mount in 1 MiB writes,
// fsyncs and closes (memservers: measures fs + FUSE + grid client).
func BenchmarkMountWrite(b *testing.B) {
	g := benchGrid(b)
	root, err := g.CreateDir(ctxT(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	mnt, _, _ := mount(b, g, root)
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Create(filepath.Join(mnt, "f"))
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < benchSize; off += len(buf) {
			buf[0], buf[1] = byte(i), byte(off>>20)
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMountRead reads a 64 MiB file through a fresh mount each time
// (cold: no kernel page cache, no open grid file).
func BenchmarkMountRead(b *testing.B) {
	g := benchGrid(b)
	ctx := ctxT(b)
	root, err := g.CreateDir(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := fs.New(ctx, g, root, fs.Options{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	h, _ := tr.Create(ctx, "f", 0o644)
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < benchSize; off += int64(len(chunk)) {
		chunk[0] = byte(off >> 20)
		h.WriteAt(ctx, chunk, off)
	}
	if err := h.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := tr.Close(ctx); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		mnt, _, srv := mount(b, g, root)
		b.StartTimer()
		f, err := os.Open(filepath.Join(mnt, "f"))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, f, buf)
		f.Close()
		if err != nil || n != benchSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		b.StopTimer()
		srv.Unmount()
		b.StartTimer()
	}
}
