package main

import (
	"bytes"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// runIn runs the CLI in-process with SPHERE_HOME=dir.
func runIn(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("SPHERE_HOME", dir)
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestInviteJoinOffline(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if code, _, errs := runIn(t, d, "init", "--servers", "1"); code != 0 {
			t.Fatalf("init: %d %s", code, errs)
		}
	}
	code, out, errs := runIn(t, a, "invite")
	if code != 0 {
		t.Fatalf("invite: %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	inv, err := node.ParseInvite(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("last line of invite: %v", err)
	}
	ha, err := home.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	keyA, err := ha.GridKey()
	if err != nil {
		t.Fatal(err)
	}
	_, idA, _ := ha.NodeIdentity()
	if !bytes.Equal(inv.PSK, keyA) || string(inv.Peers[0].ID) != string(idA) {
		t.Fatal("invite does not carry a's grid key and peer id")
	}
	if code, _, errs := runIn(t, b, "join", lines[len(lines)-1]); code != 0 {
		t.Fatalf("join: %d %s", code, errs)
	}
	hb, err := home.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if hb.Config.Node.GridKey != hex.EncodeToString(keyA) || len(hb.Config.Node.Peers) != 1 ||
		!strings.HasSuffix(hb.Config.Node.Peers[0], inv.Peers[0].ID.String()) {
		t.Fatalf("b's config after join: %+v", hb.Config.Node)
	}
	if k, _ := hb.GridKey(); !bytes.Equal(k, keyA) {
		t.Fatal("b does not use a's grid key after join")
	}
	// Joining twice does not duplicate peers.
	runIn(t, b, "join", lines[len(lines)-1])
	if hb, _ = home.Open(b); len(hb.Config.Node.Peers) != 1 {
		t.Fatalf("peers after a second join: %v", hb.Config.Node.Peers)
	}
}

func TestJoinBadCode(t *testing.T) {
	d := filepath.Join(t.TempDir(), "h")
	runIn(t, d, "init", "--servers", "1")
	if code, _, _ := runIn(t, d, "join", "sphere:invite:zzzz"); code != exitUsage {
		t.Fatalf("join of a bad code: exit %d, want %d", code, exitUsage)
	}
}

func TestStatusWithoutNode(t *testing.T) {
	d := filepath.Join(t.TempDir(), "h")
	runIn(t, d, "init", "--servers", "1")
	code, _, errs := runIn(t, d, "status")
	if code == 0 || !strings.Contains(errs, "no node is running") {
		t.Fatalf("status without a node: exit %d, %q", code, errs)
	}
	if code, _, _ := runIn(t, filepath.Join(t.TempDir(), "none"), "status"); code != exitNoHome {
		t.Fatalf("status without a home: exit %d, want %d", code, exitNoHome)
	}
}
