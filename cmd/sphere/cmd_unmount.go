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
	var noWait bool
	cmd := &cobra.Command{
		Use:   "unmount DIR",
		Short: "Unmount a folder shown by 'sphere mount'",
		Long: `unmount detaches DIR and, when the mount process belongs to this home, waits
(up to --wait) until it has uploaded everything pending to the grid and exited,
showing progress. With --no-wait the mount process exits at once and leaves
what is not yet on the grid in the home's journal, for the next mount or
'sphere sync'.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return usageError{err}
			}
			h, herr := openHome()
			if herr == nil && noWait {
				// The marker file is what the mount trusts (a signal may be
				// delivered after the unmount it races); the signal is a hint.
				_ = os.WriteFile(noWaitFile(mountPidFile(h, abs)), nil, 0o600)
				signalMount(mountPidFile(h, abs), syscall.SIGUSR2)
			}
			if err := unmountDir(abs); err != nil {
				return err
			}
			if herr == nil {
				done := make(chan struct{})
				go progress(g.stderr, 2*time.Second, done, func() string {
					if s := pendingLine(h); s != "" {
						return "waiting for the upload: " + s
					}
					return ""
				})
				waitMountExit(mountPidFile(h, abs), wait)
				close(done)
				if s := pendingLine(h); s != "" {
					fmt.Fprintf(g.stderr, "sphere: %s; run 'sphere sync' to upload it\n", s)
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the mount process to upload and exit")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the upload; leave it in the journal for the next mount or 'sphere sync'")
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

// signalMount sends sig to the mount process named in pidFile, if any.
func signalMount(pidFile string, sig syscall.Signal) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		syscall.Kill(pid, sig)
	}
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

// noWaitFile is the marker by which `sphere unmount --no-wait` asks the
// mount whose pid file is pidFile not to wait for the upload.
func noWaitFile(pidFile string) string { return pidFile + ".nowait" }
