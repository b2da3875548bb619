package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid/node"
)

// Integration tests of real `sphere` processes on 127.0.0.1: the binary is
// built once per test run into a temporary directory.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sphereBin builds ./cmd/sphere (honouring GOFLAGS) once.
func sphereBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sphere-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sphere")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is a long-running sphere process (node or up).
type proc struct {
	cmd *exec.Cmd
	log string
}

type cluster struct {
	t   *testing.T
	bin string
	dir string
	// lastCPU is the CPU time of the last short-lived verb.
	lastCPU time.Duration
}

func (c *cluster) home(name string) string { return filepath.Join(c.dir, name) }

// run runs a short-lived verb for home and returns its stdout.
func (c *cluster) run(home string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home(home))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState != nil {
		c.lastCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return out.String(), fmt.Errorf("sphere %s (home %s): %w: %s", strings.Join(args, " "), home, err, lastLine(errb.String()))
	}
	return out.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// start starts a long-running verb; it is stopped when the test ends.
func (c *cluster) start(home, verb string) *proc {
	c.t.Helper()
	p := &proc{log: filepath.Join(c.dir, home+"."+verb+".log")}
	f, err := os.Create(p.log)
	if err != nil {
		c.t.Fatal(err)
	}
	p.cmd = exec.Command(c.bin, verb)
	p.cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home(home))
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	c.t.Cleanup(func() { p.stop() })
	return p
}

// stop sends SIGTERM and waits (bounded) for the process to exit.
func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// waitReady polls `sphere status` until it exits 0 (bounded: 15 s).
func (c *cluster) waitReady(home string, p *proc) time.Duration {
	c.t.Helper()
	start := time.Now()
	for range 300 {
		if _, err := c.run(home, "status"); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(p.log)
	c.t.Fatalf("%s not ready in 15 s: %s", home, lastLine(string(log)))
	return 0
}

func (c *cluster) status(home string) node.Status {
	c.t.Helper()
	out, err := c.run(home, "status", "--json")
	if err != nil {
		c.t.Fatal(err)
	}
	var st node.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("status --json: %v: %q", err, out)
	}
	return st
}

var capRE = regexp.MustCompile(`sphere:[a-z0-9-]+:[A-Za-z0-9:._-]*`)

func (c *cluster) put(home, file string) string {
	c.t.Helper()
	out, err := c.run(home, "put", file)
	if err != nil {
		c.t.Fatal(err)
	}
	m := capRE.FindAllString(out, -1)
	if len(m) == 0 {
		c.t.Fatalf("put printed no cap: %q", out)
	}
	return m[len(m)-1]
}

func (c *cluster) getSame(home, capStr string, want []byte) {
	c.t.Helper()
	dst := filepath.Join(c.dir, fmt.Sprintf("got-%d", time.Now().UnixNano()))
	if _, err := c.run(home, "get", capStr, "-o", dst); err != nil {
		c.t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		c.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("get from %s: %d bytes differ from the %d put", home, len(got), len(want))
	}
	os.Remove(dst)
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// cpuTime reads the user+system CPU time of a running process from
// /proc/<pid>/stat (clock ticks of 10 ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.Atoi(f[11])
	st, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func randomFile(t *testing.T, dir string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("file-%d", size))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("starts real sphere processes; skipped under -short")
	}
	return &cluster{t: t, bin: sphereBin(t), dir: t.TempDir()}
}

