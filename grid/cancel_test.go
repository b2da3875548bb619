package grid_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// TestCancelLeasesKeepsOtherLeases: cancelling one secret's leases keeps
// shares another secret renewed, and deletes those only it held.
func TestCancelLeasesKeepsOtherLeases(t *testing.T) {
	var servers []grid.Server
	for i := range 10 {
		servers = append(servers, memserver.New(grid.ServerID(fmt.Sprintf("s%02d", i))))
	}
	client := func(secret byte) *grid.Client {
		c, err := grid.NewClient(grid.ClientConfig{Servers: servers, Params: testParams(),
			Convergence: bytes.Repeat([]byte{7}, 32), LeaseSecret: [32]byte{secret}, Logger: quietLogger(),
			RequestTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldC, newC := client(1), client(2)
	data := gridtest.Data(31, 3*testSegSize)
	kept := upload(t, oldC, data)
	dropped := upload(t, oldC, gridtest.Data(32, 2*testSegSize))
	dir, err := oldC.CreateDir(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := newC.RenewLeases(ctxT(t), kept); err != nil {
		t.Fatal(err)
	}
	for _, cp := range []caps.Cap{kept, dropped, dir} {
		n, failed, err := oldC.CancelLeases(ctxT(t), cp)
		if err != nil || failed != 0 || n != 10 {
			t.Fatalf("cancel %s: %d cancelled, %d failed, %v; want 10, 0, nil", cp.Kind(), n, failed, err)
		}
	}
	if got, err := download(t, newC, kept); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file the new secret renewed: %v", err)
	}
	if _, err := download(t, newC, dropped); err == nil {
		t.Fatal("file only the old secret leased is still readable")
	}
	if _, _, err := newC.ReadDir(ctxT(t), dir); err == nil {
		t.Fatal("directory only the old secret leased is still readable")
	}
	// Again: nothing left to cancel is not an error.
	if n, failed, err := oldC.CancelLeases(ctxT(t), kept); err != nil || n != 0 || failed != 0 {
		t.Fatalf("second cancel: %d, %d, %v", n, failed, err)
	}
	if _, _, err := oldC.CancelLeases(ctxT(t), caps.LitCap{}); err != nil {
		t.Fatalf("lit cap: %v", err)
	}
}
