package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
)

// A local store whose index is destroyed: get still works from the other
// stores, fsck names the store, fsck --rebuild brings it back.
func TestStoreFsckRebuild(t *testing.T) {
	treeHome(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	data := randFile(t, src, 7, 400_000)
	cp := strings.TrimSpace(mustRun(t, "put", src))
	h, err := openHome()
	if err != nil {
		t.Fatal(err)
	}
	damaged := h.ServerDir(2)
	db := filepath.Join(damaged, "store.db")
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out := filepath.Join(dir, "out")
	mustRun(t, "get", cp, "-o", out)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get with one store damaged: %d bytes, %v", len(got), err)
	}

	// check names the failed store (its share is missing there).
	stdout, _, code := sph(t, "check", cp)
	if code != exitUnhealthy || !strings.Contains(stdout, damaged) || !strings.Contains(stdout, "failed") {
		t.Fatalf("check with a failed store: exit %d, want 4 and the store named\n%s", code, stdout)
	}
	stdout, _, code = sph(t, "store", "fsck")
	if code != exitUnhealthy || !strings.Contains(stdout, damaged+": DAMAGED") || !strings.Contains(stdout, "--rebuild") {
		t.Fatalf("store fsck with a damaged store: exit %d\n%s", code, stdout)
	}
	stdout = mustRun(t, "store", "fsck", "--rebuild")
	if !strings.Contains(stdout, damaged+": was damaged; index rebuilt") {
		t.Fatalf("store fsck --rebuild:\n%s", stdout)
	}
	var reps []struct {
		Dir     string
		Healthy bool
	}
	if err := json.Unmarshal([]byte(mustRun(t, "store", "fsck", "--json")), &reps); err != nil || len(reps) != 10 {
		t.Fatalf("store fsck --json: %v, %d reports", err, len(reps))
	}
	for _, r := range reps {
		if !r.Healthy {
			t.Errorf("%s not healthy after the rebuild", r.Dir)
		}
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "get", cp, "-o", out)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after the rebuild: %d bytes, %v", len(got), err)
	}
}

func TestInitQuota(t *testing.T) {
	t.Setenv("SPHERE_HOME", filepath.Join(t.TempDir(), "home"))
	mustRun(t, "init")
	h, err := openHome()
	if err != nil {
		t.Fatal(err)
	}
	if q := h.Config.Node.Quota; q < home.MinDefaultQuota || q > home.MaxDefaultQuota {
		t.Fatalf("default quota %d, want %d..%d", q, home.MinDefaultQuota, home.MaxDefaultQuota)
	}
	t.Setenv("SPHERE_HOME", filepath.Join(t.TempDir(), "home2"))
	mustFail(t, exitUsage, "init", "--quota", "lots")
	if _, err := os.Stat(filepath.Join(os.Getenv("SPHERE_HOME"), "config.json")); err == nil {
		t.Fatal("init with a bad --quota created the home")
	}
	mustRun(t, "init", "--quota", "5G")
	if h, err = openHome(); err != nil || h.Config.Node.Quota != 5<<30 {
		t.Fatalf("quota after init --quota 5G: %d, %v", h.Config.Node.Quota, err)
	}
}
