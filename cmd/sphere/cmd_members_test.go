package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// runStdin runs a short-lived verb with stdin.
func (c *cluster) runStdin(home, stdin string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home(home))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("sphere %s: %w: %s", strings.Join(args, " "), err, lastLine(errb.String()))
	}
	return out.String(), nil
}

// setParams sets the home's encoding (a three-node grid cannot meet 3-of-10).
func (c *cluster) setParams(name string, p caps.Params) {
	c.t.Helper()
	h, err := home.Open(c.home(name))
	if err != nil {
		c.t.Fatal(err)
	}
	p.SegmentSize = h.Config.Params.SegmentSize
	h.Config.Params = p
	if err := h.Save(); err != nil {
		c.t.Fatal(err)
	}
}

// TestMembershipAcrossProcesses: three `sphere node` processes; invites
// are one-time (a leaked used code admits nobody), `join` reads the code
// from stdin, and a removed member can neither store nor read.
func TestMembershipAcrossProcesses(t *testing.T) {
	c := newCluster(t)
	p := caps.Params{K: 2, Happy: 3, N: 3}
	for _, n := range []string{"a", "b", "c", "thief"} {
		if _, err := c.run(n, "init"); err != nil {
			t.Fatal(err)
		}
		c.setParams(n, p)
	}
	// a runs with tit-for-tat admission: members under the allowance are served.
	procs := map[string]*proc{"a": c.startArgs("a", "node", "node", "--admission")}
	c.waitReady("a", procs["a"])
	invite := func() string {
		out, err := c.run("a", "invite", "--expires", "1h")
		if err != nil {
			t.Fatal(err)
		}
		return lastLine(out)
	}
	codeB := invite()
	if _, err := c.runStdin("b", codeB+"\n", "join"); err != nil { // before b's node starts, code on stdin
		t.Fatal(err)
	}
	procs["b"] = c.start("b", "node")
	procs["c"] = c.start("c", "node")
	c.waitReady("c", procs["c"])
	c.setParams("c", p)
	// c joins while running on its own grid: the node switches live.
	if out, err := c.run("c", "join", invite()); err != nil || !strings.Contains(out, "switched") {
		t.Fatalf("join of a running node: %q %v", out, err)
	}
	// The leaked, used code admits nobody.
	if out, err := c.runStdin("thief", codeB, "join"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("join with a used code: %q, %v", out, err)
	}
	for _, n := range []string{"a", "b", "c"} {
		c.waitReady(n, procs[n])
	}
	for try := 0; ; try++ {
		if len(c.status("a").Connected) == 2 && len(c.status("b").Connected) == 2 && len(c.status("c").Connected) == 2 {
			break
		}
		if try == 150 {
			t.Fatalf("not all connected: a %v b %v c %v", c.status("a").Connected, c.status("b").Connected, c.status("c").Connected)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := c.run("a", "members", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var mr node.MembersReply
	if err := json.Unmarshal([]byte(out), &mr); err != nil || len(mr.Members) != 3 {
		t.Fatalf("members --json: %v %q", err, out)
	}
	if _, err := c.run("thief", "members"); err != nil {
		t.Fatal(err)
	}
	stB := c.status("b")
	file, data := randomFile(t, c.dir, 300<<10)
	capStr := c.put("b", file)
	c.getSame("c", capStr, data)
	// a stored one of the 3 shares for b: its accounting says so, in
	// --json and in words; b is far under the allowance: nothing refused.
	stA := c.status("a")
	stored := uint64(0)
	for _, s := range stA.Accounting.Service {
		if s.Peer == stB.PeerID {
			stored = s.StoredBytes
		}
		if s.Refused != 0 {
			t.Fatalf("refused with admission off: %+v", s)
		}
	}
	if stored == 0 || !stA.Accounting.Admission {
		t.Fatalf("a's accounting after b's put: %+v", stA.Accounting)
	}
	if out, err := c.run("a", "status"); err != nil || !strings.Contains(out, "Service:") || !strings.Contains(out, stB.PeerID) {
		t.Fatalf("status of a does not show b's service: %v\n%s", err, out)
	}
	// b's CLI without b's node (dialling as b's identity) also works now.
	procs["b"].stop()
	c.getSame("b", capStr, data)
	procs["b"] = c.start("b", "node")
	c.waitReady("b", procs["b"])

	// Remove b (only the admin can).
	if _, err := c.run("c", "members", "remove", stB.PeerID); err == nil {
		t.Fatal("a member removed another")
	}
	if _, err := c.run("a", "members", "remove", stB.PeerID); err != nil {
		t.Fatal(err)
	}
	serial := c.status("a").ListSerial
	for try := 0; c.status("c").ListSerial < serial; try++ {
		if try == 100 {
			t.Fatal("c never got the list without b")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// b can read neither through its node nor directly; it cannot store.
	if _, err := c.run("b", "get", capStr, "-o", filepath.Join(c.dir, "stolen")); err == nil {
		t.Fatal("removed member read the file")
	}
	procs["b"].stop()
	if _, err := c.run("b", "get", capStr, "-o", filepath.Join(c.dir, "stolen2")); err == nil {
		t.Fatal("removed member read the file without its node")
	}
	if _, err := c.run("b", "put", file); err == nil {
		t.Fatal("removed member stored a file")
	}
	// The others still read.
	c.getSame("c", capStr, data)
	out, err = c.run("a", "members")
	if err != nil || strings.Contains(strings.Split(out, "Removed")[0], stB.PeerID) || !strings.Contains(out, stB.PeerID) {
		t.Fatalf("members after removal: %v\n%s", err, out)
	}
}

// TestControlLivenessAndLock: a dead node's control file is not trusted
// even when something answers on its socket; one node per home; SIGHUP
// stops the node cleanly.
func TestControlLivenessAndLock(t *testing.T) {
	c := newCluster(t)
	if _, err := c.run("h", "init"); err != nil {
		t.Fatal(err)
	}
	p := c.start("h", "node")
	c.waitReady("h", p)
	cfPath := filepath.Join(c.home("h"), "node.json")
	raw, err := os.ReadFile(cfPath)
	if err != nil {
		t.Fatal(err)
	}
	var cf node.ControlFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(cf.Socket)); err != nil || fi.Mode().Perm() != 0o700 || !strings.HasPrefix(cf.Socket, c.home("h")) {
		t.Fatalf("control socket %s: %v %v", cf.Socket, fi.Mode(), err)
	}
	// A second node on the same home is refused (and the first runs on).
	if out, err := c.run("h", "node"); err == nil || !strings.Contains(err.Error(), "another node is running") {
		t.Fatalf("second node: %q, %v", out, err)
	}
	if _, err := c.run("h", "status"); err != nil {
		t.Fatal(err)
	}
	// A second home on the same port is refused too.
	if _, err := c.run("g", "init"); err != nil {
		t.Fatal(err)
	}
	hg, _ := home.Open(c.home("g"))
	hh, _ := home.Open(c.home("h"))
	hg.Config.Node.Listen = hh.Config.Node.Listen
	if err := hg.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("g", "node"); err == nil {
		t.Fatal("a node started on a port in use")
	}

	// Unclean death: the control file stays; an impostor answers on the
	// socket path with the right peer id and any token.
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	if _, err := os.Stat(cfPath); err != nil {
		t.Fatalf("control file after SIGKILL: %v", err)
	}
	_ = os.Remove(cf.Socket)
	ln, err := net.Listen("unix", cf.Socket)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_ = json.NewEncoder(w).Encode(node.Status{PeerID: cf.PeerID})
	})}
	go srv.Serve(ln)
	defer srv.Close()
	if _, err := c.run("h", "status"); err == nil {
		t.Fatal("status trusted an impostor on a dead node's socket")
	}
	if out, err := c.run("h", "invite"); err != nil || !strings.Contains(out, "no node is running") {
		t.Fatalf("invite with a dead node: %q %v", out, err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the impostor got %d requests", n)
	}
	srv.Close()

	// A new node replaces the stale file; SIGHUP stops it cleanly.
	p = c.start("h", "node")
	c.waitReady("h", p)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node after SIGHUP: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop on SIGHUP")
	}
	if _, err := os.Stat(cfPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control file after SIGHUP: %v", err)
	}
}
