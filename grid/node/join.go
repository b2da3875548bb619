package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// JoinProtocol is how a peer holding the grid key asks the admin to act on
// the member list: redeem an invite token (admission of the connection's
// peer) or rotate the connection's peer to a new identity.
const JoinProtocol = protocol.ID("/sphere/join/1.0.0")

const (
	joinVersion   = 1
	joinRedeem    = 1
	joinRotate    = 2
	maxJoinReq    = 512
	joinTimeout   = 10 * time.Second
	maxJoinReason = 200
	// maxInvites bounds the outstanding invites an admin keeps.
	maxInvites = 1000
	// DefaultInviteExpiry is how long an invite is valid by default.
	DefaultInviteExpiry = 24 * time.Hour
	// rotateDomain separates rotation proofs from other signatures.
	rotateDomain = "sphere-rotate-v1\x00"
)

// Join errors a joiner can tell apart.
var (
	ErrInviteUnknown = errors.New("invite unknown to the admin (never issued, or for another grid)")
	ErrInviteUsed    = errors.New("invite already used")
	ErrInviteExpired = errors.New("invite expired")
	ErrNotAdmin      = errors.New("only the grid's admin node can do this")
	// ErrRefused wraps any refusal the admin answered.
	ErrRefused = errors.New("refused by the admin")
)

// inviteRec is one issued invite as the admin keeps it: only a hash of the
// token, so the file does not hold working codes.
type inviteRec struct {
	Hash    string `json:"hash"` // hex SHA-256 of the token
	Expires int64  `json:"expires"`
	Used    int64  `json:"used,omitempty"`
	UsedBy  string `json:"usedBy,omitempty"`
}

type invitesFile struct {
	Version int         `json:"version"`
	Invites []inviteRec `json:"invites"`
}

// inviteStore is the admin's record of issued invites.
type inviteStore struct {
	mu   sync.Mutex
	path string
	recs map[string]*inviteRec
}

func tokenHash(t [TokenSize]byte) string {
	h := sha256.Sum256(append([]byte("sphere-invite-token-v1"), t[:]...))
	return hex.EncodeToString(h[:])
}

func openInviteStore(path string) (*inviteStore, error) {
	s := &inviteStore{path: path, recs: map[string]*inviteRec{}}
	if path == "" {
		return s, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("invites: %w", err)
	}
	var f invitesFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("invites %s: %w", path, err)
	}
	for _, r := range f.Invites {
		s.recs[r.Hash] = &r
	}
	return s, nil
}

func (s *inviteStore) saveLocked() error {
	if s.path == "" {
		return nil
	}
	f := invitesFile{Version: 1}
	for _, r := range s.recs {
		f.Invites = append(f.Invites, *r)
	}
	sort.Slice(f.Invites, func(i, j int) bool { return f.Invites[i].Hash < f.Invites[j].Hash })
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("invites: %w", err)
	}
	return writeFileAtomic(s.path, append(raw, '\n'))
}

// pruneLocked drops expired invites (a used or expired token is refused
// either way: unknown after pruning).
func (s *inviteStore) pruneLocked(now int64) {
	for h, r := range s.recs {
		if r.Expires <= now {
			delete(s.recs, h)
		}
	}
}

// issue creates a token valid until expires.
func (s *inviteStore) issue(now, expires int64) ([TokenSize]byte, error) {
	var t [TokenSize]byte
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("invite token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	if len(s.recs) >= maxInvites {
		return t, fmt.Errorf("invite: %d invites outstanding, max %d (wait for some to expire)", len(s.recs), maxInvites)
	}
	s.recs[tokenHash(t)] = &inviteRec{Hash: tokenHash(t), Expires: expires}
	if err := s.saveLocked(); err != nil {
		delete(s.recs, tokenHash(t))
		return t, err
	}
	return t, nil
}

// redeem marks the token used by who, or says why it cannot be.
func (s *inviteStore) redeem(t [TokenSize]byte, who peer.ID, now int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[tokenHash(t)]
	switch {
	case r == nil:
		return ErrInviteUnknown
	case r.Used != 0:
		return ErrInviteUsed
	case r.Expires <= now:
		return ErrInviteExpired
	}
	r.Used, r.UsedBy = now, who.String()
	if err := s.saveLocked(); err != nil {
		r.Used, r.UsedBy = 0, ""
		return err
	}
	return nil
}

