package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
)

func newPutCmd(g *globals) *cobra.Command {
	var random bool
	var shares string
	cmd := &cobra.Command{
		Use:   "put FILE|-",
		Short: "Store an immutable file on the grid and print its read cap",
		Long: `put encrypts FILE (or standard input for "-"), erasure-codes it into shares and
stores them on the grid, then prints the read cap: the string that finds and
decrypts the file. Keys are convergent (the same file from the same home is
stored once) unless --random-key is given. --shares K,H,N overrides the home's
encoding (set by 'sphere init --shares') for this file.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openHome()
			if err != nil {
				return err
			}
			viaNode := true
			if shares != "" {
				p, err := parseShares(shares, h.Config.Params)
				if err != nil {
					return err
				}
				// The node encodes with the home's setting: another one is
				// done here, through the node's peers.
				viaNode = p == h.Config.Params
				h.Config.Params = p // this process only; not saved
			}
			if viaNode {
				if capStr, size, ok, err := putViaNode(ctx, h, args[0], random); ok {
					if err != nil {
						return fmt.Errorf("put %s: %w", args[0], err)
					}
					return putDone(h, g, capStr, size)
				}
			}
			src, size, cleanup, err := openSource(h, g, args[0])
			if err != nil {
				return err
			}
			defer cleanup()
			c, closeFn, err := openClient(ctx, h)
			if err != nil {
				return err
			}
			defer closeFn()
			update, finish := newProgress(g, size, "put")
			capv, err := c.Upload(ctx, src, size, grid.UploadOptions{RandomKey: random, Progress: update})
			finish()
			if err != nil {
				return fmt.Errorf("put %s: %w", args[0], err)
			}
			return putDone(h, g, capv.String(), size)
		},
	}
	cmd.Flags().BoolVar(&random, "random-key", false, "use a random key instead of a convergent one")
	cmd.Flags().StringVar(&shares, "shares", "", sharesUsage+"; default: the home's")
	return cmd
}

// putDone remembers and prints a stored file's cap.
func putDone(h *home.Home, g *globals, capStr string, size int64) error {
	if err := rememberCap(h, capStr); err != nil {
		return err
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"cap": capStr, "size": size})
	}
	fmt.Fprintln(g.stdout, capStr)
	return nil
}

// openSource opens FILE, or spools standard input to a temporary file
// because convergent encryption reads the plaintext twice.
func openSource(h *home.Home, g *globals, name string) (io.ReaderAt, int64, func(), error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, nil, err
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return nil, 0, nil, fmt.Errorf("put %s: not a regular file", name)
		}
		return f, st.Size(), func() { f.Close() }, nil
	}
	f, err := os.CreateTemp("", "sphere-put-*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spool stdin: %w", err)
	}
	os.Remove(f.Name()) // unlinked: vanishes when closed, even on a crash
	n, err := io.Copy(f, g.stdin)
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("spool stdin: %w", err)
	}
	return f, n, func() { f.Close() }, nil
}

var capsFileMu sync.Mutex

// rememberCap appends a cap to <home>/caps, the list `sphere renew` walks,
// and fsyncs it.
func rememberCap(h *home.Home, c string) error {
	capsFileMu.Lock()
	defer capsFileMu.Unlock()
	f, err := os.OpenFile(h.Path("caps"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("remember cap: %w", err)
	}
	if _, err := fmt.Fprintln(f, c); err != nil {
		f.Close()
		return fmt.Errorf("remember cap: %w", err)
	}
	// A cap lost from this list is never renewed, and its file expires
	// with its leases: make it durable before put reports success.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("remember cap: %w", err)
	}
	return f.Close()
}
