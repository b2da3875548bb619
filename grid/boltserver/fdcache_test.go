package boltserver

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestFDCache(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, 5)
	for i := range paths {
		paths[i] = filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(paths[i], []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := newFDCache(2)
	read := func(e *fdEntry) byte {
		t.Helper()
		var b [1]byte
		if _, err := e.f.ReadAt(b[:], 0); err != nil {
			t.Fatalf("read %s: %v", e.path, err)
		}
		return b[0]
	}
	held, err := c.get(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	// Push paths[0] out of the cache while it is in use: still readable.
	for _, p := range paths[1:] {
		e, err := c.get(p)
		if err != nil {
			t.Fatal(err)
		}
		c.put(e)
	}
	if len(c.m) != 2 || c.lru.Len() != 2 {
		t.Fatalf("cache holds %d/%d files, bound 2", len(c.m), c.lru.Len())
	}
	if read(held) != 0 {
		t.Fatal("wrong content")
	}
	c.put(held)
	if _, err := held.f.Stat(); err == nil {
		t.Fatal("evicted file still open after its last put")
	}
	// Forget while in use, then replace the file: the user keeps the old
	// file, the next get sees the new one.
	e, _ := c.get(paths[4])
	c.forget(paths[4])
	if err := os.WriteFile(paths[4]+".new", []byte{44}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(paths[4]+".new", paths[4]); err != nil {
		t.Fatal(err)
	}
	if read(e) != 4 {
		t.Fatal("forgotten file changed under its user")
	}
	c.put(e)
	e2, _ := c.get(paths[4])
	if read(e2) != 44 {
		t.Fatal("get after forget returned the old file")
	}
	c.put(e2)
	// Concurrent use is safe (run with -race) and leaks nothing.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := paths[(w+i)%len(paths)]
				if i%17 == 0 {
					c.forget(p)
					continue
				}
				e, err := c.get(p)
				if err != nil {
					t.Error(err)
					return
				}
				c.put(e)
			}
		})
	}
	wg.Wait()
	c.close()
	if len(c.m) != 0 || c.lru.Len() != 0 {
		t.Fatalf("close left %d files", len(c.m))
	}
	// Disabled cache: every get opens, every put closes.
	d := newFDCache(0)
	e3, err := d.get(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	d.put(e3)
	if _, err := e3.f.Stat(); err == nil {
		t.Fatal("uncached file still open after put")
	}
}
