package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func newGetCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get CAP [-o FILE]",
		Short: "Fetch a file by its read cap",
		Long: `get downloads, verifies and decrypts the file CAP names, to FILE or standard
output. Every block is checked against the cap before it is used; with -o the
file appears only once it is complete.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := parseCap(args[0])
			if err != nil {
				return err
			}
			h, err := openHome()
			if err != nil {
				return err
			}
			size := capSize(c)
			update, finish := newProgress(g, size, "get")
			// download goes through the running node when one offers it.
			download := func(w io.Writer) error {
				if ok, err := getViaNode(ctx, h, c.String(), w, update); ok {
					return err
				}
				cl, closeFn, err := openClient(ctx, h)
				if err != nil {
					return err
				}
				defer closeFn()
				return cl.Download(ctx, c, w, update)
			}
			if out == "" || out == "-" {
				err = download(g.stdout)
				finish()
				if err != nil {
					return fmt.Errorf("get: %w", err)
				}
				return nil
			}
			if st, err := os.Stat(out); err == nil && !st.Mode().IsRegular() {
				// A device, fifo or socket (say /dev/null): write to it
				// directly; renaming over it would replace it with a file.
				if st.IsDir() {
					return fmt.Errorf("get: %s is a directory", out)
				}
				f, err := os.OpenFile(out, os.O_WRONLY, 0)
				if err != nil {
					return fmt.Errorf("get: %w", err)
				}
				err = download(f)
				finish()
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("get: %w", err)
				}
				return nil
			}
			// Write beside the target and rename, so a failed get leaves no partial file.
			f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".sphere-*")
			if err != nil {
				return fmt.Errorf("get: %w", err)
			}
			err = download(f)
			finish()
			if err == nil {
				err = f.Close()
			} else {
				f.Close()
			}
			if err == nil {
				err = os.Rename(f.Name(), out)
			}
			if err != nil {
				os.Remove(f.Name())
				return fmt.Errorf("get: %w", err)
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"file": out, "size": size})
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of standard output")
	return cmd
}
