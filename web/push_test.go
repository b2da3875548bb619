package web

import (
	"context"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/web/gitremote"
	"github.com/sphere-grid/sphere/web/site"
)

func TestPushRules(t *testing.T) {
	e := newEnv(t)
	dir := gitRepo(t, map[string]string{"index.html": "one"})
	_, wc := e.publish(dir)
	ctx := context.Background()
	repo, err := gitremote.OpenRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	st := site.GridStore(e.c)
	push := func(u gitremote.RefUpdate) error {
		t.Helper()
		res, _, err := gitremote.Push(ctx, repo, st, wc, []gitremote.RefUpdate{u})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Err
	}
	writeFiles(t, dir, map[string]string{"index.html": "two"})
	git(t, dir, "commit", "-qam", "two")
	if err := push(gitremote.RefUpdate{Src: "refs/heads/main", Dst: "refs/heads/main"}); err != nil {
		t.Fatalf("fast-forward: %v", err)
	}
	// A diverging branch is refused unless forced.
	git(t, dir, "checkout", "-q", "-b", "alt", "main~1")
	writeFiles(t, dir, map[string]string{"index.html": "alt"})
	git(t, dir, "commit", "-qam", "alt")
	if err := push(gitremote.RefUpdate{Src: "refs/heads/alt", Dst: "refs/heads/main"}); err == nil || !strings.Contains(err.Error(), "non-fast-forward") {
		t.Fatalf("non-fast-forward push: %v", err)
	}
	if err := push(gitremote.RefUpdate{Src: "refs/heads/alt", Dst: "refs/heads/main", Force: true}); err != nil {
		t.Fatalf("forced push: %v", err)
	}
	// A second branch, then its deletion.
	if err := push(gitremote.RefUpdate{Src: "refs/heads/alt", Dst: "refs/heads/alt"}); err != nil {
		t.Fatal(err)
	}
	if err := push(gitremote.RefUpdate{Src: "", Dst: "refs/heads/alt"}); err != nil {
		t.Fatal(err)
	}
	rd := site.NewReader(ctx, st)
	rd.RefsTTL = 0
	addr, _ := site.Address(wc)
	snap, err := rd.Snapshot(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Refs.Refs["refs/heads/alt"]; ok || snap.Refs.Head != "refs/heads/main" {
		t.Fatalf("refs after delete: %+v", snap.Refs)
	}
	// A read-only address cannot push.
	if _, _, err := gitremote.Push(ctx, repo, st, addr, []gitremote.RefUpdate{{Src: "refs/heads/main", Dst: "refs/heads/main"}}); err == nil {
		t.Fatal("push with the address (a read cap) succeeded")
	}
	// Fetch into an empty repository brings every object, checked.
	empty := gitRepo(t, map[string]string{"x": "x"})
	r2, _ := gitremote.OpenRepo(ctx, empty)
	n, err := gitremote.Fetch(ctx, r2, st, addr)
	if err != nil || n < 6 {
		t.Fatalf("fetch: %d objects, %v", n, err)
	}
	if got := git(t, empty, "cat-file", "-p", snap.Refs.Refs["refs/heads/main"].String()+":index.html"); got != "alt" {
		t.Fatalf("fetched content %q", got)
	}
}
