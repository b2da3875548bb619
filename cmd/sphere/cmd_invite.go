package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

func newInviteCmd(g *globals) *cobra.Command {
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Print a one-time invite code that lets one more node join this grid",
		Long: `invite prints a fresh code each time: one per friend. It holds the grid key,
a one-time token and where to reach this node (and a few members). The friend runs
'sphere join' (pasting the code on stdin keeps it out of shell history) while this
node runs; the node then admits the friend's node to the grid's signed member list
and the code is spent. A code that was used, or is older than --expires, admits
nobody. Only the grid's admin (the node of the home that founded the grid) invites.
The code is the last line of the output.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if expires <= 0 {
				return usageError{errors.New("invite: --expires must be positive")}
			}
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			code, exp, running, err := issueInvite(cmd, h, expires)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"invite": code, "expires": exp, "nodeRunning": running})
			}
			if !running {
				fmt.Fprintln(g.stdout, "Note: no node is running for this home; start one with `sphere node` so the invite can be redeemed.")
			}
			fmt.Fprintf(g.stdout, "One-time invite for one node, valid until %s. Give it privately (it holds the grid key);\n", exp.Local().Format(time.RFC1123))
			fmt.Fprintln(g.stdout, "they run `sphere join` and paste it (or `sphere join CODE`):")
			fmt.Fprintln(g.stdout, code)
			return nil
		},
	}
	cmd.Flags().DurationVar(&expires, "expires", node.DefaultInviteExpiry, "how long the invite stays valid")
	return cmd
}

// issueInvite asks the running node for an invite, or, with no node
// running, records the token in the home itself (holding the home's lock
// so no node starts meanwhile).
func issueInvite(cmd *cobra.Command, h *home.Home, expires time.Duration) (string, time.Time, bool, error) {
	c, err := node.DialControl(cmd.Context(), h.ControlFile())
	if err == nil {
		ir, err := c.Invite(cmd.Context(), expires)
		var ae *node.APIError
		if errors.As(err, &ae) && ae.Code == 403 {
			return "", time.Time{}, true, fmt.Errorf("invite: only the grid's admin node (%s) can invite; ask its owner", h.Config.Node.Admin)
		}
		return ir.Invite, ir.Expires, true, err
	}
	if !errors.Is(err, node.ErrNotRunning) {
		return "", time.Time{}, false, err
	}
	if h.Config.Node.Admin != "" {
		_, id, err := h.NodeIdentity()
		if err != nil {
			return "", time.Time{}, false, err
		}
		if h.Config.Node.Admin != peer.ID(id).String() {
			return "", time.Time{}, false, fmt.Errorf("invite: only the grid's admin node (%s) can invite; ask its owner", h.Config.Node.Admin)
		}
	}
	unlock, err := node.LockHome(h.LockFile())
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("invite: %w (its control API does not answer)", err)
	}
	defer unlock()
	psk, err := h.GridKey()
	if err != nil {
		return "", time.Time{}, false, err
	}
	self, err := offlineSelf(h)
	if err != nil {
		return "", time.Time{}, false, err
	}
	now := time.Now()
	tok, err := node.IssueInvite(h.InvitesFile(), now, expires)
	if err != nil {
		return "", time.Time{}, false, err
	}
	inv := node.Invite{PSK: psk, Token: tok, Expires: now.Add(expires).Unix(), Peers: []peer.AddrInfo{self}}
	return inv.String(), time.Unix(inv.Expires, 0), false, nil
}

// offlineSelf is this node's id and configured listen addresses.
func offlineSelf(h *home.Home) (peer.AddrInfo, error) {
	_, id, err := h.NodeIdentity()
	if err != nil {
		return peer.AddrInfo{}, err
	}
	ai := peer.AddrInfo{ID: peer.ID(id)}
	for _, s := range h.Config.Node.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("config node.listen %q: %w", s, err)
		}
		ai.Addrs = append(ai.Addrs, a)
	}
	if len(ai.Addrs) == 0 {
		return peer.AddrInfo{}, errors.New("invite: the node has no listen addresses (config node.listen)")
	}
	return ai, nil
}
