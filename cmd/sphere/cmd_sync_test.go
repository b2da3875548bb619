package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
)

// TestSyncVerb: files closed in a mount wait in the journal; `sphere sync`
// gets a running mount to upload them; `unmount --no-wait` leaves them in
// the journal, and `sphere sync` without a mount uploads them itself.
func TestSyncVerb(t *testing.T) {
	requireFuse(t)
	treeHome(t)
	// No background upload during the test: only sync and unmount upload,
	// so what --no-wait leaves behind is not raced by a batch.
	t.Setenv("SPHERE_FLUSH_DELAY", "1h")
	h, err := home.Open(os.Getenv("SPHERE_HOME"))
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	done := startMount(t, mnt)
	write := func(dir string, n int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(mnt, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(mnt, dir, fmt.Sprintf("f%02d", i)), []byte(dir), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("a", 30)
	if out := mustRun(t, "sync"); !strings.Contains(out, "on the grid") {
		t.Fatalf("sync printed %q", out)
	}
	if s := pendingLine(h); s != "" {
		t.Fatalf("after sync with the mount running: %s", s)
	}

	write("b", 20)
	pendingBefore := pendingLine(h)
	mustRun(t, "unmount", "--no-wait", mnt)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("mount exited with %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("mount did not exit after unmount --no-wait")
	}
	if pendingBefore != "" && pendingLine(h) == "" {
		t.Fatalf("unmount --no-wait uploaded everything (%s before)", pendingBefore)
	}
	t.Logf("left after unmount --no-wait: %q", pendingLine(h))
	if out := mustRun(t, "sync"); !strings.Contains(out, "on the grid") {
		t.Fatalf("sync without a mount printed %q", out)
	}
	if s := pendingLine(h); s != "" {
		t.Fatalf("after sync without a mount: %s", s)
	}
	for _, d := range []string{"a", "b"} {
		if names := lsNames(t, "sphere:/"+d); len(names) != map[string]int{"a": 30, "b": 20}[d] {
			t.Fatalf("sphere ls %s after sync: %v", d, names)
		}
	}
}
