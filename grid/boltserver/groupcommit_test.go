package boltserver

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Concurrent updates, some failing: each caller gets its own function's
// outcome, and exactly the successful ones are committed.
func TestGroupCommit(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("b")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		t.Fatal(err)
	}
	g := &groupCommit{db: db}
	errOdd := errors.New("refused")
	const writers = 200
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucket).Put(fmt.Appendf(nil, "k%03d", i), []byte{byte(i)}); err != nil {
					return err
				}
				if i%7 == 3 {
					return errOdd
				}
				return nil
			})
		}()
	}
	wg.Wait()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i := range writers {
			v := b.Get(fmt.Appendf(nil, "k%03d", i))
			if i%7 == 3 {
				if !errors.Is(errs[i], errOdd) || v != nil {
					t.Errorf("writer %d: err %v, value %v; want its own error and nothing stored", i, errs[i], v)
				}
				continue
			}
			if errs[i] != nil || len(v) != 1 || v[0] != byte(i) {
				t.Errorf("writer %d: err %v, value %v; want stored", i, errs[i], v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running || len(g.queue) != 0 {
		t.Fatalf("after all updates: running=%v queue=%d", g.running, len(g.queue))
	}
}