// undo releases a token whose admission could not be completed.
func (s *inviteStore) undo(t [TokenSize]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.recs[tokenHash(t)]; r != nil {
		r.Used, r.UsedBy = 0, ""
		_ = s.saveLocked()
	}
}

// IssueInvite records a fresh one-time token in the invites file at path
// (for a home whose node is not running; the caller holds the home's
// lock) and returns it.
func IssueInvite(path string, now time.Time, expiry time.Duration) ([TokenSize]byte, error) {
	s, err := openInviteStore(path)
	if err != nil {
		return [TokenSize]byte{}, err
	}
	return s.issue(now.Unix(), now.Add(expiry).Unix())
}

// admin changes to the member list, made by the admin node.

// changeList signs and installs the successor of the current list made
// by edit; only the admin can.
func (n *Node) changeList(edit func(*MemberList) *MemberList) (*MemberList, error) {
	n.listMu.Lock()
	defer n.listMu.Unlock()
	cur, isAdmin := n.members.current()
	if !isAdmin || cur == nil {
		return nil, ErrNotAdmin
	}
	now := n.cfg.Now().Unix()
	next, err := cur.Next(edit(cur), n.cfg.Identity, now)
	if err != nil {
		return nil, err
	}
	if err := n.members.setList(next); err != nil {
		return nil, err
	}
	n.log.Info("Member list changed", "serial", next.Serial, "members", len(next.Members))
	n.members.wake()
	return next, nil
}

// Admit adds ids to the grid's member list (admin only).
func (n *Node) Admit(ids ...peer.ID) (*MemberList, error) {
	if len(ids) == 0 {
		return nil, errors.New("admit: no peer")
	}
	return n.changeList(func(l *MemberList) *MemberList { return l.Admit(n.cfg.Now().Unix(), ids...) })
}

// RemoveMember takes id off the member list (admin only): every node that
// gets the new list refuses it from then on. The admin cannot remove
// itself (rotate instead).
func (n *Node) RemoveMember(id peer.ID) (*MemberList, error) {
	cur, _ := n.members.current()
	if cur != nil && id == cur.Admin {
		return nil, errors.New("remove: the admin cannot remove itself (use ReplaceMember to hand over)")
	}
	if cur != nil && !cur.Has(id) {
		return nil, fmt.Errorf("remove: %s is not a member", id)
	}
	return n.changeList(func(l *MemberList) *MemberList { return l.Remove(id) })
}

// ReplaceMember admits newID and removes oldID in one list (admin only),
// as identity rotation needs; if oldID is the admin, newID becomes the
// admin (a handover: this list is the last one oldID signs).
func (n *Node) ReplaceMember(oldID, newID peer.ID) (*MemberList, error) {
	if oldID == newID {
		return nil, errors.New("replace: same identity")
	}
	return n.changeList(func(l *MemberList) *MemberList {
		next := l.Admit(n.cfg.Now().Unix(), newID).Remove(oldID)
		if l.Admin == oldID {
			next.Admin = newID
		}
		return next
	})
}

// Invite issues a one-time invite valid for expiry (admin only): the grid
// key, a fresh token and where to reach this node and up to 7 members.
func (n *Node) Invite(expiry time.Duration) (Invite, error) {
	if _, isAdmin := n.members.current(); !isAdmin || n.invites == nil {
		return Invite{}, ErrNotAdmin
	}
	if expiry <= 0 {
		expiry = DefaultInviteExpiry
	}
	now := n.cfg.Now()
	t, err := n.invites.issue(now.Unix(), now.Add(expiry).Unix())
	if err != nil {
		return Invite{}, err
	}
	inv := Invite{PSK: n.cfg.GridKey, Token: t, Expires: now.Add(expiry).Unix(), Peers: []peer.AddrInfo{n.selfInfo()}}
	for _, ai := range n.members.known() {
		if len(inv.Peers) >= 8 {
			break
		}
		if n.host.Network().Connectedness(ai.ID) == network.Connected {
			inv.Peers = append(inv.Peers, ai)
		}
	}
	return inv, nil
}

