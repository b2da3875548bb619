package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// maxInvitePeers bounds the members an invite names besides this node.
const maxInvitePeers = 7

func newInviteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "invite",
		Short: "Print an invite code that lets another node join this grid",
		Long: `invite prints a code holding the grid key and where to reach this node (and a
few members it is connected to). Give it to a friend over a private channel: whoever
holds it can join the grid and store shares on it. The friend runs 'sphere join CODE'.
The code is the last line of the output.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			psk, err := h.GridKey()
			if err != nil {
				return err
			}
			peers, running, err := invitePeers(cmd, h)
			if err != nil {
				return err
			}
			code := node.Invite{PSK: psk, Peers: peers}.String()
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"invite": code, "nodeRunning": running})
			}
			if !running {
				fmt.Fprintln(g.stdout, "Note: no node is running for this home; start one with `sphere node` so the invite works.")
			}
			fmt.Fprintln(g.stdout, "Give this code to a friend (privately: it holds the grid key); they run `sphere join CODE`:")
			fmt.Fprintln(g.stdout, code)
			return nil
		},
	}
}

// invitePeers is this node (its live addresses when running, else the
// configured listen addresses) followed by connected members.
func invitePeers(cmd *cobra.Command, h *home.Home) ([]peer.AddrInfo, bool, error) {
	c, err := node.DialControl(cmd.Context(), h.ControlFile())
	if err == nil {
		st, err := c.Status(cmd.Context())
		if err != nil {
			return nil, false, err
		}
		self, err := node.ParseAddrs(st.Addrs)
		if err != nil {
			return nil, false, err
		}
		all, err := c.Peers(cmd.Context())
		if err != nil {
			return nil, false, err
		}
		members, err := node.ParseAddrs(all)
		if err != nil {
			return nil, false, err
		}
		out := self
		for _, m := range members {
			if len(out) > maxInvitePeers || st.LocalServers > 0 {
				break // under `sphere up` the other peers are local servers, not members
			}
			if len(self) == 0 || m.ID != self[0].ID {
				out = append(out, m)
			}
		}
		return out, true, nil
	}
	if !errors.Is(err, node.ErrNotRunning) {
		return nil, false, err
	}
	_, id, err := h.NodeIdentity()
	if err != nil {
		return nil, false, err
	}
	ai := peer.AddrInfo{ID: peer.ID(id)}
	for _, s := range h.Config.Node.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, false, fmt.Errorf("config node.listen %q: %w", s, err)
		}
		ai.Addrs = append(ai.Addrs, a)
	}
	if len(ai.Addrs) == 0 {
		return nil, false, errors.New("invite: the node has no listen addresses (config node.listen)")
	}
	return []peer.AddrInfo{ai}, false, nil
}
