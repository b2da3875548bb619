package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/fusefs"
)

func newMountCmd(g *globals) *cobra.Command {
	var debug, noWait bool
	cmd := &cobra.Command{
		Use:   "mount [CAP] DIR",
		Short: "Show your drive (or a directory cap) as a folder",
		Long: `mount shows your drive at DIR through FUSE, or, given CAP, the directory that
cap names. A read cap (dir-ro) gives a read-only folder: writes fail with
"Read-only file system". It runs until Ctrl-C, SIGTERM or 'sphere unmount DIR',
then saves everything still pending before it exits.

Files and directory changes are saved on this machine when closed (in the
write-back journal in the home, so a crash loses nothing that was closed, and
fsync makes it survive a power cut too) and uploaded to the grid in batches
about a second later. 'sphere status' shows what is not yet on the grid,
'sphere sync' waits until it is. On unmount the mount waits for the upload,
showing progress, unless --no-wait (or 'sphere unmount --no-wait'): then it
is uploaded by the next mount or 'sphere sync'. Extended attributes user.sphere.cap
and user.sphere.readcap on every file and directory hold their caps
(getfattr -n user.sphere.readcap DIR/photos). A read-only mount sees the
owner's saved changes within about 2 s.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, args, debug, noWait)
		},
	}
	cmd.Flags().BoolVar(&debug, "debug", false, "log every FUSE request")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "on unmount, leave what is not yet on the grid in the journal instead of waiting for the upload")
	return cmd
}

func runMount(ctx context.Context, g *globals, args []string, debug, noWait bool) error {
	dir := args[len(args)-1]
	abs, err := filepath.Abs(dir)
	if err != nil {
		return usageError{err}
	}
	var rootArg caps.Cap
	if len(args) == 2 {
		if rootArg, err = parseCap(args[0]); err != nil {
			return err
		}
	}
	h, err := openHome()
	if err != nil {
		return err
	}
	// A dead mount process leaves "transport endpoint is not connected"
	// behind; detach it so the new mount can take its place.
	if _, err := os.Stat(abs); errors.Is(err, syscall.ENOTCONN) {
		slog.Warn("Detaching a stale mount", "dir", abs)
		syscall.Unmount(abs, syscall.MNT_DETACH)
	}
	// ctx ends on Ctrl-C/SIGTERM, which is when pending changes must still
	// be saved: the grid client and the tree live on a context of their own.
	signalled := ctx
	ctx = context.WithoutCancel(ctx)
	client, closeClient, err := openClient(ctx, h)
	if err != nil {
		return err
	}
	defer closeClient()
	gr := fs.FromClient(client)
	root := rootArg
	if root == nil {
		if root, err = userRootCap(ctx, h, gr); err != nil {
			return err
		}
	} else if !gr.IsDir(root) {
		return fmt.Errorf("mount: a %s cap: %w: want a directory cap", root.Kind(), errBadCap)
	}
	opts := fs.Options{CacheDir: h.Path("cache")}
	// SPHERE_FLUSH_DELAY (a Go duration) sets how long closed files and
	// directory edits wait before their background upload (default 1 s);
	// tests set it long to see what only sync or unmount uploads.
	if v := os.Getenv("SPHERE_FLUSH_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return usageError{fmt.Errorf("SPHERE_FLUSH_DELAY: %w", err)}
		}
		opts.FlushDelay = d
	}
	if gr.Writable(root) {
		opts.JournalDir = journalDir(h, root)
	}
	tree, err := fs.New(ctx, gr, root, opts)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	srv, err := fusefs.Mount(abs, tree, fusefs.Options{Debug: debug})
	if err != nil {
		tree.Close(context.WithoutCancel(ctx))
		return err
	}
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		tree.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("mount: %w", err)
	}
	// SIGUSR1 (sphere sync): upload everything now. SIGUSR2 (sphere
	// unmount --no-wait): do not wait for the upload at unmount. Caught
	// for as long as the pid file names this process (defers run in
	// reverse: the pid file goes first).
	usr := make(chan os.Signal, 4)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(usr)
	pidFile := mountPidFile(h, abs)
	_ = os.Remove(noWaitFile(pidFile)) // a stale request of an earlier mount
	if err := os.MkdirAll(filepath.Dir(pidFile), 0o700); err == nil {
		os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600)
		defer os.Remove(pidFile)
	}
	mode := "read-write"
	if tree.ReadOnly() {
		mode = "read-only"
	}
	fmt.Fprintf(g.stderr, "sphere: mounted %s (%s) at %s; Ctrl-C or 'sphere unmount %s' to stop\n", root.Kind(), mode, abs, dir)

	served := make(chan struct{})
	go func() { srv.Wait(); close(served) }()
wait:
	for {
		select {
		case <-served: // unmounted from outside (sphere unmount, fusermount -u)
			break wait
		case s := <-usr:
			if s == syscall.SIGUSR2 {
				noWait = true
				continue
			}
			go func() {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
				defer cancel()
				if err := tree.Sync(sctx); err != nil {
					slog.Warn("Sync requested by sphere sync failed; will retry", "err", err)
				}
			}()
		case <-signalled.Done():
			unmountServer(srv.Unmount, abs)
			select {
			case <-served:
			case <-time.After(10 * time.Second):
				slog.Warn("FUSE server still running after unmount; saving anyway")
			}
			break wait
		}
	}
	// Drain a late SIGUSR2 sent just before the unmount; the marker file
	// of `sphere unmount --no-wait` settles it whatever the signal's timing.
	for len(usr) > 0 {
		if <-usr == syscall.SIGUSR2 {
			noWait = true
		}
	}
	if err := os.Remove(noWaitFile(pidFile)); err == nil {
		noWait = true
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if noWait {
		if err := tree.CloseNoWait(sctx); err != nil {
			return fmt.Errorf("unmount %s: %w", abs, err)
		}
		if s := pendingLine(h); s != "" {
			fmt.Fprintf(g.stderr, "sphere: %s; uploaded by the next mount or 'sphere sync'\n", s)
		}
		return nil
	}
	// Upload everything still pending, with progress. Bounded, but
	// generous: a big file may still be uploading.
	done := make(chan struct{})
	go progress(g.stderr, 2*time.Second, done, func() string {
		if r, b := tree.Pending(); r > 0 || b > 0 {
			return fmt.Sprintf("uploading before exit: %d changes, %s of files not yet on the grid", r, humanBytes(b))
		}
		return ""
	})
	err = tree.Close(sctx)
	close(done)
	if err != nil {
		return fmt.Errorf("unmount %s: not everything reached the grid (kept in the journal for the next mount or 'sphere sync'): %w", abs, err)
	}
	return nil
}

// unmountServer unmounts, retrying while the mount is busy, and detaches
// it lazily as a last resort so the process can save and exit.
func unmountServer(unmount func() error, dir string) {
	var err error
	for i := 0; i < 10; i++ {
		if err = unmount(); err == nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	slog.Warn("Unmount failed; detaching lazily", "dir", dir, "err", err)
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		slog.Warn("Lazy unmount failed", "dir", dir, "err", err)
	}
}

// mountPidFile is where a mount process records its pid, so that
// `sphere unmount` can wait until everything is saved.
func mountPidFile(h *home.Home, absDir string) string {
	sum := sha256.Sum256([]byte(absDir))
	return h.Path("run", "mount-"+hex.EncodeToString(sum[:8])+".pid")
}
