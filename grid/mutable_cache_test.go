package grid_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// countingServer counts ReadSlot calls, to tell whether Modify read the
// slot back.
type countingServer struct {
	grid.Server
	reads *atomic.Int64
}

func (s countingServer) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	s.reads.Add(1)
	return s.Server.ReadSlot(ctx, si)
}

// TestMutableModifyFromCache: a client's Modify after its own write builds
// on the version it published without reading it back; after another
// client wrote, the servers' compare-and-swap refuses that guess and the
// retry from a fresh read keeps both changes.
func TestMutableModifyFromCache(t *testing.T) {
	mem := gridtest.NewMemGrid(10)
	var reads atomic.Int64
	counted := make([]grid.Server, len(mem))
	for i, s := range mem {
		counted[i] = countingServer{Server: s, reads: &reads}
	}
	a := mutClient(t, counted)
	b := mutClient(t, mem)
	ctx := mutCtx(t)
	wc, err := a.CreateDir(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	add := func(c *grid.Client, i int) {
		t.Helper()
		if _, err := c.ModifyDir(ctx, wc, []caps.Change{{Name: fmt.Sprint("f", i), New: fileEntry(i)}}); err != nil {
			t.Fatalf("ModifyDir f%d: %v", i, err)
		}
	}
	add(a, 1)
	add(a, 2)
	if n := reads.Load(); n != 0 {
		t.Errorf("Modify after own writes read the slot %d times, want 0", n)
	}
	add(b, 3) // a's cached version is now stale
	add(a, 4)
	if reads.Load() == 0 {
		t.Errorf("Modify over another client's write never read the slot")
	}
	tb, v, err := b.ReadDir(ctx, wc)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3, 4} {
		if _, ok := tb.Get(fmt.Sprint("f", i)); !ok {
			t.Errorf("entry f%d lost (seq %d, %d entries)", i, v.Seq, tb.Len())
		}
	}
	// A client that just retrieved with the write cap builds on that.
	d := mutClient(t, counted)
	if _, _, err := d.Retrieve(ctx, wc); err != nil {
		t.Fatal(err)
	}
	afterRead := reads.Load()
	add(d, 5)
	if n := reads.Load() - afterRead; n != 0 {
		t.Errorf("Modify right after Retrieve read the slot %d more times, want 0", n)
	}
	tb, v, err = b.ReadDir(ctx, wc)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 5 {
		t.Errorf("directory holds %d entries, want 5", tb.Len())
	}
	// A change that conflicts only with a's stale copy (f6 is new to it)
	// is applied to the fresh version, not refused.
	add(b, 6)
	if _, err := a.ModifyDir(ctx, wc, []caps.Change{{Name: "f6", New: fileEntry(7), Prev: fileEntry(6).ReadCap}}); err != nil {
		t.Fatalf("replace f6 from a stale copy: %v", err)
	}
	tb, v, err = b.ReadDir(ctx, wc)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := tb.Get("f6"); !ok || e.ReadCap != fileEntry(7).ReadCap {
		t.Errorf("f6 = %+v, %v; want the replacement", e, ok)
	}
	// The cache serves a repeated unchanged Modify without publishing.
	before := v.Seq
	v2, err := a.ModifyDir(ctx, wc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Seq != before {
		t.Errorf("no-op Modify published seq %d, have %d", v2.Seq, before)
	}
}