// TestUpReady measures `sphere up` from start to a ready `sphere status`
// on a fresh home, then puts and gets through it.
func TestUpReady(t *testing.T) {
	c := newCluster(t)
	start := time.Now()
	p := c.start("up", "up")
	c.waitReady("up", p)
	ready := time.Since(start)
	t.Logf("sphere up: ready %.2f s after start (fresh home, 10 local servers)", ready.Seconds())
	st := c.status("up")
	if st.LocalServers != 10 {
		t.Fatalf("status: %d local servers, want 10", st.LocalServers)
	}
	t.Logf("sphere up: idle RSS %d KiB", rssKiB(t, p.cmd.Process.Pid))
	file, data := randomFile(t, c.dir, 1<<20)
	capStr := c.put("up", file)
	c.getSame("up", capStr, data)
	if st := c.status("up"); st.Shares != 10 {
		t.Fatalf("after put: %d shares held, want 10", st.Shares)
	}
	out, err := c.run("up", "renew", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rn struct{ Caps, Renewed, Failed int }
	if err := json.Unmarshal([]byte(out), &rn); err != nil || rn.Caps != 1 || rn.Renewed != 1 {
		t.Fatalf("renew: %q, %v; want 1 of 1 renewed", out, err)
	}
	p.stop()
	if _, err := os.Stat(filepath.Join(c.home("up"), "node.json")); !os.IsNotExist(err) {
		t.Fatalf("node.json left after a clean stop: %v", err)
	}
	// Restarted: the shares are still there.
	start = time.Now()
	p = c.start("up", "up")
	c.waitReady("up", p)
	t.Logf("sphere up: ready %.2f s after restart", time.Since(start).Seconds())
	c.getSame("up", capStr, data)
}

// TestGridTenNodes is the integration test: ten `sphere node`
// processes joined by invites; a put from one spreads over all, a get from
// another finds it, and it survives losing n-k = 7 nodes.
func TestGridTenNodes(t *testing.T) {
	c := newCluster(t)
	const nodes = 10
	name := func(i int) string { return fmt.Sprintf("n%02d", i) }
	for i := 1; i <= nodes; i++ {
		if _, err := c.run(name(i), "init"); err != nil {
			t.Fatal(err)
		}
	}
	procs := map[int]*proc{1: c.start(name(1), "node")}
	c.waitReady(name(1), procs[1])
	invite := func() string {
		t.Helper()
		out, err := c.run(name(1), "invite")
		if err != nil {
			t.Fatal(err)
		}
		code := lastLine(out)
		if !strings.HasPrefix(code, node.InvitePrefix) {
			t.Fatalf("invite's last line %q is not a code", code)
		}
		return code
	}
	for i := 2; i < nodes; i++ { // one invite each; join, then start
		if _, err := c.run(name(i), "join", invite()); err != nil {
			t.Fatal(err)
		}
		procs[i] = c.start(name(i), "node")
	}
	// The last one joins while running on its own grid: the node
	// switches to this grid in its process.
	p := c.start(name(nodes), "node")
	c.waitReady(name(nodes), p)
	if out, err := c.run(name(nodes), "join", invite()); err != nil || !strings.Contains(out, "switched") {
		t.Fatalf("join of a running node on its own grid: %q, %v", out, err)
	}
	procs[nodes] = p
	for i := 2; i <= nodes; i++ {
		c.waitReady(name(i), procs[i])
	}
	// Everyone learns everyone (through node 1's member list).
	for i := 1; i <= nodes; i++ {
		for try := 0; ; try++ {
			st := c.status(name(i))
			if len(st.Connected) == nodes-1 {
				break
			}
			if try == 100 {
				t.Fatalf("node %d connected to %d of %d members", i, len(st.Connected), nodes-1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	idle := rssKiB(t, procs[nodes].cmd.Process.Pid)
	t.Logf("idle node RSS: %d KiB", idle)

	file, data := randomFile(t, c.dir, 64<<20)
	nodesCPU := func() time.Duration {
		var sum time.Duration
		for _, p := range procs {
			sum += cpuTime(t, p.cmd.Process.Pid)
		}
		return sum
	}
	c0 := nodesCPU()
	t0 := time.Now()
	capStr := c.put(name(1), file)
	t1 := time.Now()
	putCPU := c.lastCPU
	c1 := nodesCPU()
	c.getSame(name(2), capStr, data)
	t2 := time.Now()
	getCPU := c.lastCPU
	c2 := nodesCPU()
	mb := float64(len(data)) / 1e6
	t.Logf("64 MiB across %d node processes: put %.0f MB/s wall, %.0f MB/cpu-s (CLI %.2f s + nodes %.2f s CPU); get %.0f MB/s wall, %.0f MB/cpu-s (CLI %.2f s + nodes %.2f s)",
		nodes, mb/t1.Sub(t0).Seconds(), mb/(putCPU+c1-c0).Seconds(), putCPU.Seconds(), (c1 - c0).Seconds(),
		mb/t2.Sub(t1).Seconds(), mb/(getCPU+c2-c1).Seconds(), getCPU.Seconds(), (c2 - c1).Seconds())
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average during the test: %s", strings.TrimSpace(string(la)))
	}
	t.Logf("serving node RSS after put+get: %d KiB", rssKiB(t, procs[1].cmd.Process.Pid))
	held := 0
	for i := 1; i <= nodes; i++ {
		st := c.status(name(i))
		if st.Shares != 1 {
			t.Errorf("node %d holds %d shares, want 1 (10 shares over 10 nodes)", i, st.Shares)
		}
		held += st.Shares
	}
	if held != nodes {
		t.Fatalf("%d shares held in all, want %d", held, nodes)
	}
	// Lose n-k = 7 nodes (not 1 and 2).
	for i := 4; i <= nodes; i++ {
		procs[i].stop()
	}
	for try := 0; len(c.status(name(2)).Connected) != 2; try++ {
		if try == 100 {
			t.Fatal("node 2 still connected to stopped nodes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.getSame(name(2), capStr, data)

	// Repair: seven new nodes join, check --repair puts n shares back on
	// the survivors and the new nodes; then the file survives losing
	// another n-k (the three old nodes and four new ones).
	for i := nodes + 1; i <= nodes+7; i++ {
		if _, err := c.run(name(i), "init"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.run(name(i), "join", invite()); err != nil {
			t.Fatal(err)
		}
		procs[i] = c.start(name(i), "node")
		c.waitReady(name(i), procs[i])
	}
	for try := 0; len(c.status(name(1)).Connected) != 9; try++ {
		if try == 100 {
			t.Fatalf("node 1 connected to %d members, want 9", len(c.status(name(1)).Connected))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.run(name(1), "check", "--repair", capStr); err != nil {
		// The exit status may describe the file before repair; the check
		// below is what counts.
		t.Logf("check --repair: %v", err)
	}
	if out, err := c.run(name(1), "check", capStr); err != nil {
		t.Fatalf("check after repair: %v\n%s", err, out)
	}
	for _, i := range []int{1, 2, 3, 11, 12, 13, 14} {
		procs[i].stop()
	}
	for try := 0; len(c.status(name(15)).Connected) != 2; try++ {
		if try == 100 {
			t.Fatal("node 15 still connected to stopped nodes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.getSame(name(15), capStr, data)
}
