package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
)

func newRmCmd(g *globals) *cobra.Command {
	var recursive, force bool
	cmd := &cobra.Command{
		Use:   "rm [-r] [-f] PATH...",
		Short: "Remove files or directories from your drive",
		Long: `rm removes each PATH from its directory. A directory needs -r, which removes
everything below it. -f: a missing PATH is not an error. The top of a tree
cannot be removed. What was stored stays on the grid until its leases run
out; anyone who kept a cap to it can still read it until then.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts := newTrees(cmd.Context(), g)
			var removed []string
			err := func() error {
				for _, a := range args {
					ref, _, err := parseTreeArg(a, true)
					if err != nil {
						return err
					}
					if ref.path == "" {
						return usageError{fmt.Errorf("rm %s: refusing to remove the top of a tree", ref)}
					}
					n, err := rmRef(ts, ref, recursive, force)
					if n > 0 {
						removed = append(removed, ref.String())
					}
					if err != nil {
						return err
					}
				}
				return nil
			}()
			if err = errors.Join(err, ts.close()); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"removed": nonNil(removed)})
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and everything below them")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "ignore missing paths")
	return cmd
}

// maxRmDepth bounds the recursion of rm -r (a tree of caps can be a graph).
const maxRmDepth = 256

// rmRef removes ref, returning how many nodes went.
func rmRef(ts *trees, ref treeRef, recursive, force bool) (int, error) {
	t, err := ts.get(ref)
	if err != nil {
		return 0, fmt.Errorf("rm %s: %w", ref, err)
	}
	in, err := t.Stat(ts.ctx, ref.path)
	if err != nil {
		if force && errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("rm: %w", err)
	}
	if in.Type != fs.TypeDir {
		if err := t.Unlink(ts.ctx, ref.path); err != nil {
			return 0, fmt.Errorf("rm: %w", err)
		}
		return 1, nil
	}
	if !recursive {
		return 0, fmt.Errorf("rm %s: %w (use -r)", ref, fs.ErrIsDir)
	}
	return rmTree(ts, t, ref.path, 0)
}

func rmTree(ts *trees, t *fs.FS, p string, depth int) (int, error) {
	if depth > maxRmDepth {
		return 0, fmt.Errorf("rm %s: deeper than %d levels", p, maxRmDepth)
	}
	list, err := t.ReadDir(ts.ctx, p)
	if err != nil {
		return 0, fmt.Errorf("rm: %w", err)
	}
	n := 0
	for _, in := range list {
		child := p + "/" + in.Name
		if in.Type == fs.TypeDir {
			m, err := rmTree(ts, t, child, depth+1)
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		if err := t.Unlink(ts.ctx, child); err != nil {
			return n, fmt.Errorf("rm: %w", err)
		}
		n++
	}
	if err := t.Rmdir(ts.ctx, p); err != nil {
		return n, fmt.Errorf("rm: %w", err)
	}
	return n + 1, nil
}
