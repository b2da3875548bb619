package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayers keeps the import arrows of DESIGN.md true: a lower layer never
// imports a higher one.
func TestLayers(t *testing.T) {
	const mod = "github.com/sphere-grid/sphere/"
	allowed := map[string][]string{
		"caps":   {"caps"},
		"ledger": {"ledger", "caps"},
		"grid":   {"grid", "ledger", "caps"},
		"fs":     {"fs", "grid", "ledger", "caps"},
		"web":    {"web", "fs", "grid", "ledger", "caps"},
	}
	for layer, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "./../../"+layer+"/...").CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "matched no packages") {
				continue
			}
			t.Fatalf("go list %s: %v\n%s", layer, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			rest, found := strings.CutPrefix(dep, mod)
			if !found {
				continue
			}
			top, _, _ := strings.Cut(rest, "/")
			legal := false
			for _, a := range ok {
				legal = legal || top == a
			}
			if !legal {
				t.Errorf("layer %s imports %s, which DESIGN.md forbids", layer, dep)
			}
		}
	}
}
