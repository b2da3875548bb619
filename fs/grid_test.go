package fs_test

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fstest"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// testSegSize is small so that test files span many segments.
const testSegSize = 64 << 10

// realGrid returns the real grid client over 10 in-memory servers.
func realGrid(t testing.TB) fs.Grid {
	return realGridParams(t, caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: testSegSize})
}

// realGridParams is realGrid with other encoding parameters.
func realGridParams(t testing.TB, p caps.Params) fs.Grid {
	t.Helper()
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:     gridtest.NewMemGrid(10),
		Params:      p,
		Convergence: bytes.Repeat([]byte{9}, 32),
		LeaseSecret: [32]byte{9},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs.FromClient(c)
}

// forGrids runs test against the fake grid and the real client over
// memservers.
func forGrids(t *testing.T, test func(t *testing.T, g fs.Grid)) {
	t.Run("fake", func(t *testing.T) { test(t, fstest.New()) })
	t.Run("memgrid", func(t *testing.T) { test(t, realGrid(t)) })
}
