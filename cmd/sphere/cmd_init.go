package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
)

func newInitCmd(g *globals) *cobra.Command {
	servers := 10
	var quota string
	var shares string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a home: secrets, identity and an embedded local grid",
		Long: `init creates the home directory ($SPHERE_HOME, else $XDG_DATA_HOME/sphere, else
~/.local/share/sphere): the convergence and lease secrets, the node's identity and
listen ports, and an embedded local grid of disk-backed storage servers, so put and
get work at once on this machine.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if servers < 1 || servers > 255 {
				return usageError{fmt.Errorf("--servers: want 1..255, have %d", servers)}
			}
			if _, err := parseQuota(quota); err != nil {
				return err
			}
			params := caps.DefaultParams()
			if shares != "" {
				var err error
				if params, err = parseShares(shares, params); err != nil {
					return err
				}
			}
			dir, err := home.DefaultDir()
			if err != nil {
				return err
			}
			h, err := home.Init(dir, servers)
			if err != nil {
				return err
			}
			if params != h.Config.Params {
				h.Config.Params = params
				if err := h.Save(); err != nil {
					return err
				}
			}
			if err := initNode(h); err != nil {
				return fmt.Errorf("init node: %w", err)
			}
			if err := setQuota(h, quota); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"home": h.Dir, "localServers": servers, "shares": sharesString(h.Config.Params)})
			}
			fmt.Fprintf(g.stdout, "Initialised %s with a local grid of %d servers (k=%d, happy=%d, n=%d).\n",
				h.Dir, servers, h.Config.Params.K, h.Config.Params.Happy, h.Config.Params.N)
			fmt.Fprintf(g.stdout, "Next: sphere put FILE   (prints a cap)   sphere get CAP -o FILE   sphere up\n")
			return nil
		},
	}
	cmd.Flags().IntVar(&servers, "servers", servers, "number of servers in the embedded local grid")
	cmd.Flags().StringVar(&quota, "quota", "", "space this home's stores may use in total, e.g. 20G (0: no limit; default: 10% of the free space, at most 100G)")
	cmd.Flags().StringVar(&shares, "shares", "", sharesUsage)
	return cmd
}

// initNode prepares the node part of a new home (identity, listen ports,
// grid key).
func initNode(h *home.Home) error { return home.InitNode(h) }

// parseQuota parses --quota; -1 means not given.
func parseQuota(quota string) (int64, error) {
	if quota == "" {
		return -1, nil
	}
	q, err := home.ParseSize(quota)
	if err != nil {
		return 0, usageError{fmt.Errorf("--quota: %w", err)}
	}
	return q, nil
}

// setQuota applies --quota (not given: keep the default init chose).
func setQuota(h *home.Home, quota string) error {
	q, err := parseQuota(quota)
	if err != nil || q < 0 {
		return err
	}
	h.Config.Node.Quota = q
	return h.Save()
}
