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

	"github.com/libp2p/go-libp2p/core/crypto"
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
reached now, the invite is kept and the node redeems it when it starts.

If the node is running on another grid (say its own, from 'sphere init'), join
redeems the invite, has the node switch to the new grid in its process (no
restart needed) and waits, at most 30 s, until it is admitted and connected.`,
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
			res, msg, err := join(cmd.Context(), g, h, inv, code)
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
func join(ctx context.Context, g *globals, h *home.Home, inv node.Invite, code string) (map[string]any, string, error) {
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
	// The grid is its key: a running node on it redeems the invite itself
	// (and checks the admin against the one it trusts, which a handover
	// may have changed since config.json was written).
	sameGrid := bytes.Equal(oldKey, inv.PSK)
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
		res["nodeRunning"], res["switched"] = true, true
		n, err := switchRunning(ctx, h, c, inv, code, priv, g.stderr)
		if err != nil {
			return nil, "", err
		}
		res["admitted"], res["connected"] = true, n
		return res, fmt.Sprintf("Joined: the running node switched to the new grid, admitted and connected to %d peers.", n), nil
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

// switchWait bounds how long join waits for a switched node to be
// admitted and connected.
const switchWait = 30 * time.Second

// switchRunning moves the running node behind c to the grid of inv: it
// redeems the invite as the node's identity (a refusal changes nothing),
// asks the node to restart on the new grid, and waits until the new node
// is admitted and connected to a peer. It returns the number connected.
func switchRunning(ctx context.Context, h *home.Home, c *node.Control, inv node.Invite, code string, priv crypto.PrivKey, progress io.Writer) (int, error) {
	fmt.Fprintf(progress, "Redeeming the invite with the admin %s...\n", inv.Admin().ID)
	ch, err := node.NewClientHost(priv, inv.PSK)
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, redeemTimeout)
	_, raw, rerr := node.Redeem(rctx, ch, inv)
	cancel()
	ch.Close()
	if errors.Is(rerr, node.ErrRefused) {
		return 0, rerr
	}
	if rerr != nil {
		// The node keeps trying once on the new grid, as a stopped
		// node does when it starts.
		fmt.Fprintf(progress, "The admin cannot be reached now (%s); the node will keep trying.\n", strings.Join(strings.Fields(rerr.Error()), " "))
		raw = nil
	}
	fmt.Fprintln(progress, "Switching the running node to the new grid...")
	if err := c.Switch(ctx, code, raw); err != nil {
		return 0, fmt.Errorf("join: %w", err)
	}
	admin := inv.Admin().ID.String()
	deadline := time.Now().Add(switchWait)
	said := ""
	for {
		state := "waiting for the node to restart"
		if nc, err := node.DialControl(ctx, h.ControlFile()); err == nil {
			st, err := nc.Status(ctx)
			switch {
			case err != nil:
			case st.AdminID != admin || st.ListSerial == 0:
				state = "waiting for the admin to admit the node"
			case len(st.Connected) == 0:
				state = "admitted; waiting for the node to connect to a member"
			default:
				return len(st.Connected), nil
			}
		}
		if state != said {
			fmt.Fprintf(progress, "Joining: %s...\n", state)
			said = state
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("join: the node switched to the new grid but is not ready after %v (%s); it keeps trying: see `sphere status` and the node's log", switchWait, state)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("join: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
