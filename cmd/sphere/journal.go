package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs/journal"
)

// journalDir is the write-back journal of a mount of root: one per root
// directory, named by its storage index, under <home>/journal.
func journalDir(h *home.Home, root caps.Cap) string {
	name := "other"
	if vc, ok := caps.MutableVerifyCapOf(root); ok {
		name = vc.SI.String()
	}
	return h.Path("journal", name)
}

// pendingJournal sums what every journal of the home holds: changes and
// bytes of file contents not yet known to be on the grid.
func pendingJournal(h *home.Home) (dirs []string, records int, bytes int64) {
	des, err := os.ReadDir(h.Path("journal"))
	if err != nil {
		return nil, 0, 0
	}
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		d := h.Path("journal", de.Name())
		r, b, err := journal.Stat(d)
		if err != nil {
			continue
		}
		dirs = append(dirs, d)
		records += r
		bytes += b
	}
	return dirs, records, bytes
}

// pendingLine says what is not yet on the grid, or "" when nothing is.
func pendingLine(h *home.Home) string {
	_, r, b := pendingJournal(h)
	if r == 0 && b == 0 {
		return ""
	}
	return fmt.Sprintf("%d changes (%s of file contents) saved on this machine, not yet on the grid", r, humanBytes(b))
}

// mountPids returns the pids of this home's running mount processes.
func mountPids(h *home.Home) []int {
	files, _ := filepath.Glob(h.Path("run", "mount-*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// progress prints what is pending every interval until done closes.
func progress(w io.Writer, interval time.Duration, done <-chan struct{}, what func() string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if s := what(); s != "" {
				fmt.Fprintf(w, "sphere: %s\n", s)
			}
		}
	}
}