// handleJoin serves JoinProtocol on the admin node.
func (n *Node) handleJoin(s network.Stream) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	select {
	case n.joinSem <- struct{}{}:
		defer func() { <-n.joinSem }()
	default:
		_ = s.Reset() // too many at once
		return
	}
	_ = s.SetDeadline(time.Now().Add(joinTimeout))
	req, err := readMsg(s, maxJoinReq)
	if err != nil {
		_ = s.Reset()
		return
	}
	list, err := n.serveJoin(from, req)
	if err != nil {
		n.log.Info("Join request refused", "peer", shortID(from), "err", err)
		reason := err.Error()
		if len(reason) > maxJoinReason {
			reason = reason[:maxJoinReason]
		}
		_ = writeMsg(s, append([]byte{1}, reason...))
		return
	}
	raw, err := list.MarshalBinary()
	if err != nil {
		_ = s.Reset()
		return
	}
	_ = writeMsg(s, append([]byte{0}, raw...))
}

func (n *Node) serveJoin(from peer.ID, req []byte) (*MemberList, error) {
	if _, isAdmin := n.members.current(); !isAdmin || n.invites == nil {
		return nil, ErrNotAdmin
	}
	jr, err := parseJoinRequest(req)
	if err != nil {
		return nil, err
	}
	switch jr.kind {
	case joinRedeem:
		now := n.cfg.Now().Unix()
		if err := n.invites.redeem(jr.token, from, now); err != nil {
			return nil, err
		}
		l, err := n.Admit(from)
		if err != nil {
			n.invites.undo(jr.token)
			return nil, err
		}
		n.log.Info("Admitted a member by invite", "member", from.String())
		return l, nil
	default: // joinRotate
		newID, sig := jr.newID, jr.sig
		cur, _ := n.members.current()
		if !cur.Has(from) {
			return nil, errors.New("rotate: not a member")
		}
		pk, err := newID.ExtractPublicKey()
		if err != nil {
			return nil, fmt.Errorf("rotate: new id: %w", err)
		}
		if ok, err := pk.Verify(rotateMessage(n.members.grid, from, newID), sig); err != nil || !ok {
			return nil, errors.New("rotate: bad proof of the new key")
		}
		l, err := n.ReplaceMember(from, newID)
		if err != nil {
			return nil, err
		}
		n.log.Info("Rotated a member's identity", "old", from.String(), "new", newID.String())
		return l, nil
	}
}

// joinRequest is a decoded JoinProtocol request.
type joinRequest struct {
	kind  int
	token [TokenSize]byte
	newID peer.ID
	sig   []byte
}

// parseJoinRequest decodes a request (signatures are checked by the caller).
func parseJoinRequest(req []byte) (joinRequest, error) {
	var jr joinRequest
	if len(req) > maxJoinReq {
		return jr, fmt.Errorf("join request of %d bytes", len(req))
	}
	r := &reader{b: req}
	if v := r.u8("version"); r.err == nil && v != joinVersion {
		return jr, fmt.Errorf("join request version %d", v)
	}
	jr.kind = r.u8("kind")
	switch {
	case r.err != nil:
		return jr, fmt.Errorf("join request: %w", r.err)
	case jr.kind == joinRedeem:
		copy(jr.token[:], r.take(TokenSize, "token"))
	case jr.kind == joinRotate:
		jr.newID = r.id("new id")
		jr.sig = r.take(r.u8("signature length"), "signature")
	default:
		return jr, fmt.Errorf("join request kind %d", jr.kind)
	}
	if r.err != nil {
		return jr, fmt.Errorf("join request: %w", r.err)
	}
	if len(r.b) != 0 {
		return jr, fmt.Errorf("join request: %d trailing bytes", len(r.b))
	}
	return jr, nil
}

func rotateMessage(grid [32]byte, oldID, newID peer.ID) []byte {
	out := append([]byte(rotateDomain), grid[:]...)
	out = append(out, byte(len(oldID)))
	out = append(out, oldID...)
	out = append(out, byte(len(newID)))
	return append(out, newID...)
}

