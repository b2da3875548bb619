package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func newUnmountCmd(g *globals) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "unmount DIR",
		Short: "Unmount a folder shown by 'sphere mount'",
		Long: `unmount detaches DIR and, when the mount process belongs to this home, waits
(up to --wait) until it has saved everything pending and exited.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return usageError{err}
			}
			if err := unmountDir(abs); err != nil {
				return err
			}
			if h, err := openHome(); err == nil {
				waitMountExit(mountPidFile(h, abs), wait)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the mount process to save and exit")
	return cmd
}

// unmountDir unmounts with umount(2), falling back to fusermount -u (which
// works without root for the user who mounted).
func unmountDir(dir string) error {
	err := syscall.Unmount(dir, 0)
	// The kernel sends FUSE RELEASE asynchronously after close(2), so a
	// mount whose last file was just closed can be briefly busy: retry a
	// little (bounded) before calling it busy.
	for i := 0; i < 20 && errors.Is(err, syscall.EBUSY); i++ {
		time.Sleep(100 * time.Millisecond)
		err = syscall.Unmount(dir, 0)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("unmount %s: busy (a process is using it): %w", dir, err)
	}
	var msgs []string
	for _, prog := range []string{"fusermount3", "fusermount"} {
		out, ferr := exec.Command(prog, "-u", dir).CombinedOutput()
		if ferr == nil {
			return nil
		}
		msgs = append(msgs, fmt.Sprintf("%s: %v %s", prog, ferr, strings.TrimSpace(string(out))))
	}
	return fmt.Errorf("unmount %s: %v; %s", dir, err, strings.Join(msgs, "; "))
}

// waitMountExit waits, bounded, for the mount process named in pidFile to
// exit (it saves pending changes after the unmount).
func waitMountExit(pidFile string, max time.Duration) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if _, err := os.Stat(pidFile); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
