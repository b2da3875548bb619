package web

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/web/site"
)

// storedBytes sums what the grid's servers hold.
func storedBytes(t *testing.T, c *grid.Client) int64 {
	t.Helper()
	var sum int64
	for _, s := range c.Servers() {
		st, err := s.(grid.Statter).Stat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sum += st.Used
	}
	return sum
}

// randomText is incompressible-ish content, different per seed.
func randomText(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// TestForkSharesStorage: a one-file change pushed to a fork of a large
// site stores about one file's worth of new shares. The site is 16 MiB
// here (SPHERE_FORK_MB scales it; the figure is 100 MB).
func TestForkSharesStorage(t *testing.T) {
	mb := 16
	if v, err := strconv.Atoi(os.Getenv("SPHERE_FORK_MB")); err == nil && v > 0 {
		mb = v
	}
	const fileSize = 256 << 10
	e := newEnv(t)
	files := map[string]string{"index.html": "<h1>big</h1>"}
	for i := range mb * 4 {
		files[fmt.Sprintf("assets/f%04d.bin", i)] = randomText(uint64(i), fileSize)
	}
	dir := gitRepo(t, files)
	_, wc := e.publish(dir)
	siteBytes := storedBytes(t, e.c)

	ctx := context.Background()
	addr, _ := site.Address(wc)
	fork, err := site.Fork(ctx, site.GridStore(e.c), addr)
	if err != nil {
		t.Fatal(err)
	}
	forkID, _, err := e.reg.Add(fork)
	if err != nil {
		t.Fatal(err)
	}
	afterFork := storedBytes(t, e.c)

	writeFiles(t, dir, map[string]string{"assets/f0001.bin": randomText(999, fileSize)})
	git(t, dir, "commit", "-qam", "change one file")
	stats := e.push(dir, fork)
	afterPush := storedBytes(t, e.c)

	forkCost, pushCost := afterFork-siteBytes, afterPush-afterFork
	p := e.c.Params()
	oneFile := int64(fileSize) * int64(p.N) / int64(p.K) // one file's shares
	t.Logf("site %d MiB stored as %d bytes of shares; fork stored %d; one-file push sent %d objects, stored %d (one file's shares: %d)",
		mb, siteBytes, forkCost, stats.Objects, pushCost, oneFile)
	if stats.Objects != 4 { // blob, assets tree, root tree, commit
		t.Errorf("push sent %d objects, want 4", stats.Objects)
	}
	if forkCost > 64<<10 {
		t.Errorf("the fork itself stored %d bytes", forkCost)
	}
	if pushCost > 2*oneFile || pushCost < oneFile/2 {
		t.Errorf("one-file push stored %d bytes, want about %d", pushCost, oneFile)
	}
	// The fork shows the change; the original does not.
	if _, body := e.raw("GET", e.appHost(forkID), "/assets/f0001.bin", nil, ""); body != randomText(999, fileSize) {
		t.Fatal("fork does not serve the changed file")
	}
	id, _, _ := e.reg.Add(wc)
	if _, body := e.raw("GET", e.appHost(id), "/assets/f0001.bin", nil, ""); body != randomText(1, fileSize) {
		t.Fatal("original changed")
	}
}
