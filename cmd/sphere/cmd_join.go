package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// redeemTimeout bounds redeeming an invite from the CLI.
const redeemTimeout = 20 * time.Second

func newJoinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join [CODE]",
		Short: "Join the grid of a one-time invite code from 'sphere invite'",
		Long: `join presents the invite to the grid's admin node, which admits this home's node
to the grid's signed member list and spends the code. Without CODE, join reads it
from stdin (paste it, or pipe it): that keeps the code out of shell history and
the process list, where other users of the machine could see it.

If this node is not running, join redeems the invite at once and records the
grid in config.json; the node connects when it runs. If the admin cannot be
reached now, the invite is kept and the node redeems it when it starts. Joining
a different grid than a running node is on needs a node restart.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code := ""
			if len(args) == 1 {
				code = args[0]
			} else {
				var err error
				if code, err = readCode(g.stdin); err != nil {
					return usageError{err}
				}
			}
			inv, err := node.ParseInvite(code)
			if err != nil {
				return usageError{err}
			}
			code = inv.String()
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			res, msg, err := join(cmd.Context(), h, inv, code)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(res)
			}
			fmt.Fprintln(g.stdout, msg)
			return nil
		},
	}
}

// readCode reads an invite code from r: the first non-empty line (at most
// 8 KiB are read).
func readCode(r io.Reader) (string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 8<<10))
	sc.Buffer(make([]byte, 0, 8<<10), 8<<10)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return line, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("join: reading the code from stdin: %w", err)
	}
	return "", errors.New("join: no invite code (give it as an argument or on stdin)")
}

// join redeems inv for h's node: through the running node, or (no node
// running) from a short-lived host with the node's identity.
func join(ctx context.Context, h *home.Home, inv node.Invite, code string) (map[string]any, string, error) {
	priv, id, err := h.NodeIdentity()
	if err != nil {
		return nil, "", err
	}
	if inv.Admin().ID == peer.ID(id) {
		return nil, "", usageError{errors.New("join: this is an invite of this node's own grid")}
	}
	oldKey, err := h.GridKey()
	if err != nil {
		return nil, "", err
	}
	sameGrid := bytes.Equal(oldKey, inv.PSK) && h.Config.Node.Admin == inv.Admin().ID.String()
	res := map[string]any{"peers": len(inv.Peers), "admin": inv.Admin().ID.String(), "nodeRunning": false, "admitted": false}
	c, err := node.DialControl(ctx, h.ControlFile())
	switch {
	case err == nil && sameGrid:
		res["nodeRunning"] = true
		jr, err := c.Join(ctx, code)
		if err != nil {
			return nil, "", fmt.Errorf("join: %w", err)
		}
		if err := saveJoin(h, inv); err != nil {
			return nil, "", err
		}
		res["admitted"], res["connected"] = true, jr.Connected
		return res, fmt.Sprintf("Joined: admitted to the grid, connected to %d peers.", jr.Connected), nil
	case err == nil:
		res["nodeRunning"] = true
		if err := saveJoin(h, inv); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(h.JoinFile(), []byte(code+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("join: %w", err)
		}
		res["pending"] = true
		return res, "Joined a different grid: restart the node (`sphere node`) to switch to it; it redeems the invite when it starts.", nil
	case !errors.Is(err, node.ErrNotRunning):
		return nil, "", err
	}
	// No node running: hold the home's lock so none starts meanwhile.
	unlock, err := node.LockHome(h.LockFile())
	if err != nil {
		return nil, "", fmt.Errorf("join: %w", err)
	}
	defer unlock()
	ch, err := node.NewClientHost(priv, inv.PSK)
	if err != nil {
		return nil, "", err
	}
	defer ch.Close()
	rctx, cancel := context.WithTimeout(ctx, redeemTimeout)
	defer cancel()
	l, raw, rerr := node.Redeem(rctx, ch, inv)
	if errors.Is(rerr, node.ErrRefused) {
		return nil, "", rerr
	}
	if err := saveJoin(h, inv); err != nil {
		return nil, "", err
	}
	if rerr != nil {
		if err := os.WriteFile(h.JoinFile(), []byte(code+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("join: %w", err)
		}
		res["pending"] = true
		return res, fmt.Sprintf("Saved: the admin cannot be reached now (%v); the node redeems the invite when it runs (`sphere node`).", rerr), nil
	}
	if err := writePrivate(h.MembersFile(), raw); err != nil {
		return nil, "", err
	}
	_ = os.Remove(h.JoinFile())
	res["admitted"], res["members"] = true, len(l.Members)
	return res, fmt.Sprintf("Joined: admitted to a grid of %d members; the node connects to them when it runs (`sphere node`).", len(l.Members)), nil
}

// writePrivate writes path atomically, mode 0600.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// saveJoin records the invite's grid key, admin and peers in config.json;
// joining another grid forgets the old grid's peers and member list.
func saveJoin(h *home.Home, inv node.Invite) error {
	admin := inv.Admin().ID.String()
	newKey := hex.EncodeToString(inv.PSK)
	oldKey, _ := h.GridKey()
	if !bytes.Equal(oldKey, inv.PSK) || h.Config.Node.Admin != admin {
		h.Config.Node.Peers = nil
		for _, f := range []string{h.MembersFile(), h.PeersFile()} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("join: %w", err)
			}
		}
	}
	if own, err := h.Secret("grid.key"); err == nil && bytes.Equal(own, inv.PSK) {
		newKey = ""
	}
	h.Config.Node.GridKey = newKey
	h.Config.Node.Admin = admin
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
