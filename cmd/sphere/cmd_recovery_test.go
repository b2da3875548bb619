package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/recovery"
	"github.com/sphere-grid/sphere/grid/node"
)

// runStdinRC runs a short-lived verb for home with stdin; it returns stdout,
// stderr and the exit code.
func (c *cluster) runStdinRC(home, stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home(home))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// startArgs starts a long-running `sphere args...` for home (stopped when
// the test ends); name names its log.
func (c *cluster) startArgs(home, name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{log: filepath.Join(c.dir, home+"."+name+".log")}
	f, err := os.Create(p.log)
	if err != nil {
		c.t.Fatal(err)
	}
	p.cmd = exec.Command(c.bin, args...)
	p.cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home(home))
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	c.t.Cleanup(func() { p.stop() })
	return p
}

// mount mounts home's drive on a new directory with `sphere mount` and
// waits (bounded) for it; unmount with c.unmount.
func (c *cluster) mount(t *testing.T, home string) (string, *proc) {
	t.Helper()
	dir := filepath.Join(c.dir, home+"-mnt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := c.startArgs(home, "mount", "mount", dir)
	for i := 0; i < 600 && !isMounted(t, dir); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !isMounted(t, dir) {
		log, _ := os.ReadFile(p.log)
		t.Fatalf("%s not mounted after 30 s: %s", dir, log)
	}
	t.Cleanup(func() {
		if isMounted(t, dir) {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir, p
}

// unmount unmounts dir with `sphere unmount` (which waits for pending
// writes) and waits for the mount process.
func (c *cluster) unmount(t *testing.T, home, dir string, p *proc) {
	t.Helper()
	if _, err := c.run(home, "unmount", dir); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mount process: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("mount did not exit after unmount")
	}
}

// tool runs an ordinary command and fails the test on error.
func tool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// setShares writes the encoding into a home's config (what `sphere init
// --shares K,H,N` does once it exists).
func setShares(t *testing.T, dir string, k, happy, n int) {
	t.Helper()
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h.Config.Params.K, h.Config.Params.Happy, h.Config.Params.N = k, happy, n
	if err := h.Save(); err != nil {
		t.Fatal(err)
	}
}

// waitConnected waits (bounded) until home's node is connected to n members.
func (c *cluster) waitConnected(home string, n int) {
	c.t.Helper()
	for try := 0; ; try++ {
		st := c.status(home)
		if len(st.Connected) >= n {
			return
		}
		if try == 150 {
			c.t.Fatalf("%s connected to %d members, want %d", home, len(st.Connected), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sameTree fails unless every file under want is in got with the same bytes.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			return fmt.Errorf("recovered tree: %w", err)
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s: %d bytes recovered differ from the %d written", rel, len(b), len(a))
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no files compared")
	}
}

// TestRecoverGrid: an owner and three friends' nodes (2-of-3-of-4); the
// owner writes a tree, prints its recovery code, and its home is
// destroyed; a fresh home recovers the whole drive from the code alone.
// Then mistyped codes, a code for another grid, rotation.
func TestRecoverGrid(t *testing.T) {
	c := newCluster(t)
	t.Setenv("SPHERE_RENEW_EVERY", "2s") // the nodes' own renewal, soon
	names := []string{"owner", "f1", "f2", "f3"}
	for _, n := range names {
		if _, err := c.run(n, "init", "--servers", "1"); err != nil {
			t.Fatal(err)
		}
		setShares(t, c.home(n), 2, 3, 4)
	}
	procs := map[string]*proc{"owner": c.start("owner", "node")}
	c.waitReady("owner", procs["owner"])
	if out, err := c.run("owner", "status"); err != nil || !strings.Contains(out, "all shares are on this machine's disk") {
		t.Fatalf("status of a lone node does not warn: %v\n%s", err, out)
	}
	var out string
	var err error
	for _, n := range names[1:] {
		out, err = c.run("owner", "invite") // one per joiner
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.run(n, "join", lastLine(out)); err != nil {
			t.Fatal(err)
		}
		procs[n] = c.start(n, "node")
		c.waitReady(n, procs[n])
	}
	c.waitConnected("owner", 3)

	// The owner's drive: a tree with a big file, a small one and a tiny one.
	src := filepath.Join(c.dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "photos", "2026"), 0o700); err != nil {
		t.Fatal(err)
	}
	randFile(t, filepath.Join(src, "photos", "2026", "a.jpg"), 11, 3_000_000)
	randFile(t, filepath.Join(src, "photos", "b.raw"), 12, 70_000)
	randFile(t, filepath.Join(src, "photos", "tiny"), 13, 20)
	if _, err := c.run("owner", "cp", "-r", filepath.Join(src, "photos"), "sphere:/"); err != nil {
		t.Fatal(err)
	}
	// And a folder written through the mount with an ordinary tool.
	mounted := t.Run("owner writes through the mount", func(t *testing.T) {
		requireFuse(t)
		dir, p := c.mount(t, "owner")
		tool(t, "cp", "-r", filepath.Join(src, "photos"), filepath.Join(dir, "mnt-photos"))
		c.unmount(t, "owner", dir, p)
	})
	out, err = c.run("owner", "recovery")
	if err != nil {
		t.Fatal(err)
	}
	code := lastLine(out)
	if !strings.Contains(out, "whole drive") || !strings.HasPrefix(code, recovery.Prefix) {
		t.Fatalf("recovery output lacks the warning or the code:\n%s", out)
	}
	parsed, err := recovery.Parse(code)
	if err != nil || len(parsed.Contacts) != 3 || !parsed.Founder() || parsed.Params.K != 2 {
		t.Fatalf("code: %v, %+v", err, parsed)
	}

	// The laptop is gone.
	_ = procs["owner"].cmd.Process.Kill()
	procs["owner"].stop()
	if err := os.RemoveAll(c.home("owner")); err != nil {
		t.Fatal(err)
	}

	t.Run("mistyped", func(t *testing.T) {
		body := strings.TrimPrefix(code, recovery.Prefix)
		i := len(recovery.Prefix) + 6*7 + 2 // third character of group 8
		changed := code[:i] + string(map[bool]byte{true: 'q', false: 'p'}[code[i] != 'q']) + code[i+1:]
		dropped := code[:i] + code[i+1:]
		j := i
		for code[j] == code[j+1] {
			j++
		}
		swapped := code[:j] + string(code[j+1]) + string(code[j]) + code[j+2:]
		for name, bad := range map[string]string{"changed": changed, "dropped": dropped, "swapped": swapped} {
			_, errs, rc := c.runStdinRC("bad", bad+"\n", "recover")
			if rc != exitBadCap || !strings.Contains(errs, "group 8") {
				t.Errorf("%s character: exit %d, %q; want exit %d naming group 8", name, rc, errs, exitBadCap)
			}
		}
		if _, err := os.Stat(c.home("bad")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused code left a home behind: %v", err)
		}
		_ = body
		if _, errs, rc := c.runStdinRC("bad", "", "recover", code); rc != exitUsage || !strings.Contains(errs, "never from the command line") {
			t.Errorf("code as an argument: exit %d, %q", rc, errs)
		}
	})

	t.Run("other grid", func(t *testing.T) {
		if _, err := c.run("other", "init", "--servers", "1"); err != nil {
			t.Fatal(err)
		}
		_, errs, rc := c.runStdinRC("other", code, "recover")
		if rc == 0 || !strings.Contains(errs, "another grid") {
			t.Fatalf("recover into a home of another grid: exit %d, %q", rc, errs)
		}
	})

	// A fresh home from the code alone.
	if out, errs, rc := c.runStdinRC("new", code+"\n", "recover"); rc != 0 {
		t.Fatalf("recover: exit %d: %s %s", rc, out, errs)
	}
	procs["new"] = c.start("new", "node")
	c.waitReady("new", procs["new"])
	c.waitConnected("new", 3)
	back := filepath.Join(c.dir, "back")
	if err := os.Mkdir(back, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("new", "cp", "-r", "sphere:/photos", back+"/"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, filepath.Join(src, "photos"), filepath.Join(back, "photos"))
	if mounted {
		t.Run("the recovered drive through the mount", func(t *testing.T) {
			dir, p := c.mount(t, "new")
			tool(t, "diff", "-r", filepath.Join(src, "photos"), filepath.Join(dir, "mnt-photos"))
			tool(t, "diff", "-r", filepath.Join(src, "photos"), filepath.Join(dir, "photos"))
			if err := os.WriteFile(filepath.Join(dir, "written-in-mount.txt"), []byte("after"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.unmount(t, "new", dir, p)
			if out, err := c.run("new", "ls", "sphere:/"); err != nil || !strings.Contains(out, "written-in-mount.txt") {
				t.Fatalf("a write through the recovered mount is not in the drive: %v %q", err, out)
			}
		})
	}
	after := filepath.Join(c.dir, "after.txt")
	randFile(t, after, 14, 5000)
	if _, err := c.run("new", "cp", after, "sphere:/after.txt"); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if _, err := c.run("new", "renew"); err != nil {
		t.Fatalf("renew after recovery: %v", err)
	}
	// The node renews the drive on its own (every 2 s here).
	for try := 0; ; try++ {
		h, _ := home.Open(c.home("new"))
		if r, err := loadRenewal(h); err == nil && r != nil && r.By == "node" && r.Renewed >= 5 {
			break
		}
		if try == 100 {
			log, _ := os.ReadFile(procs["new"].log)
			t.Fatalf("the node did not renew the drive's leases: %s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err = c.run("new", "status")
	if err != nil || !strings.Contains(out, "Drive:   leases renewed") || strings.Contains(out, "all shares are on this machine") {
		t.Fatalf("status: %v\n%s", err, out)
	}

	// Rotation: the old code, say leaked, recovers nothing new.
	oldID := c.status("new").PeerID
	procs["new"].stop()
	out, err = c.run("new", "recovery", "--rotate")
	if err != nil {
		t.Fatal(err)
	}
	newCode := lastLine(out)
	if newCode == code || !strings.Contains(out, map[bool]string{true: "Rotated: 5 directories", false: "Rotated: 3 directories"}[mounted]) || !strings.Contains(out, "Identity: node identity rotated") {
		t.Fatalf("rotate output:\n%s", out)
	}
	// The friends' nodes took the handover at once: the old id is off
	// their lists, the new one on.
	for _, f := range names[1:] {
		out, err := c.run(f, "members", "--json")
		var mr node.MembersReply
		if err != nil || json.Unmarshal([]byte(out), &mr) != nil || mr.Admin == oldID || !slices.Contains(mr.Removed, oldID) {
			t.Fatalf("%s's member list after rotation: %v %s", f, err, out)
		}
	}
	if _, errs, rc := c.runStdinRC("thief", code, "recover"); rc != 0 {
		t.Fatalf("recover from the old code: %s", errs)
	}
	thief := c.start("thief", "node")
	c.waitReady("thief", thief)
	time.Sleep(3 * time.Second) // time to dial every contact
	if st := c.status("thief"); len(st.Connected) != 0 {
		t.Fatalf("the grid admits the old identity: connected to %v", st.Connected)
	}
	out, err = c.run("thief", "ls", "sphere:/")
	t.Logf("ls with the old code: %q, %v", out, err)
	if err == nil && strings.TrimSpace(out) != "" {
		t.Fatalf("the old code still shows the drive: %q", out)
	}
	out, err = c.run("thief", "renew", "--json")
	t.Logf("renew with the old code: %q, %v", out, err)
	if err == nil || strings.Contains(out, `"renewed":1`) || !strings.Contains(out, `"renewed":0`) {
		t.Fatalf("the old code still renews: %s, %v", out, err)
	}
	// Its storage requests are refused: it cannot store either.
	if _, err := c.run("thief", "put", after); err == nil {
		t.Fatal("the old identity stored a file on the grid")
	}
	thief.stop()
	procs["new"] = c.start("new", "node")
	c.waitReady("new", procs["new"])
	c.waitConnected("new", 3)
	back2 := filepath.Join(c.dir, "back2")
	if err := os.Mkdir(back2, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("new", "cp", "-r", "sphere:/photos", back2+"/"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, filepath.Join(src, "photos"), filepath.Join(back2, "photos"))
	if out, err := c.run("new", "renew", "--json"); err != nil || strings.Contains(out, `"renewed":0`) {
		t.Fatalf("renew after rotation: %v %s", err, out)
	}
	var st map[string]any
	out, _ = c.run("new", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st["driveLeasesRunOut"] == nil {
		t.Fatalf("status --json: %v %s", err, out)
	}
}

// TestUpSaysLocalGridIsForTrying: `sphere up` says in one line that its
// embedded grid is for trying Sphere, and status warns while all shares
// are on this machine.
func TestUpSaysLocalGridIsForTrying(t *testing.T) {
	c := newCluster(t)
	p := c.startArgs("up", "up", "up")
	c.waitReady("up", p)
	log, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "The local grid is for trying Sphere on one machine: real safety needs other machines") {
		t.Fatalf("up does not say what its local grid is for:\n%s", log)
	}
	if out, err := c.run("up", "status"); err != nil || !strings.Contains(out, "all shares are on this machine's disk") {
		t.Fatalf("status under up: %v\n%s", err, out)
	}
	out, err := c.run("up", "recovery")
	if err != nil || !strings.Contains(out, "names no other machine") {
		t.Fatalf("recovery under up does not warn that the code alone cannot help: %v\n%s", err, out)
	}
	if code, err := recovery.Parse(lastLine(out)); err != nil || len(code.Contacts) != 0 {
		t.Fatalf("code under up: %v; the local servers must not be contacts", err)
	}
}

// TestRotateMemberIdentity: a member that is not the grid's admin rotates
// with its node stopped: the admin (a running node) admits the new
// identity and removes the old; the member's node comes back under the new
// id on a fresh store; a home recovered from the old code connects to no one.
func TestRotateMemberIdentity(t *testing.T) {
	c := newCluster(t)
	for _, n := range []string{"a", "b"} {
		if _, err := c.run(n, "init", "--servers", "1"); err != nil {
			t.Fatal(err)
		}
		setShares(t, c.home(n), 1, 1, 2)
	}
	pa := c.start("a", "node")
	c.waitReady("a", pa)
	out, err := c.run("a", "invite")
	if err != nil {
		t.Fatal(err)
	}
	pb := c.start("b", "node")
	c.waitReady("b", pb)
	if _, err := c.runStdin("b", lastLine(out)+"\n", "join"); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(c.dir, "f")
	randFile(t, f, 21, 4000)
	if _, err := c.run("b", "cp", f, "sphere:/f"); err != nil {
		t.Fatal(err)
	}
	code := lastLine(c.must("b", "recovery"))
	oldID := c.status("b").PeerID
	pb.stop()
	out = c.must("b", "recovery", "--rotate")
	if !strings.Contains(out, "the grid's admin admitted the new identity") {
		t.Fatalf("rotate output:\n%s", out)
	}
	var mr node.MembersReply
	if err := json.Unmarshal([]byte(c.must("a", "members", "--json")), &mr); err != nil || !slices.Contains(mr.Removed, oldID) || len(mr.Members) != 2 {
		t.Fatalf("admin's list after the rotation: %v %+v", err, mr)
	}
	pb = c.start("b", "node")
	c.waitReady("b", pb)
	c.waitConnected("b", 1)
	st := c.status("b")
	if st.PeerID == oldID || !slices.ContainsFunc(mr.Members, func(m node.MemberInfo) bool { return m.PeerID == st.PeerID }) {
		t.Fatalf("b runs as %s, the admin lists %+v", st.PeerID, mr.Members)
	}
	back := filepath.Join(c.dir, "back")
	c.must("b", "cp", "sphere:/f", back)
	if want, got := readFileT(t, f), readFileT(t, back); !bytes.Equal(want, got) {
		t.Fatal("the file differs after rotation")
	}
	pb.stop()
	if _, errs, rc := c.runStdinRC("thief", code, "recover"); rc != 0 {
		t.Fatalf("recover from the old code: %s", errs)
	}
	thief := c.start("thief", "node")
	c.waitReady("thief", thief)
	time.Sleep(2 * time.Second)
	if st := c.status("thief"); len(st.Connected) != 0 {
		t.Fatalf("the old identity is still admitted: connected to %v", st.Connected)
	}
}

// must runs a short-lived verb for home and fails the test on error.
func (c *cluster) must(home string, args ...string) string {
	c.t.Helper()
	out, err := c.run(home, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
