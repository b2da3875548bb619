package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGetToSpecialFile: `get -o` onto a fifo (or /dev/null) writes into it
// and leaves it what it was; renaming a temp file over it would replace a
// device with a regular file.
func TestGetToSpecialFile(t *testing.T) {
	treeHome(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := randFile(t, src, 7, 300_000)
	capStr := strings.TrimSpace(mustRun(t, "put", src))

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- nil
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- b
	}()
	mustRun(t, "get", capStr, "-o", fifo)
	// Checked before waiting for the reader, which would block forever on a
	// fifo that a rename replaced.
	st, err := os.Lstat(fifo)
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("after get -o, %s is no longer a fifo: %v", fifo, err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes through the fifo, want %d identical", len(b), len(want))
	}
	mustFail(t, exitError, "get", capStr, "-o", dir) // a directory is refused
}

// TestCpToSpecialFile: `cp` from the grid refuses a fifo (or device) as
// destination and leaves it as it was.
func TestCpToSpecialFile(t *testing.T) {
	treeHome(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	randFile(t, src, 8, 2_000)
	mustRun(t, "cp", src, "sphere:/f")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, exitError, "cp", "sphere:/f", fifo)
	st, err := os.Lstat(fifo)
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("after cp, %s is no longer a fifo: %v", fifo, err)
	}
}
