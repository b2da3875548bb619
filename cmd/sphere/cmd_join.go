package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

func newJoinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join CODE",
		Short: "Join the grid of an invite code from 'sphere invite'",
		Long: `join records the grid key and peers of an invite in this home's config, so the
node connects to them whenever it runs; if the node is running now, it connects at
once. Joining a different grid than the node runs on needs a node restart.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := node.ParseInvite(args[0])
			if err != nil {
				return usageError{err}
			}
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			oldKey, err := h.GridKey()
			if err != nil {
				return err
			}
			if err := saveJoin(h, inv); err != nil {
				return err
			}
			res := map[string]any{"peers": len(inv.Peers), "saved": true, "nodeRunning": false}
			c, err := node.DialControl(cmd.Context(), h.ControlFile())
			switch {
			case errors.Is(err, node.ErrNotRunning):
				if !g.json {
					fmt.Fprintf(g.stdout, "Joined: the node will connect to %d peers when it runs (`sphere node`).\n", len(inv.Peers))
				}
			case err != nil:
				return err
			case !bytes.Equal(oldKey, inv.PSK):
				res["nodeRunning"] = true
				if !g.json {
					fmt.Fprintln(g.stdout, "Joined a different grid: restart the node (`sphere node`) to switch to it.")
				}
			default:
				res["nodeRunning"] = true
				jr, err := c.Join(cmd.Context(), args[0])
				if err != nil {
					return fmt.Errorf("join (saved in config; the node will retry): %w", err)
				}
				res["connected"] = jr.Connected
				if !g.json {
					fmt.Fprintf(g.stdout, "Joined: connected to %d peers.\n", jr.Connected)
				}
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(res)
			}
			return nil
		},
	}
}

// saveJoin records the invite's grid key (unless it is the home's own)
// and peers in config.json.
func saveJoin(h *home.Home, inv node.Invite) error {
	own, err := h.Secret("grid.key")
	if err == nil && bytes.Equal(own, inv.PSK) {
		h.Config.Node.GridKey = ""
	} else {
		if h.Config.Node.GridKey != "" && h.Config.Node.GridKey != hex.EncodeToString(inv.PSK) {
			// A new grid: the old grid's peers cannot be reached any more.
			h.Config.Node.Peers = nil
		}
		h.Config.Node.GridKey = hex.EncodeToString(inv.PSK)
	}
	for _, a := range node.FormatAddrs(inv.Peers) {
		if !slices.Contains(h.Config.Node.Peers, a) {
			h.Config.Node.Peers = append(h.Config.Node.Peers, a)
		}
	}
	if err := h.Save(); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return nil
}
