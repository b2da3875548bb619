package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Look after the stores this home keeps for the grid",
	}
	cmd.AddCommand(newStoreFsckCmd(g))
	return cmd
}

func newStoreFsckCmd(g *globals) *cobra.Command {
	var rebuild bool
	cmd := &cobra.Command{
		Use:   "fsck [--rebuild] [DIR]",
		Short: "Check a store, and rebuild its index from its share files",
		Long: `fsck checks the store in DIR (default: every store of this home: the node's
storage/ and the local grid's servers/NN/). The node must not be running.

A store whose index (store.db) is damaged is out of service: 'sphere status' names
it and it answers every request with an error, while the other stores serve on.
--rebuild then builds a new index from the share files, keeping what of the old
index still reads (small shares kept in the index, mutable slots, leases); shares
left without a lease get a fresh one, so their owners have a full lease term to
renew them. The damaged index is kept beside as store.db.damaged-<time>.
Afterwards run 'sphere check --repair' on your files to re-create shares that were
lost. Exit code 4: a store is (still) damaged.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openHome()
			if err != nil && len(args) == 0 {
				return err
			}
			var dirs []string
			if len(args) == 1 {
				dirs = []string{args[0]}
			} else {
				dirs = homeStores(h)
				if len(dirs) == 0 {
					return fmt.Errorf("no stores in %s", h.Dir)
				}
			}
			var reports []*boltserver.FsckReport
			bad := 0
			for _, dir := range dirs {
				rep, err := boltserver.Fsck(cmd.Context(), dir, boltserver.FsckOptions{Rebuild: rebuild, ID: storeID(h, dir)})
				if errors.Is(err, boltserver.ErrInUse) {
					return fmt.Errorf("%w (stop `sphere up` or `sphere node` first)", err)
				}
				if rep == nil {
					rep = &boltserver.FsckReport{Dir: dir}
				}
				if err != nil {
					rep.Problems = append(rep.Problems, err.Error())
					rep.Healthy = false
				}
				if !rep.Healthy {
					bad++
				}
				reports = append(reports, rep)
				if !g.json {
					printFsck(g, rep, rebuild)
				}
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(reports); err != nil {
					return err
				}
			}
			if bad > 0 {
				hint := ""
				if !rebuild {
					hint = " (run again with --rebuild)"
				}
				return fmt.Errorf("store fsck: %d of %d stores damaged%s: %w", bad, len(dirs), hint, errUnhealthy)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "rebuild a damaged store's index from its share files")
	return cmd
}

func printFsck(g *globals, rep *boltserver.FsckReport, rebuild bool) {
	switch {
	case rep.Healthy && !rep.Rebuilt:
		fmt.Fprintf(g.stdout, "%s: healthy\n", rep.Dir)
		return
	case rep.Rebuilt:
		fmt.Fprintf(g.stdout, "%s: was damaged; index rebuilt: %d share files, %d small shares, %d slot shares, %d leases kept, %d fresh leases, %d entries dropped; old index kept as %s\n",
			rep.Dir, rep.FileShares, rep.InlineShares, rep.SlotShares, rep.Leases, rep.NewLeases, rep.Dropped, rep.OldIndex)
	default:
		fmt.Fprintf(g.stdout, "%s: DAMAGED\n", rep.Dir)
	}
	for i, p := range rep.Problems {
		if i == 10 {
			fmt.Fprintf(g.stdout, "  ... and %d more\n", len(rep.Problems)-i)
			break
		}
		fmt.Fprintf(g.stdout, "  %s\n", strings.TrimSpace(p))
	}
	if !rep.Healthy && !rebuild {
		fmt.Fprintf(g.stdout, "  repair: sphere store fsck --rebuild %s\n", rep.Dir)
	}
}

// homeStores lists the store directories of h that exist.
func homeStores(h *home.Home) []string {
	var out []string
	cands := []string{h.StorageDir()}
	if ents, err := os.ReadDir(h.Path("servers")); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				cands = append(cands, h.Path("servers", e.Name()))
			}
		}
	}
	for _, d := range cands {
		if isStore(d) {
			out = append(out, d)
		}
	}
	return out
}

func isStore(dir string) bool {
	for _, n := range []string{"store.db", "shares"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// storeID is the server id a store of h has: the node's identity for its
// storage, the store's own identity.key otherwise; empty if unknown (the
// store's index says it).
func storeID(h *home.Home, dir string) grid.ServerID {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	if h != nil && abs(dir) == abs(h.StorageDir()) {
		if _, id, err := h.NodeIdentity(); err == nil {
			return id
		}
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, "identity.key")); err != nil {
		return "" // do not create one
	}
	if _, id, err := home.Identity(dir); err == nil {
		return id
	}
	return ""
}
