package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
)

// maxRenewCaps bounds the caps one renew walks.
const maxRenewCaps = 1 << 20

func newRenewCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "renew",
		Short: "Renew the leases on everything this home stored",
		Long: `renew extends this home's leases on every server holding shares of the files
this home put (listed in the home's caps file) and of everything below the drive's
root directory (the tree 'sphere mount' shows). Servers date leases themselves:
each renewal lasts their lease term (90 days by default) from now, and shares whose
leases have all expired are deleted after a grace period (30 days by default). Run
it monthly.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openHome()
			if err != nil {
				return err
			}
			list, err := readCapsFile(h.CapsFile())
			if err != nil {
				return err
			}
			res := struct {
				Caps    int `json:"caps"`
				Renewed int `json:"renewed"`
				Failed  int `json:"failed"`
			}{Caps: len(list)}
			root, err := rootCapIfAny(h)
			if err != nil {
				return err
			}
			if len(list) > 0 || root != nil {
				c, closeFn, err := openClient(ctx, h)
				if err != nil {
					return err
				}
				defer closeFn()
				for _, cp := range list {
					if err := c.RenewLeases(ctx, cp); err != nil {
						res.Failed++
						fmt.Fprintf(g.stderr, "sphere: renew: %v\n", err)
						continue
					}
					res.Renewed++
				}
				if root != nil {
					w := renewWalk{c: c, stderr: g.stderr, seen: map[string]bool{}}
					w.walk(ctx, root, 0)
					res.Caps += w.total
					res.Renewed += w.renewed
					res.Failed += w.failed
				}
			}
			if res.Renewed > 0 {
				if err := saveRenewal(h, renewRecord{Time: time.Now().UTC(), Caps: res.Caps, Renewed: res.Renewed, Failed: res.Failed, By: "renew"}); err != nil {
					fmt.Fprintf(g.stderr, "sphere: renew: %v\n", err)
				}
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "Renewed leases of %d of %d files and directories.\n", res.Renewed, res.Caps)
			}
			if res.Failed > 0 {
				return fmt.Errorf("renew: %d files failed: %w", res.Failed, errUnhealthy)
			}
			return nil
		},
	}
}

// readCapsFile parses the caps file, one cap a line, skipping duplicates
// and blank lines. A missing file is an empty list.
func readCapsFile(path string) ([]caps.Cap, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []caps.Cap
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || seen[s] {
			continue
		}
		if len(out) >= maxRenewCaps {
			return nil, fmt.Errorf("renew: %s: more than %d caps", path, maxRenewCaps)
		}
		seen[s] = true
		cp, err := parseCap(s)
		if err != nil {
			return nil, fmt.Errorf("renew: %s line %d: %w", path, line, err)
		}
		out = append(out, cp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("renew: %s: %w", path, err)
	}
	return out, nil
}

// rootCapIfAny returns the drive's root directory cap, or nil if the home
// has none yet (no mount or tree verb has created it).
func rootCapIfAny(h *home.Home) (caps.Cap, error) {
	b, err := os.ReadFile(h.Path(rootCapFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	return parseCap(strings.TrimSpace(string(b)))
}

// maxRenewDepth bounds how deep renew descends; directories can form
// cycles (a cap pasted into its own subtree), which seen also stops.
const maxRenewDepth = 256

// renewWalk renews the leases of a directory tree, each node once.
type renewWalk struct {
	c                      *grid.Client
	stderr                 io.Writer
	seen                   map[string]bool
	total, renewed, failed int
}

func (w *renewWalk) fail(err error) {
	w.failed++
	fmt.Fprintf(w.stderr, "sphere: renew: %v\n", err)
}

// walk renews cp and, for a directory, everything below it.
func (w *renewWalk) walk(ctx context.Context, cp caps.Cap, depth int) {
	key := cp.String()
	if w.seen[key] || w.total >= maxRenewCaps || depth > maxRenewDepth || ctx.Err() != nil {
		return
	}
	w.seen[key] = true
	w.total++
	switch cp.Kind() {
	case caps.KindDirWrite, caps.KindDirRead, caps.KindMutableWrite, caps.KindMutableRead:
		if _, err := w.c.RenewMutable(ctx, cp); err != nil {
			w.fail(err)
			return
		}
	default:
		if err := w.c.RenewLeases(ctx, cp); err != nil {
			w.fail(err)
			return
		}
	}
	w.renewed++
	if k := cp.Kind(); k != caps.KindDirWrite && k != caps.KindDirRead {
		return
	}
	t, _, err := w.c.ReadDir(ctx, cp)
	if err != nil {
		w.fail(err)
		return
	}
	for e := range t.All() {
		if e.ReadCap == "" { // symlink
			continue
		}
		child, err := caps.Parse(e.ReadCap)
		if err != nil {
			w.fail(fmt.Errorf("entry %q: %w", e.Name, err))
			continue
		}
		w.walk(ctx, child, depth+1)
	}
}
