package grid_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// holderOf returns the server id holding share shnum according to rep.
func holderOf(t *testing.T, rep *grid.CheckReport, shnum int) string {
	t.Helper()
	for _, s := range rep.Shares {
		if s.Shnum == shnum {
			return s.Server
		}
	}
	t.Fatalf("share %d not in report:\n%v", shnum, rep)
	return ""
}

func TestCheckHealthy(t *testing.T) {
	c, _ := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(20, 6*testSegSize)
	cp := upload(t, c, data).(caps.CHKCap)
	for _, tc := range []struct {
		name   string
		cap    caps.Cap
		verify bool
	}{
		{"read cap", cp, false},
		{"read cap verify", cp, true},
		{"verify cap", cp.VerifyCap(), false},
		{"verify cap verify", cp.VerifyCap(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := c.Check(ctxT(t), tc.cap, grid.CheckOptions{Verify: tc.verify})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Healthy || rep.GoodShares != 10 || rep.GoodServers != 10 || len(rep.Shares) != 10 || rep.Verified != tc.verify {
				t.Fatalf("fresh upload: %+v", rep)
			}
			js, err := json.Marshal(rep)
			if err != nil {
				t.Fatalf("marshal report: %v", err)
			}
			var back grid.CheckReport
			if err := json.Unmarshal(js, &back); err != nil || back.Healthy != rep.Healthy || len(back.Shares) != 10 {
				t.Fatalf("report JSON round trip: %v %s", err, js)
			}
			if s := rep.String(); !strings.Contains(s, "healthy") || !strings.Contains(s, rep.StorageIndex) {
				t.Errorf("String() lacks health or storage index:\n%s", s)
			}
		})
	}
	t.Run("lit cap", func(t *testing.T) {
		rep, err := c.Check(ctxT(t), caps.LitCap{Data: []byte("hi")}, grid.CheckOptions{Verify: true})
		if err != nil || !rep.Healthy || !rep.Literal {
			t.Fatalf("lit check: %v %+v", err, rep)
		}
	})
	t.Run("repair with verify cap of a healthy file", func(t *testing.T) {
		// Repair by verify cap is allowed (TestRepairWithVerifyCap); a
		// healthy file needs none.
		rep, err := c.Check(ctxT(t), cp.VerifyCap(), grid.CheckOptions{Repair: true})
		if err != nil || !rep.Healthy || rep.Repair != nil {
			t.Fatalf("repair of a healthy file by verify cap: %v\n%v", err, rep)
		}
	})
}

func TestCheckVerifyRepairCorrupt(t *testing.T) {
	cases := []struct {
		name  string
		fault faultserver.Faults
		// blockOnly: the corruption is only visible when blocks are read.
		blockOnly bool
	}{
		{name: "flip every read", fault: faultserver.Faults{Flip: faultserver.FlipEvery}},
		{name: "bad spot in a block", fault: faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: caps.ShareHeaderSize + 3*1366 + 7}, blockOnly: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, faults := faultGrid(t, 10, testParams(), time.Second)
			byID := faultByID(faults)
			data := gridtest.Data(21, 8*testSegSize+3)
			cp := upload(t, c, data)
			rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			badID := holderOf(t, rep, 4)
			bad := byID[badID]
			bad.Set(tc.fault)

			// A plain check only catches what headers and trailers show.
			rep, err = c.Check(ctxT(t), cp, grid.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.blockOnly && !rep.Healthy {
				t.Errorf("plain check saw block corruption it does not read:\n%v", rep)
			}

			rep, err = c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Healthy || !slices.Equal(rep.CorruptServers, []string{badID}) || !slices.Equal(rep.MissingShares, []int{4}) {
				t.Fatalf("verify should name %s and share 4:\n%v", badID, rep)
			}
			if !strings.Contains(rep.String(), badID) {
				t.Errorf("String() does not name the corrupt server:\n%v", rep)
			}

			got, err := download(t, c, cp)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("download with one corrupt server: %v", err)
			}

			rep, err = c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true, Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Repair == nil || rep.Repair.Error != "" || len(rep.Repair.Created) != 1 || rep.Repair.Created[0].Shnum != 4 {
				t.Fatalf("repair report:\n%v", rep)
			}
			if rep.Repair.Created[0].Server == badID {
				t.Errorf("repair put the share back on the corrupting server %s", badID)
			}
			if rep.Repair.After == nil || !rep.Repair.After.Healthy {
				t.Fatalf("not healthy after repair:\n%v", rep)
			}

			// A later verify, and reads without the bad server, agree.
			rep, err = c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true})
			if err != nil || !rep.Healthy {
				t.Fatalf("verify after repair: %v\n%v", err, rep)
			}
			bad.Set(faultserver.Faults{Vanish: true})
			rep, err = c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true})
			if err != nil || !rep.Healthy {
				t.Fatalf("verify after repair without the bad server: %v\n%v", err, rep)
			}
		})
	}
}

