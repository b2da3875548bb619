package gridtest

import (
	"fmt"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// NewMemGrid returns n empty in-memory servers with ids "mem-00", "mem-01", ...
func NewMemGrid(n int) []grid.Server {
	out := make([]grid.Server, n)
	for i := range out {
		out[i] = memserver.New(grid.ServerID(fmt.Sprintf("mem-%02d", i)))
	}
	return out
}

// NewFaultGrid returns n empty in-memory servers, each wrapped in a
// fault injector with no faults switched on. Both slices index the same
// servers: pass the first to code under test, break servers via the second.
func NewFaultGrid(n int) ([]grid.Server, []*faultserver.Server) {
	mem := NewMemGrid(n)
	servers := make([]grid.Server, n)
	faults := make([]*faultserver.Server, n)
	for i, m := range mem {
		faults[i] = faultserver.New(m)
		servers[i] = faults[i].AsServer()
	}
	return servers, faults
}