// joinCall connects h to admin and sends one join request; it returns the
// admin's new list, checked against the grid.
func joinCall(ctx context.Context, h host.Host, gridKey []byte, admin peer.AddrInfo, req []byte) (*MemberList, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	if err := h.Connect(ctx, admin); err != nil {
		return nil, nil, fmt.Errorf("join: reach the admin %s: %w", shortID(admin.ID), err)
	}
	s, err := h.NewStream(ctx, admin.ID, JoinProtocol)
	if err != nil {
		return nil, nil, fmt.Errorf("join: %w", err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(joinTimeout))
	if err := writeMsg(s, req); err != nil {
		_ = s.Reset()
		return nil, nil, fmt.Errorf("join: %w", err)
	}
	_ = s.CloseWrite()
	resp, err := readMsg(s, 1+maxMemberListLen)
	if err != nil {
		_ = s.Reset()
		return nil, nil, fmt.Errorf("join: %w", err)
	}
	if len(resp) == 0 {
		return nil, nil, errors.New("join: empty answer")
	}
	if resp[0] != 0 {
		reason := string(resp[1:])
		if len(reason) > maxJoinReason {
			reason = reason[:maxJoinReason]
		}
		for _, e := range []error{ErrInviteUnknown, ErrInviteUsed, ErrInviteExpired, ErrNotAdmin} {
			if reason == e.Error() {
				return nil, nil, fmt.Errorf("join: %w: %w", ErrRefused, e)
			}
		}
		return nil, nil, fmt.Errorf("join: %w: %q", ErrRefused, reason)
	}
	raw := resp[1:]
	l, err := UnmarshalMemberList(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("join: admin's answer: %w", err)
	}
	if l.Grid != GridID(gridKey) || l.Signer != admin.ID {
		return nil, nil, errors.New("join: admin's answer is not a list of this grid signed by it")
	}
	return l, raw, nil
}

// Redeem presents inv's token to its admin from h (whose identity is the
// joining node's) and returns the signed member list that admits it, and
// its encoding (to save as the node's members file).
func Redeem(ctx context.Context, h host.Host, inv Invite) (*MemberList, []byte, error) {
	req := append([]byte{joinVersion, joinRedeem}, inv.Token[:]...)
	l, raw, err := joinCall(ctx, h, inv.PSK, inv.Admin(), req)
	if err != nil {
		return nil, nil, err
	}
	if !l.Has(h.ID()) {
		return nil, nil, errors.New("join: the admin's list does not admit us")
	}
	return l, raw, nil
}

// RequestRotation asks the admin, from h (the member's current identity),
// to replace it on the member list by newKey's identity; the signature by
// newKey proves the new identity is the member's.
func RequestRotation(ctx context.Context, h host.Host, gridKey []byte, admin peer.AddrInfo, newKey crypto.PrivKey) (*MemberList, []byte, error) {
	newID, err := peer.IDFromPrivateKey(newKey)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	sig, err := newKey.Sign(rotateMessage(GridID(gridKey), h.ID(), newID))
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	req := []byte{joinVersion, joinRotate, byte(len(newID))}
	req = append(req, newID...)
	req = append(req, byte(len(sig)))
	req = append(req, sig...)
	l, raw, err := joinCall(ctx, h, gridKey, admin, req)
	if err != nil {
		return nil, nil, err
	}
	if !l.Has(newID) || l.Has(h.ID()) {
		return nil, nil, errors.New("rotate: the admin's list does not show the rotation")
	}
	return l, raw, nil
}

// RotateIdentity moves this node's membership to newKey's identity: the
// admin node hands the admin role over to it; a member asks the admin.
// The caller then saves newKey as the node's identity, saves the returned
// list's encoding as the members file and restarts the node.
func (n *Node) RotateIdentity(ctx context.Context, newKey crypto.PrivKey) (*MemberList, []byte, error) {
	newID, err := peer.IDFromPrivateKey(newKey)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	cur, isAdmin := n.members.current()
	if cur == nil {
		return nil, nil, errors.New("rotate: this node is not a member yet")
	}
	if isAdmin {
		l, err := n.ReplaceMember(n.host.ID(), newID)
		if err != nil {
			return nil, nil, err
		}
		raw, err := l.MarshalBinary()
		return l, raw, err
	}
	admin := peer.AddrInfo{ID: cur.Admin, Addrs: n.host.Peerstore().Addrs(cur.Admin)}
	for _, ai := range n.members.known() {
		if ai.ID == cur.Admin {
			admin.Addrs = ai.Addrs
		}
	}
	l, raw, err := RequestRotation(ctx, n.host, n.cfg.GridKey, admin, newKey)
	if err != nil {
		return nil, nil, err
	}
	if _, err := n.members.adopt(raw); err != nil {
		n.log.Warn("Adopting the rotated list failed", "err", err)
	}
	return l, raw, nil
}

// MemberList returns the signed member list this node holds (nil before
// it joined); callers must not modify it.
func (n *Node) MemberList() *MemberList {
	l, _ := n.members.current()
	return l
}

// IsMember reports whether id is served by this node: a listed member,
// a member's delegated client, this node or one of its local servers.
func (n *Node) IsMember(id peer.ID) bool { return n.members.allowed(id) }
