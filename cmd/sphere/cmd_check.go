package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/grid"
)

func newCheckCmd(g *globals) *cobra.Command {
	var opts grid.CheckOptions
	cmd := &cobra.Command{
		Use:   "check [--verify] [--repair] CAP",
		Short: "Report which shares of a file are where, and whether they are healthy",
		Long: `check asks every server which shares of CAP it holds. --verify also downloads
and hashes every block of every share and names servers holding corrupt ones.
--repair re-creates missing or corrupt shares on servers that lack them; it
works with a verify cap too (shares are rebuilt from ciphertext, so whoever
repairs never holds the key). Exit code 4 means the file is (still) unhealthy.`,
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
			cl, closeFn, err := openClient(ctx, h)
			if err != nil {
				return err
			}
			defer closeFn()
			rep, err := cl.Check(ctx, c, opts)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprint(g.stdout, rep.String())
			}
			healthy := rep.Healthy
			if rep.Repair != nil && rep.Repair.After != nil {
				healthy = rep.Repair.After.Healthy // the state the repair left
			}
			if !healthy {
				return fmt.Errorf("check: %w", errUnhealthy)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Verify, "verify", false, "download and hash every share")
	cmd.Flags().BoolVar(&opts.Repair, "repair", false, "re-create missing or corrupt shares")
	return cmd
}
