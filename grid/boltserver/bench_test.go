package boltserver_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
				for b.Loop() {
					got, err := s.ReadShare(b.Context(), si, 0, off, benchRead)
					if err != nil || len(got) != benchRead {
						b.Fatalf("read at %d: %d bytes, %v", off, len(got), err)
					}
					off = (off + benchRead) % benchShare
				}
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
			for i := 0; b.Loop(); i++ {
				key := fmt.Appendf(nil, "w%d", i%2) // overwrite, so the file stays two shares big
				err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read/"+m.name, func(b *testing.B) {
			b.SetBytes(benchRead)
			off := 0
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
			for i := uint64(1); b.Loop(); i++ {
				if err := s.WriteSlot(b.Context(), si, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: i, Data: data}}, gridtest.NewLease("x", time.Now().Add(time.Hour))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
