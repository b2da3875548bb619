package grid_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// testSegSize keeps test files small while still spanning many segments.
const testSegSize = 4096

func testParams() caps.Params {
	return caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: testSegSize}
}

// quietLogger drops the warnings that fault tests provoke on purpose.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newClient(t testing.TB, servers []grid.Server, p caps.Params, timeout time.Duration) *grid.Client {
	t.Helper()
	c, err := grid.NewClient(grid.ClientConfig{
		Servers:        servers,
		Params:         p,
		Convergence:    bytes.Repeat([]byte{7}, 32),
		LeaseSecret:    [32]byte{7},
		RequestTimeout: timeout,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// faultGrid returns a client over n fault-injecting in-memory servers.
func faultGrid(t testing.TB, n int, p caps.Params, timeout time.Duration) (*grid.Client, []*faultserver.Server) {
	t.Helper()
	servers, faults := gridtest.NewFaultGrid(n)
	return newClient(t, servers, p, timeout), faults
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func upload(t testing.TB, c *grid.Client, data []byte) caps.Cap {
	t.Helper()
	cp, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
	if err != nil {
		t.Fatalf("Upload(%d bytes): %v", len(data), err)
	}
	return cp
}

func download(t testing.TB, c *grid.Client, cp caps.Cap) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	err := c.Download(ctxT(t), cp, &buf, nil)
	return buf.Bytes(), err
}

// faultByID maps server ids to their fault injectors.
func faultByID(faults []*faultserver.Server) map[string]*faultserver.Server {
	m := make(map[string]*faultserver.Server, len(faults))
	for _, f := range faults {
		m[f.ID().String()] = f
	}
	return m
}
