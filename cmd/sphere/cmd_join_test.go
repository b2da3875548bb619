package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestJoinRunningNodeSwitches: `sphere join` for another grid while the
// joiner's node runs (on its own grid from init) switches that node to the
// new grid in its process: join exits 0 only once the node is admitted and
// connected; the node process is the same; the switch survives a restart;
// a refused code changes nothing.
func TestJoinRunningNodeSwitches(t *testing.T) {
	c := newCluster(t)
	for _, n := range []string{"a", "b", "c"} {
		if _, err := c.run(n, "init"); err != nil {
			t.Fatal(err)
		}
	}
	pa, pb, pc := c.start("a", "node"), c.start("b", "node"), c.start("c", "node")
	c.waitReady("a", pa)
	c.waitReady("b", pb)
	c.waitReady("c", pc)
	stA, stB := c.status("a"), c.status("b")
	if stB.AdminID != stB.PeerID {
		t.Fatalf("b is not on its own grid before joining: %+v", stB)
	}
	out, err := c.run("a", "invite")
	if err != nil {
		t.Fatal(err)
	}
	code := lastLine(out)
	out, err = c.runStdin("b", code+"\n", "join", "--json")
	if err != nil {
		t.Fatalf("join of a running node: %v", err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["switched"] != true || res["admitted"] != true {
		t.Fatalf("join --json: %v %q", err, out)
	}
	if pb.cmd.ProcessState != nil {
		t.Fatal("b's node process exited")
	}
	// Admitted and connected when join returned, not later.
	st := c.status("b")
	if st.AdminID != stA.PeerID || st.ListSerial == 0 || !slices.Contains(st.Connected, stA.PeerID) {
		t.Fatalf("b after join: admin %s serial %d connected %v (want admin %s)", st.AdminID, st.ListSerial, st.Connected, stA.PeerID)
	}
	// The web gateway started with the first node serves the new one.
	if gs := c.gatewayStatus("b"); gs.Error != "" || gs.Node.AdminID != stA.PeerID {
		t.Fatalf("b's gateway after the switch: error %q, admin %s (want %s)", gs.Error, gs.Node.AdminID, stA.PeerID)
	}
	for try := 0; c.status("a").Members != 1; try++ {
		if try == 100 {
			t.Fatalf("a does not list b: %+v", c.status("a"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The used code is refused for c, whose node stays on its own grid.
	stC := c.status("c")
	if _, err := c.runStdin("c", code+"\n", "join"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("join of c with a used code: %v", err)
	}
	if st := c.status("c"); st.AdminID != stC.AdminID || st.PeerID != stC.PeerID || pc.cmd.ProcessState != nil {
		t.Fatalf("a refused join changed c's node: %+v", st)
	}
	// The switch is in the home: a restarted b is on a's grid.
	pb.stop()
	pb = c.start("b", "node")
	c.waitReady("b", pb)
	for try := 0; ; try++ {
		st := c.status("b")
		if st.AdminID == stA.PeerID && slices.Contains(st.Connected, stA.PeerID) {
			break
		}
		if try == 100 {
			t.Fatalf("restarted b: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// gatewayStatus is GET /api/status of home's running web gateway (with the
// token its home page carries).
func (c *cluster) gatewayStatus(home string) (st struct {
	Node  node.Status `json:"node"`
	Error string      `json:"error"`
}) {
	c.t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.home(home), gatewayFile))
	if err != nil {
		c.t.Fatalf("no gateway for %s: %v", home, err)
	}
	var gi gatewayInfo
	if err := json.Unmarshal(raw, &gi); err != nil {
		c.t.Fatal(err)
	}
	get := func(path, token string) []byte {
		req, err := http.NewRequest(http.MethodGet, gi.URL+path, nil)
		if err != nil {
			c.t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		cl := &http.Client{Timeout: 30 * time.Second}
		resp, err := cl.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if token != "" && resp.StatusCode != http.StatusOK { // the home page may be an error page (no drive yet)
			c.t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
		}
		return b
	}
	m := regexp.MustCompile(`name="sphere-token" content="([^"]+)"`).FindSubmatch(get("", ""))
	if m == nil {
		c.t.Fatal("no token on the gateway's home page")
	}
	if err := json.Unmarshal(get("api/status", string(m[1])), &st); err != nil {
		c.t.Fatal(err)
	}
	return st
}
