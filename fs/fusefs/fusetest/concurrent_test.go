package fusetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriters has several writers create, rewrite, rename and
// remove their own files in the same two directories at once (directory
// edits from many goroutines meet in one table), then checks every file
// through the mount and again after a remount.
func TestConcurrentWriters(t *testing.T) {
	w := newWorld(t)
	m := w.mount(t, "")
	dirs := []string{"shared-a", "shared-b"}
	for _, d := range dirs {
		if err := os.Mkdir(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const writers, ops = 4, 150
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	models := make([]map[string][]byte, writers)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for wi := 0; wi < writers; wi++ {
		models[wi] = map[string][]byte{}
		wg.Add(1)
		go func(wi int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(wi)))
			model := models[wi]
			name := func() string {
				return fmt.Sprintf("%s/w%d-%d", dirs[rng.IntN(len(dirs))], wi, rng.IntN(6))
			}
			for i := 0; i < ops; i++ {
				p := name()
				switch r := rng.IntN(10); {
				case r < 6:
					data := make([]byte, rng.IntN(40_000))
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					var err error
					if rng.IntN(3) == 0 {
						err = writeSync(m.p(p), data)
					} else {
						err = os.WriteFile(m.p(p), data, 0o644)
					}
					if err != nil {
						errs <- fmt.Errorf("writer %d op %d: write %s: %w", wi, i, p, err)
						return
					}
					model[p] = data
				case r < 8:
					if _, ok := model[p]; !ok {
						continue
					}
					dst := name()
					if err := os.Rename(m.p(p), m.p(dst)); err != nil {
						errs <- fmt.Errorf("writer %d op %d: rename %s %s: %w", wi, i, p, dst, err)
						return
					}
					data := model[p]
					delete(model, p)
					model[dst] = data
				default:
					if _, ok := model[p]; !ok {
						continue
					}
					if err := os.Remove(m.p(p)); err != nil {
						errs <- fmt.Errorf("writer %d op %d: remove %s: %w", wi, i, p, err)
						return
					}
					delete(model, p)
				}
			}
		}(wi)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("seed %d: %v", seed, err)
	}
	check := func(why string) {
		t.Helper()
		want := map[string][]byte{}
		for _, model := range models {
			for p, data := range model {
				want[p] = data
			}
		}
		n := 0
		for _, d := range dirs {
			ents, err := os.ReadDir(m.p(d))
			if err != nil {
				t.Fatalf("%s: readdir %s: %v", why, d, err)
			}
			for _, e := range ents {
				p := d + "/" + e.Name()
				data, ok := want[p]
				if !ok {
					t.Fatalf("seed %d, %s: extra file %s", seed, why, p)
				}
				got, err := os.ReadFile(m.p(p))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("seed %d, %s: %s: %v %s", seed, why, p, err, diffBytes(data, got))
				}
				n++
			}
		}
		if n != len(want) {
			t.Fatalf("seed %d, %s: %d files listed, model has %d", seed, why, n, len(want))
		}
	}
	check("through the mount")
	m.remount(t)
	check("after remount")
}
