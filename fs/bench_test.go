package fs_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/sphere-grid/sphere/caps"

	"github.com/sphere-grid/sphere/fs"
)

const benchFileSize = 16 << 20

// BenchmarkSequentialWrite writes a 16 MiB file in 1 MiB writes through
// the tree API and closes it (upload to 10 memservers, 3-of-10).
func BenchmarkSequentialWrite(b *testing.B) {
	g := realGridParams(b, caps.DefaultParams())
	tr, _ := newTree(b, g, nil, fs.Options{FlushDelay: -1})
	ctx := context.Background()
	buf := data(1<<20, 3)
	b.SetBytes(benchFileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := tr.Create(ctx, fmt.Sprintf("f%d", i), 0o644)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < benchFileSize; off += int64(len(buf)) {
			buf[0] = byte(i) // distinct content per file: no convergent dedup
			if _, err := h.WriteAt(ctx, buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSequentialRead reads a 16 MiB file in 128 KiB reads (the
// kernel's FUSE read size) through a fresh tree each time (cold cache).
func BenchmarkSequentialRead(b *testing.B) {
	g := realGridParams(b, caps.DefaultParams())
	tr, root := newTree(b, g, nil, fs.Options{FlushDelay: -1})
	writeFile(b, tr, "f", data(benchFileSize, 5))
	if err := tr.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	buf := make([]byte, 128<<10)
	b.SetBytes(benchFileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tr2, _ := newTree(b, g, root, fs.Options{})
		b.StartTimer()
		h, err := tr2.Open(ctx, "f")
		if err != nil {
			b.Fatal(err)
		}
		var total int64
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := h.ReadAt(ctx, buf, off)
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if total != benchFileSize {
			b.Fatalf("read %d bytes", total)
		}
		h.Close(ctx)
	}
}

// BenchmarkAddEntryLargeDir measures adding one file to a directory that
// already holds 10,000 entries, durably (create, write 4 KiB, fsync).
func BenchmarkAddEntryLargeDir(b *testing.B) {
	g := realGridParams(b, caps.DefaultParams())
	tr, _ := newTree(b, g, nil, fs.Options{FlushDelay: -1})
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := tr.Create(ctx, fmt.Sprintf("big/new%d", i), 0o644)
		if err != nil {
			b.Fatal(err)
		}
		buf[0] = byte(i)
		buf[1] = byte(i >> 8)
		if _, err := h.WriteAt(ctx, buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := h.Fsync(ctx); err != nil {
			b.Fatal(err)
		}
		h.Close(ctx)
	}
}

// BenchmarkCreateSmallFiles creates 4 KiB files in one directory, the way
// cp -r does (no fsync; directories flushed once at the end).
func BenchmarkCreateSmallFiles(b *testing.B) {
	g := realGridParams(b, caps.DefaultParams())
	tr, _ := newTree(b, g, nil, fs.Options{})
	ctx := context.Background()
	buf := data(4096, 9)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf[0], buf[1], buf[2] = byte(i), byte(i>>8), byte(i>>16)
		writeFile(b, tr, fmt.Sprintf("f%07d", i), buf)
	}
	if err := tr.Sync(ctx); err != nil {
		b.Fatal(err)
	}
}
