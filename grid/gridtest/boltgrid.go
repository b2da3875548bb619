package gridtest

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
)

// Place is a directory a benchmark runs its stores in.
type Place struct{ Name, Dir string }

// ScratchPlaces returns a temporary directory on the disk ("tmpdir") and,
// when the machine has one, in /dev/shm ("shm"), each removed at the end
// of tb: disk figures include fsync, shm figures are CPU and copying.
func ScratchPlaces(tb testing.TB) []Place {
	tb.Helper()
	places := []Place{{"tmpdir", tb.TempDir()}}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "sphere-bench-"); err == nil {
			tb.Cleanup(func() { os.RemoveAll(d) })
			places = append(places, Place{"shm", d})
		}
	}
	return places
}

// NewBoltClient opens n boltservers under root (closed at the end of tb)
// and returns a grid client over them with default parameters and a fixed
// convergence secret.
func NewBoltClient(tb testing.TB, root string, n int) *grid.Client {
	tb.Helper()
	servers := make([]grid.Server, n)
	for i := range servers {
		s, err := boltserver.Open(fmt.Sprintf("%s/s%d", root, i), boltserver.Options{ID: grid.ServerID(fmt.Sprint("s", i))})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		servers[i] = s
	}
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:     servers,
		Params:      caps.DefaultParams(),
		Convergence: bytes.Repeat([]byte{9}, 32),
		LeaseSecret: [32]byte{9},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
