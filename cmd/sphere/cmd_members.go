package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

func newMembersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the grid's members (the admin-signed member list)",
		Long: `members shows the grid's member list as this node holds it: the list the grid's
admin signed, its serial number, and for each member whether this node is connected
to it. Only listed members can store on or read from any node of the grid.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			mr, running, err := members(cmd, h)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(mr)
			}
			printMembers(g, mr, running)
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove PEER",
		Short: "Remove a member: no node of the grid serves it from then on (admin only)",
		Long: `remove takes PEER (a peer id, as 'sphere members' lists it) off the grid's
member list. The admin node signs the new list and spreads it; every node that
has it refuses the removed peer's connections, storage requests and reads. Only
the grid's admin can remove, and it cannot remove itself.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := peer.Decode(args[0])
			if err != nil {
				return usageError{fmt.Errorf("members remove: bad peer id: %w", err)}
			}
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			c, err := node.DialControl(cmd.Context(), h.ControlFile())
			if errors.Is(err, node.ErrNotRunning) {
				return fmt.Errorf("members remove: no node is running for %s: start it (`sphere node`), the admin node signs and spreads the new list", h.Dir)
			}
			if err != nil {
				return err
			}
			mr, err := c.RemoveMember(cmd.Context(), id.String())
			if err != nil {
				return fmt.Errorf("members remove: %w", err)
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(mr)
			}
			fmt.Fprintf(g.stdout, "Removed %s: member list %d has %d members.\n", id, mr.Serial, len(mr.Members))
			return nil
		},
	})
	return cmd
}

// members asks the running node, else reads the home's member list.
func members(cmd *cobra.Command, h *home.Home) (node.MembersReply, bool, error) {
	c, err := node.DialControl(cmd.Context(), h.ControlFile())
	if err == nil {
		mr, err := c.Members(cmd.Context())
		return mr, true, err
	}
	if !errors.Is(err, node.ErrNotRunning) {
		return node.MembersReply{}, false, err
	}
	out := node.MembersReply{Members: []node.MemberInfo{}, Removed: []string{}}
	raw, err := os.ReadFile(h.MembersFile())
	if errors.Is(err, os.ErrNotExist) {
		return out, false, nil
	}
	if err != nil {
		return out, false, err
	}
	l, err := node.UnmarshalMemberList(raw)
	if err != nil {
		return out, false, fmt.Errorf("members: %w", err)
	}
	_, self, err := h.NodeIdentity()
	if err != nil {
		return out, false, err
	}
	out.Serial, out.Issued, out.Admin = l.Serial, time.Unix(l.Issued, 0).UTC(), l.Admin.String()
	for _, m := range l.Members {
		out.Members = append(out.Members, node.MemberInfo{PeerID: m.ID.String(), Added: time.Unix(m.Added, 0).UTC(),
			Admin: m.ID == l.Admin, Self: m.ID == peer.ID(self), Addrs: []string{}})
	}
	for _, id := range l.Removed {
		out.Removed = append(out.Removed, id.String())
	}
	return out, false, nil
}

func printMembers(g *globals, mr node.MembersReply, running bool) {
	if mr.Serial == 0 {
		fmt.Fprintln(g.stdout, "Not a member of any grid's list yet (join with an invite: `sphere join`).")
		return
	}
	fmt.Fprintf(g.stdout, "Member list %d, signed by the admin %s on %s:\n", mr.Serial, mr.Admin, mr.Issued.Local().Format(time.RFC1123))
	for _, m := range mr.Members {
		var tags []string
		if m.Admin {
			tags = append(tags, "admin")
		}
		if m.Self {
			tags = append(tags, "this node")
		} else if running && m.Connected {
			tags = append(tags, "connected")
		}
		fmt.Fprintf(g.stdout, "  %s  added %s", m.PeerID, m.Added.Local().Format("2006-01-02"))
		for _, t := range tags {
			fmt.Fprintf(g.stdout, "  [%s]", t)
		}
		fmt.Fprintln(g.stdout)
	}
	if len(mr.Removed) > 0 {
		fmt.Fprintf(g.stdout, "Removed (refused by every node): %d\n", len(mr.Removed))
		for _, id := range mr.Removed {
			fmt.Fprintf(g.stdout, "  %s\n", id)
		}
	}
	if !running {
		fmt.Fprintln(g.stdout, "(no node running: the list as last saved)")
	}
}
