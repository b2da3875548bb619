package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid/node"
)

// TestGridThreeFriends: three `sphere node` processes joined by invites,
// with `init --shares 2,3,3`, can put, get and cp into the drive; the
// default 3-of-10, happy 7 would refuse, naming the setting.
func TestGridThreeFriends(t *testing.T) {
	c := newCluster(t)
	const nodes = 3
	name := func(i int) string { return fmt.Sprintf("f%d", i) }
	for i := 1; i <= nodes; i++ {
		out, err := c.run(name(i), "init", "--shares", "2,3,3", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var ir struct{ Shares string }
		if err := json.Unmarshal([]byte(out), &ir); err != nil || ir.Shares != "2,3,3" {
			t.Fatalf("init --json: %q, %v; want shares 2,3,3", out, err)
		}
	}
	procs := map[int]*proc{1: c.start(name(1), "node")}
	c.waitReady(name(1), procs[1])
	for i := 2; i <= nodes; i++ {
		out, err := c.run(name(1), "invite") // one code per joiner
		if err != nil {
			t.Fatal(err)
		}
		code := lastLine(out)
		if !strings.HasPrefix(code, node.InvitePrefix) {
			t.Fatalf("invite's last line %q is not a code", code)
		}
		if _, err := c.run(name(i), "join", code); err != nil {
			t.Fatal(err)
		}
		procs[i] = c.start(name(i), "node")
	}
	for i := 1; i <= nodes; i++ {
		c.waitReady(name(i), procs[i])
		for try := 0; len(c.status(name(i)).Connected) != nodes-1; try++ {
			if try == 100 {
				t.Fatalf("node %d connected to %d of %d members", i, len(c.status(name(i)).Connected), nodes-1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	out, err := c.run(name(1), "status")
	if err != nil || !strings.Contains(out, "Encoding: 2-of-3, happy 3") {
		t.Fatalf("status does not show the encoding: %q, %v", out, err)
	}
	out, err = c.run(name(1), "status", "--json")
	var st struct {
		Encoding string
		PeerID   string
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Encoding != "2,3,3" || st.PeerID == "" {
		t.Fatalf("status --json: %q, %v", out, err)
	}

	file, data := randomFile(t, c.dir, 3<<20+5)
	// The default encoding needs 7 servers: refused, and the error says
	// what to change.
	if _, err := c.run(name(1), "put", "--shares", "3,7,10", file); err == nil || !strings.Contains(err.Error(), "--shares") {
		t.Fatalf("put needing 7 servers on a grid of 3: %v; want an error naming --shares", err)
	}
	capStr := c.put(name(1), file) // the home's 2,3,3, through the node
	if !strings.Contains(capStr, ":2:3:") {
		t.Fatalf("cap %s is not 2-of-3", capStr)
	}
	c.getSame(name(2), capStr, data)
	held := 0
	for i := 1; i <= nodes; i++ {
		held += c.status(name(i)).Shares
	}
	if held != 3 {
		t.Fatalf("%d shares held on the grid, want 3", held)
	}
	// --shares on put, done here rather than by the node.
	capStr2 := c.put2(name(3), "--shares", "1,3,3", file)
	if !strings.Contains(capStr2, ":1:3:") {
		t.Fatalf("put --shares 1,3,3 gave cap %s", capStr2)
	}
	c.getSame(name(1), capStr2, data)

	// The drive: its directories are mutable files, placed with the home's
	// setting too.
	if _, err := c.run(name(1), "cp", file, "sphere:/big.bin"); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(c.dir, "small.txt")
	if err := os.WriteFile(small, []byte("three friends\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run(name(1), "mkdir", "sphere:/notes"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run(name(1), "cp", small, "sphere:/notes/small.txt"); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(c.dir, "back.bin")
	if _, err := c.run(name(1), "cp", "sphere:/big.bin", back); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cp back from the drive: %d bytes, %v", len(got), err)
	}
	out, err = c.run(name(1), "ls", "sphere:/notes")
	if err != nil || !strings.Contains(out, "small.txt") {
		t.Fatalf("ls sphere:/notes: %q, %v", out, err)
	}
}

// put2 runs put with extra arguments and returns the cap.
func (c *cluster) put2(home string, args ...string) string {
	c.t.Helper()
	out, err := c.run(home, append([]string{"put"}, args...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	m := capRE.FindAllString(out, -1)
	if len(m) == 0 {
		c.t.Fatalf("put printed no cap: %q", out)
	}
	return m[len(m)-1]
}
