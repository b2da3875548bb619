package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
)

// A node switches grids by restarting in its own process: the control
// API's switch request makes Serve return a *SwitchGrid (after the reply
// is out and everything is closed); the program that runs the node saves
// the new grid in the home and starts a new Node on it, holding the
// home's lock in between so no other node or CLI verb takes the home.

// SwitchGrid is what Serve returns when the node was asked to move to
// another grid; it is an error only in that Serve did not end by its ctx.
type SwitchGrid struct {
	Invite Invite
	Code   string // the invite as text
	// Members is the signed member list that admitted this node's
	// identity (the caller redeemed the invite); nil: the invite is still
	// to be redeemed by the new node (its admin could not be reached).
	Members []byte
}

func (s *SwitchGrid) Error() string {
	return fmt.Sprintf("node: switching to the grid of admin %s", s.Invite.Admin().ID)
}

// SwitchRequest is the body of POST /v1/switch.
type SwitchRequest struct {
	Invite  string `json:"invite"`
	Members []byte `json:"members,omitempty"` // base64 in JSON
}

// SwitchReply answers POST /v1/switch.
type SwitchReply struct {
	Restarting bool `json:"restarting"`
}

// requestSwitch checks a switch request and asks Serve to return it.
func (n *Node) requestSwitch(req SwitchRequest) error {
	inv, err := ParseInvite(req.Invite)
	if err != nil {
		return err
	}
	if bytes.Equal(inv.PSK, n.cfg.GridKey) {
		return errors.New("switch: the invite is for this node's grid (use join)")
	}
	sw := &SwitchGrid{Invite: inv, Code: inv.String()}
	if len(req.Members) > 0 {
		l, err := UnmarshalMemberList(req.Members)
		if err != nil {
			return fmt.Errorf("switch: member list: %w", err)
		}
		if l.Grid != GridID(inv.PSK) || l.Signer != inv.Admin().ID || !l.Has(n.host.ID()) {
			return errors.New("switch: the member list is not the invite's grid's, signed by its admin, admitting this node")
		}
		sw.Members = req.Members
	}
	select {
	case n.switchTo <- sw:
		return nil
	default:
		return errors.New("switch: the node is already switching")
	}
}

// maxSwitchBody bounds a switch request: the largest member list in
// base64, plus the invite and JSON.
const maxSwitchBody = maxControlBody + (maxMemberListLen+2)/3*4

func (n *Node) handleSwitch(w http.ResponseWriter, r *http.Request) {
	var req SwitchRequest
	if err := decodeBodyN(r, &req, maxSwitchBody); err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("switch: bad request: %w", err))
		return
	}
	if err := n.requestSwitch(req); err != nil {
		replyErr(w, http.StatusBadRequest, err)
		return
	}
	reply(w, SwitchReply{Restarting: true}, nil)
}

// Switch asks the node to move to the grid of invite, restarting in its
// process; members is the list that admitted the node (nil: the new node
// redeems the invite).
func (c *Control) Switch(ctx context.Context, invite string, members []byte) error {
	var sr SwitchReply
	return c.call(ctx, http.MethodPost, "/v1/switch", SwitchRequest{Invite: invite, Members: members}, &sr)
}
