package boltserver_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

var crashA, crashB = caps.StorageIndex{0xa}, caps.StorageIndex{0xb}

// stallReader yields n bytes, says so on stdout, then blocks forever.
type stallReader struct {
	r    io.Reader
	left int
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		fmt.Println("B started")
		select {} // until killed
	}
	p = p[:min(len(p), s.left)]
	n, err := s.r.Read(p)
	s.left -= n
	return n, err
}

// TestCrashChild is the process TestCrashMidWrite kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SPHERE_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrashMidWrite")
	}
	s, err := boltserver.Open(dir, boltserver.Options{ID: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	data := gridtest.Data(1, 3<<20)
	if err := s.WriteShare(t.Context(), crashA, 0, int64(len(data)), bytes.NewReader(data), lease("a")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("A done")
	_ = s.WriteShare(t.Context(), crashB, 0, int64(len(data)), &stallReader{r: bytes.NewReader(data), left: 2 << 20}, lease("a"))
	t.Fatal("write of B returned; it should have stalled")
}

// Kill a server process in the middle of writing a share: the acknowledged
// share survives, the half-written one leaves no trace, the lock is free.
func TestCrashMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPHERE_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(60 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child ended before stalling:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.Contains(l, "B started") {
				break wait
			}
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("child did not reach the stall:\n%s", strings.Join(seen, "\n"))
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 1 {
		t.Errorf("while B is half written the tmp dir holds %d files, want 1", len(ents))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s := open(t, dir, boltserver.Options{}) // cleanup verifies invariants and an empty tmp/
	mustRead(t, s, crashA, 0, gridtest.Data(1, 3<<20))
	if _, err := s.ReadShare(t.Context(), crashB, 0, 0, 1); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("half-written share after the crash: %v, want ErrNotFound", err)
	}
	if st, _ := s.Stat(t.Context()); st.Shares != 1 || st.Used != 3<<20+grid.ShareCharge+grid.LeaseCharge {
		t.Fatalf("Stat after the crash = %+v", st)
	}
}
