package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid"
)

// TestRenewWalksTree: renew covers the put caps file and every node of the
// drive's tree, and says how many it renewed.
func TestRenewWalksTree(t *testing.T) {
	treeHome(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	randFile(t, big, 1, 200_000)
	mustRun(t, "put", big) // caps file: 1 file
	mustRun(t, "mkdir", "-p", "sphere:/a/b")
	mustRun(t, "cp", big, "sphere:/a/b/f") // same content: convergent, but its own entry
	tiny := filepath.Join(dir, "tiny")
	randFile(t, tiny, 2, 10)
	mustRun(t, "cp", tiny, "sphere:/a/t") // a lit cap: nothing stored, still counted

	var res struct{ Caps, Renewed, Failed int }
	out := mustRun(t, "renew", "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("renew --json: %v: %q", err, out)
	}
	// caps file (1) + root, a, b, f, t (5).
	if res.Caps != 6 || res.Renewed != 6 || res.Failed != 0 {
		t.Fatalf("renew: %+v, want 6 caps, 6 renewed, 0 failed", res)
	}
}

// TestRenewalRunsOutWithServerTerm: status's "leases run out" is the term
// servers date a renewed lease with (grid.DefaultLeaseTerm), not the
// client's old 31-day request, which servers now ignore.
func TestRenewalRunsOutWithServerTerm(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := (renewRecord{Time: at}).RunsOut(), at.Add(grid.DefaultLeaseTerm); !got.Equal(want) {
		t.Fatalf("RunsOut %v, want %v (servers' term)", got, want)
	}
}
