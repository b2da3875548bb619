package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
)

func newMkdirCmd(g *globals) *cobra.Command {
	var parents bool
	cmd := &cobra.Command{
		Use:   "mkdir [-p] PATH...",
		Short: "Make directories in your drive",
		Long: `mkdir makes each PATH (a path in your drive, or CAP/PATH below a writable
directory cap). With -p, missing parents are made too and an existing
directory is not an error.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts := newTrees(cmd.Context(), g)
			var made []string
			err := func() error {
				for _, a := range args {
					ref, _, err := parseTreeArg(a, true)
					if err != nil {
						return err
					}
					if ref.path == "" {
						if parents {
							continue
						}
						return fmt.Errorf("mkdir %s: %w", ref, fs.ErrExist)
					}
					m, err := mkdirRef(ts, ref, parents)
					made = append(made, m...)
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
				return json.NewEncoder(g.stdout).Encode(map[string]any{"created": nonNil(made)})
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "make parents as needed; no error if the directory exists")
	return cmd
}

// mkdirRef makes ref's directory (and with parents, its missing ancestors),
// returning what it made.
func mkdirRef(ts *trees, ref treeRef, parents bool) ([]string, error) {
	t, err := ts.get(ref)
	if err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", ref, err)
	}
	if !parents {
		if err := t.Mkdir(ts.ctx, ref.path, 0o755); err != nil {
			return nil, fmt.Errorf("mkdir: %w", err)
		}
		return []string{ref.String()}, nil
	}
	var made []string
	els := strings.Split(ref.path, "/")
	for i := range els {
		p := strings.Join(els[:i+1], "/")
		in, err := t.Stat(ts.ctx, p)
		switch {
		case err == nil && in.Type == fs.TypeDir:
			continue
		case err == nil:
			return made, fmt.Errorf("mkdir %s: %w", p, fs.ErrNotDir)
		case !errors.Is(err, fs.ErrNotExist):
			return made, fmt.Errorf("mkdir: %w", err)
		}
		if err := t.Mkdir(ts.ctx, p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return made, fmt.Errorf("mkdir: %w", err)
		}
		made = append(made, treeRef{capStr: ref.capStr, path: p}.String())
	}
	return made, nil
}

// nonNil keeps JSON output an array, never null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
