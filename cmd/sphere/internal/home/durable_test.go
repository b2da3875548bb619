package home

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recordSyncs replaces syncFile for the test and returns what was synced.
func recordSyncs(t *testing.T) func() []string {
	var mu sync.Mutex
	var names []string
	old := syncFile
	syncFile = func(f *os.File, name string) error {
		mu.Lock()
		names = append(names, name)
		mu.Unlock()
		return f.Sync()
	}
	t.Cleanup(func() { syncFile = old })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}
}

func TestInitSyncsConfigAndSecrets(t *testing.T) {
	synced := recordSyncs(t)
	dir := filepath.Join(t.TempDir(), "home")
	h, err := Init(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitNode(h); err != nil {
		t.Fatal(err)
	}
	got := synced()
	for _, want := range []string{
		h.Path("config.json"), h.Path("secrets", "convergence"), h.Path("secrets", "lease"),
		h.Path("secrets", "grid.key"), dir, h.Path("secrets"),
	} {
		if !slices.Contains(got, want) {
			t.Errorf("%s was not fsynced (synced: %v)", want, got)
		}
	}
	// Files land whole, with no temporary left beside them.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in the home", e.Name())
		}
	}
	st, err := os.Stat(h.Path("secrets", "lease"))
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("lease secret: %v %v", st, err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
}
