package grid_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// Repair with a verify cap, as docs/spec/chk.md promises: the shares are
// rebuilt from ciphertext, byte for byte as uploaded, without the key.
func TestRepairWithVerifyCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		corrupt bool // one surviving server also serves flipped bits
	}{
		{"one segment", testSegSize / 2, false},
		{"several segments, short last", 5*testSegSize + 77, false},
		{"several segments, a corrupt survivor", 6*testSegSize + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers, faults := gridtest.NewFaultGrid(13)
			c := newClient(t, servers[:10], testParams(), time.Second)
			data := gridtest.Data(uint64(tc.size), tc.size)
			rc := upload(t, c, data).(caps.CHKCap)
			vc := rc.VerifyCap()

			lostIdx := []int{1, 4, 8}
			var rest []grid.Server
			for i, s := range servers {
				if !slices.Contains(lostIdx, i) {
					rest = append(rest, s)
				}
			}
			if tc.corrupt {
				faults[0].Set(faultserver.Faults{Flip: faultserver.FlipEvery})
			}
			// A client without the key: another convergence secret, and
			// only the verify cap.
			c2, err := grid.NewClient(grid.ClientConfig{
				Servers: rest, Params: testParams(), RequestTimeout: time.Second, Logger: quietLogger(),
				Convergence: bytes.Repeat([]byte{99}, 32), LeaseSecret: [32]byte{99},
			})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := c2.Check(ctxT(t), vc, grid.CheckOptions{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			wantMissing := 3
			if tc.corrupt {
				wantMissing = 4
			}
			if rep.Healthy || len(rep.MissingShares) != wantMissing {
				t.Fatalf("before repair, want %d missing:\n%v", wantMissing, rep)
			}
			if rep.Repair == nil || rep.Repair.Error != "" || rep.Repair.After == nil || !rep.Repair.After.Healthy {
				t.Fatalf("repair with a verify cap:\n%v", rep)
			}
			if tc.corrupt {
				faults[0].Set(faultserver.Faults{})
			}
			// Every block hashes right, and the repaired shares alone (with
			// k-3 others) give the file back to the read cap's holder.
			rep, err = c2.Check(ctxT(t), vc, grid.CheckOptions{Verify: true})
			if err != nil || rep.GoodShares != 10 {
				t.Fatalf("verify after repair: %v\n%v", err, rep)
			}
			repaired := append([]grid.Server(nil), servers[10:]...)
			got, err := download(t, newClient(t, repaired, testParams(), time.Second), rc)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("download from the repaired shares alone: %v", err)
			}
		})
	}
}
