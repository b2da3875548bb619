package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/fs/journal"
)

func newSyncCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Upload to the grid now what mounts saved only on this machine",
		Long: `sync returns once everything closed or fsynced in this home's mounts is on
the grid, i.e. readable from other machines. A running mount is asked to
upload at once (and sync waits for it, showing progress); what a stopped or
crashed mount left in the journal is uploaded by sync itself.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSync(cmd.Context(), g, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func runSync(ctx context.Context, g *globals, timeout time.Duration) error {
	h, err := openHome()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dirs, records, bytes := pendingJournal(h)
	if records > 0 || bytes > 0 {
		pids := mountPids(h)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGUSR1)
		}
		// Journals no running mount holds: upload them here.
		var client *fs.Grid
		for _, d := range dirs {
			r, b, _ := journal.Stat(d)
			if r == 0 && b == 0 {
				continue
			}
			if client == nil {
				c, closeFn, err := openClient(ctx, h)
				if err != nil {
					if len(pids) > 0 {
						break // the stores are the mount's; it uploads
					}
					return err
				}
				defer closeFn()
				gr := fs.FromClient(c)
				client = &gr
			}
			if err := fs.ReplayJournal(ctx, *client, d, fs.Options{}); err != nil && !errors.Is(err, journal.ErrInUse) {
				return fmt.Errorf("sync: %w", err)
			}
		}
		// Wait for the mounts, with progress.
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			_, records, bytes = pendingJournal(h)
			if records == 0 && bytes == 0 {
				break
			}
			if time.Since(last) > 2*time.Second {
				fmt.Fprintf(g.stderr, "sphere: uploading: %s\n", pendingLine(h))
				last = time.Now()
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("sync: %s after %s: %w", pendingLine(h), timeout, ctx.Err())
			case <-t.C:
			}
		}
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"pendingChanges": 0, "pendingBytes": 0})
	}
	fmt.Fprintln(g.stdout, "Everything is on the grid.")
	return nil
}
