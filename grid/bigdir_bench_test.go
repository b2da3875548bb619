package grid_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// BenchmarkModifyDirLarge measures adding one entry to a directory that
// already holds 10,000 entries, on 10 boltservers: in a temporary
// directory (disk) and in /dev/shm when there is one (memory, so the
// figure is CPU and bbolt copying, not fsync). Bytes per op: the
// directory table's size.
func BenchmarkModifyDirLarge(b *testing.B) {
	for _, pl := range gridtest.ScratchPlaces(b) {
		b.Run(pl.Name, func(b *testing.B) {
			c := gridtest.NewBoltClient(b, pl.Dir, 10)
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
