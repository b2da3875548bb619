package boltserver

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// seedStore returns the bytes of a small store's bbolt file.
func seedStore(tb testing.TB) []byte {
	tb.Helper()
	dir := tb.TempDir()
	s, err := Open(dir, Options{ID: "fuzz"})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i := range 20 {
		si := caps.StorageIndex{byte(i), 1}
		var l grid.Lease
		l.RenewSecret[0] = byte(i)
		if err := s.WriteShare(ctx, si, i%3, 100, bytes.NewReader(make([]byte, 100)), l); err != nil {
			tb.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(filepath.Join(dir, dbName))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestCheckPagesAcceptsGoodStore(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(p, seedStore(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkPages(p); err != nil {
		t.Fatalf("checkPages of a healthy store: %v", err)
	}
}

// FuzzOpenDamaged: whatever the bbolt file holds, Open returns a store or
// an error, and a store that opens answers calls; no panic escapes (a
// fault or endless recursion would end the fuzzer).
func FuzzOpenDamaged(f *testing.F) {
	good := seedStore(f)
	f.Add(uint32(0), byte(0xff))
	f.Add(uint32(4096+16), byte(1))
	f.Add(uint32(2*4096+30), byte(0x80))
	f.Add(uint32(len(good)-1), byte(7))
	f.Fuzz(func(t *testing.T, off uint32, x byte) {
		b := bytes.Clone(good)
		b[int(off)%len(b)] ^= x
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, dbName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			return
		}
		defer s.Close()
		ctx := context.Background()
		for i := range 20 {
			si := caps.StorageIndex{byte(i), 1}
			_, _ = s.ListShares(ctx, si)
			_, _ = s.ReadShare(ctx, si, i%3, 0, 100)
		}
		_, _ = s.Stat(ctx)
		_, _ = s.Sweep(ctx)
		_ = s.Verify(ctx)
	})
}

// A store big enough for branch pages, overflow pages (inline shares of
// tens of KiB) and buckets of every kind passes the page check and reopens.
func TestCheckPagesBigStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{ID: "big"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 800 { // a few hundred leaf pages and their branch pages
		si := caps.StorageIndex{byte(i), byte(i >> 8), 7}
		size := int64(100 + (i%50)*1000) // up to ~50 KiB: overflow pages
		var l grid.Lease
		l.RenewSecret[0], l.RenewSecret[1] = byte(i), byte(i>>8)
		if err := s.WriteShare(ctx, si, i%4, size, bytes.NewReader(make([]byte, size)), l); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := s.WriteSlot(ctx, si, grid.WriteEnabler{1}, []grid.SlotShare{{Shnum: 0, Seq: 1, Data: make([]byte, 300)}}, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	if err := checkPages(filepath.Join(dir, dbName)); err != nil {
		t.Fatalf("checkPages of a big healthy store: %v", err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