func TestRepairMissing(t *testing.T) {
	servers := gridtest.NewMemGrid(13)
	c := newClient(t, servers[:10], testParams(), time.Second)
	data := gridtest.Data(22, 5*testSegSize+77)
	cp := upload(t, c, data)

	// Three servers are lost for good; the client learns of three new ones.
	lostIdx := []int{1, 4, 8}
	var rest []grid.Server
	for i, s := range servers {
		if !slices.Contains(lostIdx, i) {
			rest = append(rest, s)
		}
	}
	c2 := newClient(t, rest, testParams(), time.Second)
	rep, err := c2.Check(ctxT(t), cp, grid.CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || len(rep.MissingShares) != 3 || !rep.Recoverable {
		t.Fatalf("before repair:\n%v", rep)
	}
	if rep.Repair == nil || rep.Repair.Error != "" || rep.Repair.After == nil || !rep.Repair.After.Healthy {
		t.Fatalf("repair:\n%v", rep)
	}
	newIDs := map[string]bool{}
	for _, s := range servers[10:] {
		newIDs[s.ID().String()] = true
	}
	for _, s := range rep.Repair.Created {
		if !newIDs[s.Server] {
			t.Errorf("share %d went to %s, which already held a share, while empty servers were free", s.Shnum, s.Server)
		}
	}
	if rep.Repair.After.GoodServers != 10 {
		t.Errorf("after repair shares on %d servers, want 10", rep.Repair.After.GoodServers)
	}
	// Repaired shares are byte-identical, so the file reads from them alone.
	only := append([]grid.Server{}, servers[10:]...)
	only = append(only, rest[0], rest[1]) // 3 repaired + any 2 = 5 >= k
	got, err := download(t, newClient(t, only, testParams(), time.Second), cp)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download using repaired shares: %v", err)
	}
}

func TestCheckUnrecoverable(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), 200*time.Millisecond)
	cp := upload(t, c, gridtest.Data(23, 3*testSegSize))
	for _, f := range faults[:8] {
		f.Set(faultserver.Faults{Vanish: true})
	}
	rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || rep.Recoverable || len(rep.UnreachableServers) != 8 {
		t.Fatalf("report:\n%v", rep)
	}
	if rep.Repair == nil || rep.Repair.Error == "" || !strings.Contains(rep.Repair.Error, "need 3 shares") {
		t.Fatalf("repair of an unrecoverable file should fail saying why:\n%v", rep)
	}
}

func TestRenewLeases(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Second)
	cp := upload(t, c, gridtest.Data(24, 2*testSegSize))
	if err := c.RenewLeases(ctxT(t), cp); err != nil {
		t.Fatalf("RenewLeases: %v", err)
	}
	calls := int64(0)
	for _, f := range faults {
		calls += f.Calls("AddLease")
	}
	if calls != 10 {
		t.Errorf("%d AddLease calls, want 10", calls)
	}
	never := caps.CHKCap{Key: [16]byte{9}, K: 3, N: 10, Size: 1000}
	if err := c.RenewLeases(ctxT(t), never); !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("RenewLeases on a file nobody holds: %v, want ErrNotFound", err)
	}
}
