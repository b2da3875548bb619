package gridtest_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// broken is a memserver with one deliberate contract violation.
type broken struct {
	*memserver.Server
	bug string
}

func (b *broken) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	got, err := b.Server.ReadShare(ctx, si, shnum, off, length)
	if b.bug == "missingIsEmpty" && err != nil {
		return nil, nil
	}
	return got, err
}

func (b *broken) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	l, err := b.Server.ListShares(ctx, si)
	if b.bug == "unsorted" {
		slices.Reverse(l)
	}
	return l, err
}

func (b *broken) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	if b.bug == "keepsShort" {
		data, _ := io.ReadAll(io.LimitReader(r, size))
		return b.Server.WriteShare(context.Background(), si, shnum, int64(len(data)), strings.NewReader(string(data)), lease)
	}
	return b.Server.WriteShare(ctx, si, shnum, size, r, lease)
}

func (b *broken) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) error {
	switch b.bug {
	case "ignoresEnabler":
		we = gridtest.Enabler("fixed")
	case "partialSlot":
		for _, w := range writes { // one share at a time: not atomic
			if err := b.Server.WriteSlot(ctx, si, we, []grid.SlotShare{w}, lease); err != nil {
				return err
			}
		}
		return nil
	}
	return b.Server.WriteSlot(ctx, si, we, writes, lease)
}

// TestBroken runs the suite on a broken server; TestSuiteCatchesBugs runs
// it in a subprocess and expects failures.
func TestBroken(t *testing.T) {
	bug := os.Getenv("GRIDTEST_BROKEN")
	if bug == "" {
		t.Skip("run by TestSuiteCatchesBugs")
	}
	gridtest.TestServer(t, func(t *testing.T) grid.Server { return &broken{Server: memserver.New("broken"), bug: bug} })
}

// The suite is only worth something if it fails on wrong servers.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv("GRIDTEST_BROKEN") != "" {
		return
	}
	for bug, wantFail := range map[string]string{
		"missingIsEmpty": "ReadShareMissing",
		"unsorted":       "ListSharesSorted",
		"keepsShort":     "WriteShareShortStoresNothing",
		"ignoresEnabler": "SlotWriteEnablerRecordedAndEnforced",
		"partialSlot":    "SlotMultiShareAtomic",
	} {
		t.Run(bug, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBroken$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "GRIDTEST_BROKEN="+bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a server with bug %q", bug)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBroken/"+wantFail+" ") {
				t.Fatalf("bug %q did not fail case %s:\n%s", bug, wantFail, out)
			}
		})
	}
}

func TestMemGrid(t *testing.T) {
	g := gridtest.NewMemGrid(4)
	seen := map[grid.ServerID]bool{}
	for _, s := range g {
		seen[s.ID()] = true
	}
	if len(seen) != 4 {
		t.Fatalf("NewMemGrid(4) ids = %v, want 4 distinct", seen)
	}
	si := gridtest.SI()
	if err := g[0].WriteShare(t.Context(), si, 0, 1, strings.NewReader("x"), gridtest.NewLease("a", gridtest.NewClock(timeZero()).Now())); err != nil {
		t.Fatal(err)
	}
	if l, _ := g[1].ListShares(t.Context(), si); len(l) != 0 {
		t.Fatal("servers of a mem grid share storage")
	}
}

func TestHelpers(t *testing.T) {
	if a, b := gridtest.SI(), gridtest.SI(); a == b {
		t.Fatal("SI() repeated")
	}
	a, b := gridtest.Data(1, 100), gridtest.Data(1, 100)
	if string(a) != string(b) || string(a) == string(gridtest.Data(2, 100)) {
		t.Fatal("Data is not deterministic per seed")
	}
	if gridtest.NewLease("a", timeZero()).CancelSecret == gridtest.NewLease("a", timeZero()).RenewSecret {
		t.Fatal("renew and cancel secrets equal")
	}
}

func timeZero() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
