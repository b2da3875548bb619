package grid_test

import (
	"bytes"
	"testing"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func TestNewClientRefusesWeakSecrets(t *testing.T) {
	servers := gridtest.NewMemGrid(1)
	good := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name  string
		conv  []byte
		lease [32]byte
		ok    bool
	}{
		{"both", good, [32]byte{1}, true},
		{"no convergence", nil, [32]byte{1}, false},
		{"short convergence", good[:16], [32]byte{1}, false},
		{"no lease secret", good, [32]byte{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grid.NewClient(grid.ClientConfig{Servers: servers, Convergence: tc.conv, LeaseSecret: tc.lease})
			if (err == nil) != tc.ok {
				t.Fatalf("NewClient: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
