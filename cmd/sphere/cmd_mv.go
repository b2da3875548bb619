package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
)

func newMvCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mv SRC DST",
		Short: "Move or rename within your drive",
		Long: `mv renames SRC to DST within one tree (your drive, or one directory cap). When
DST is an existing directory, SRC moves into it under its own name; an
existing file at DST is replaced. Moving never copies data: only directory
entries change. Between trees, use cp then rm.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, _, err := parseTreeArg(args[0], true)
			if err != nil {
				return err
			}
			dst, _, err := parseTreeArg(args[1], true)
			if err != nil {
				return err
			}
			if src.capStr != dst.capStr {
				return usageError{fmt.Errorf("mv %s %s: not in the same tree (use cp, then rm)", src, dst)}
			}
			if src.path == "" {
				return usageError{fmt.Errorf("mv %s: cannot move the top of a tree", src)}
			}
			ts := newTrees(cmd.Context(), g)
			final, err := mvRef(ts, src, dst)
			if err = errors.Join(err, ts.close()); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"from": src.String(), "to": final.String()})
			}
			return nil
		},
	}
	return cmd
}

func mvRef(ts *trees, src, dst treeRef) (treeRef, error) {
	t, err := ts.get(src)
	if err != nil {
		return dst, fmt.Errorf("mv %s: %w", src, err)
	}
	if _, err := t.Stat(ts.ctx, src.path); err != nil {
		return dst, fmt.Errorf("mv: %w", err)
	}
	if in, err := t.Stat(ts.ctx, dst.path); err == nil && in.Type == fs.TypeDir {
		dst = dst.join(src.base())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return dst, fmt.Errorf("mv: %w", err)
	}
	if dst.path == src.path {
		return dst, nil
	}
	if len(dst.path) > len(src.path) && dst.path[:len(src.path)+1] == src.path+"/" {
		return dst, usageError{fmt.Errorf("mv %s %s: cannot move a directory into itself", src, dst)}
	}
	if err := t.Rename(ts.ctx, src.path, dst.path); err != nil {
		return dst, fmt.Errorf("mv: %w", err)
	}
	return dst, nil
}
