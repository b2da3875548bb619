package grid_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
)

// BenchmarkModifyDirLarge measures adding one entry to a directory that
// already holds 10,000 entries, on 10 boltservers: in a temporary
// directory (disk) and in /dev/shm when there is one (memory, so the
// figure is CPU and bbolt copying, not fsync). Bytes per op: the
// directory table's size.
func BenchmarkModifyDirLarge(b *testing.B) {
	places := []struct{ name, root string }{{"tmpdir", ""}}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		places = append(places, struct{ name, root string }{"shm", "/dev/shm"})
	}
	for _, pl := range places {
		b.Run(pl.name, func(b *testing.B) {
			root := b.TempDir()
			if pl.root != "" {
				d, err := os.MkdirTemp(pl.root, "sphere-bigdir-")
				if err != nil {
					b.Skip(err)
				}
				b.Cleanup(func() { os.RemoveAll(d) })
				root = d
			}
			servers := make([]grid.Server, 10)
			for i := range servers {
				s, err := boltserver.Open(fmt.Sprintf("%s/s%d", root, i), boltserver.Options{ID: grid.ServerID(fmt.Sprint("s", i))})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				servers[i] = s
			}
			c, err := grid.NewClient(grid.ClientConfig{
				Servers:     servers,
				Params:      caps.DefaultParams(),
				Convergence: bytes.Repeat([]byte{9}, 32),
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			t := caps.NewTable()
			for i := range 10000 {
				lit := caps.LitCap{Data: bytes.Repeat([]byte{byte(i)}, 50)}
				if err := t.Set(caps.Entry{Name: fmt.Sprintf("e%05d", i), ReadCap: lit.String(), Type: caps.TypeFile, Size: 50, Mode: 0o644, MTime: int64(i)}); err != nil {
					b.Fatal(err)
				}
			}
			wc, err := c.CreateDir(ctx, t)
			if err != nil {
				b.Fatal(err)
			}
			enc, err := t.Encode(&wc)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(enc)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				lit := caps.LitCap{Data: []byte(fmt.Sprint("new", i))}
				e := &caps.Entry{ReadCap: lit.String(), Type: caps.TypeFile, Size: 4, Mode: 0o644}
				if _, err := c.ModifyDir(ctx, wc, []caps.Change{{Name: fmt.Sprint("new", i), New: e}}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			got, _, err := c.ReadDir(ctx, wc)
			if err != nil {
				b.Fatal(err)
			}
			if want := 10000 + b.N; got.Len() != want {
				b.Fatalf("directory holds %d entries, want %d", got.Len(), want)
			}
		})
	}
}
