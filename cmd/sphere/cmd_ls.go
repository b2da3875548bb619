package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
)

func newLsCmd(g *globals) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls [PATH|CAP[/PATH]]",
		Short: "List a directory of your drive, or one a cap names",
		Long: `ls lists a directory without a mount: a path in your drive ("/photos" or
"sphere:/photos"; nothing means the top), or a directory cap with an optional
path below it ("sphere:dir-ro:…/2024"). A file is listed as itself.
-l adds type and mode, size and modification time; --json prints one object
per entry, with its read cap.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := ""
			if len(args) == 1 {
				arg = args[0]
			}
			ref, _, err := parseTreeArg(arg, true)
			if err != nil {
				return err
			}
			ts := newTrees(cmd.Context(), g)
			err = runLs(ts, ref, long)
			return errors.Join(err, ts.close())
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "long form: mode, size, modification time")
	return cmd
}

// lsEntry is one entry of `ls --json`.
type lsEntry struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"`
	Mtime   time.Time `json:"mtime"`
	Target  string    `json:"target,omitempty"`
	ReadCap string    `json:"readcap,omitempty"`
}

func runLs(ts *trees, ref treeRef, long bool) error {
	t, err := ts.get(ref)
	if err != nil {
		return fmt.Errorf("ls %s: %w", ref, err)
	}
	info, err := t.Stat(ts.ctx, ref.path)
	if err != nil {
		return fmt.Errorf("ls: %w", err)
	}
	list := []fs.Info{info}
	if info.Type == fs.TypeDir {
		if list, err = t.ReadDir(ts.ctx, ref.path); err != nil {
			return fmt.Errorf("ls: %w", err)
		}
	} else if list[0].Name == "" {
		list[0].Name = ref.base()
	}
	if ts.g.json {
		out := make([]lsEntry, 0, len(list))
		for _, in := range list {
			e := lsEntry{Name: in.Name, Type: in.Type.String(), Size: in.Size, Mode: lsMode(in),
				Mtime: in.Mtime.UTC(), Target: in.Target}
			if in.Cap != nil {
				if rc, err := ts.session.grid.ReadOnly(in.Cap); err == nil {
					e.ReadCap = rc.String()
				}
			}
			out = append(out, e)
		}
		enc := json.NewEncoder(ts.g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printLs(ts.g.stdout, list, long)
}

// printLs writes names one a line; long adds mode, size and mtime, and a
// symlink's target, as ls -l does.
func printLs(w io.Writer, list []fs.Info, long bool) error {
	if !long {
		for _, in := range list {
			name := in.Name
			if in.Type == fs.TypeDir {
				name += "/"
			}
			if _, err := fmt.Fprintln(w, name); err != nil {
				return err
			}
		}
		return nil
	}
	width := 1
	for _, in := range list {
		width = max(width, len(strconv.FormatInt(in.Size, 10)))
	}
	for _, in := range list {
		name := in.Name
		if in.Type == fs.TypeSymlink {
			name += " -> " + in.Target
		}
		if _, err := fmt.Fprintf(w, "%s %*d %s %s\n", lsMode(in), width, in.Size,
			in.Mtime.Local().Format("2006-01-02 15:04"), name); err != nil {
			return err
		}
	}
	return nil
}

// lsMode is the mode as ls -l prints it: a type letter, then rwx bits.
func lsMode(in fs.Info) string {
	typ := "-"
	switch in.Type {
	case fs.TypeDir:
		typ = "d"
	case fs.TypeSymlink:
		typ = "l"
	}
	return typ + iofs.FileMode(in.Mode & 0o777).String()[1:]
}
