package grid_test

import (
	"slices"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// TestPermutedRingVector pins the ring order of docs/spec/placement.md:
// ring key = SHA-256("sphere-ring-v1" || si || id), ascending. The keys
// were computed independently (Python hashlib).
func TestPermutedRingVector(t *testing.T) {
	var si caps.StorageIndex
	for i := range si {
		si[i] = byte(i)
	}
	servers := gridtest.NewMemGrid(5)
	var got []string
	for _, s := range grid.PermutedRing(si, servers) {
		got = append(got, string(s.ID()))
	}
	want := []string{"mem-00", "mem-02", "mem-03", "mem-01", "mem-04"}
	if !slices.Equal(got, want) {
		t.Fatalf("ring order %v, want %v", got, want)
	}
	// The input order does not matter.
	slices.Reverse(servers)
	got = got[:0]
	for _, s := range grid.PermutedRing(si, servers) {
		got = append(got, string(s.ID()))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ring order of reversed input %v, want %v", got, want)
	}
}

// TestPermutedRingSpreads: different files start at different servers.
func TestPermutedRingSpreads(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	first := map[grid.ServerID]int{}
	for range 200 {
		first[grid.PermutedRing(gridtest.SI(), servers)[0].ID()]++
	}
	if len(first) < 8 {
		t.Errorf("200 files started at only %d of 10 servers: %v", len(first), first)
	}
}
