package node

import (
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Wire formats of the node: the invite code and the member list exchanged
// by the /sphere/peers protocol. Both are specified in docs/spec/node.md.

const (
	// InviteVersion is the version byte of invite codes this code writes.
	// Version 1 (the raw grid key, forever) is refused.
	InviteVersion = 2
	// InvitePrefix starts every invite code.
	InvitePrefix = "sphere:invite:"
	// PSKSize is the size of a grid key.
	PSKSize = 32
	// TokenSize is the size of an invite's one-time token.
	TokenSize = 16

	// Bounds on a peer list, so a hostile message cannot make us allocate
	// or dial without limit.
	maxListPeers = maxMembers
	maxPeerAddrs = 8
	maxIDLen     = 64
	maxAddrLen   = 255
	// maxInvitePeers bounds the peers an invite names.
	maxInvitePeers = 16
	// maxInviteLen bounds an invite code string before decoding it.
	maxInviteLen = 4096
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Invite is what `sphere invite` hands to one friend: the grid key, a
// one-time token the admin node redeems once before Expires, and where to
// find the admin (first peer) and a few members.
type Invite struct {
	PSK     []byte
	Token   [TokenSize]byte
	Expires int64 // unix seconds; the admin node's record is what counts
	Peers   []peer.AddrInfo
}

// Admin is the peer that issued the invite and redeems its token.
func (inv Invite) Admin() peer.AddrInfo {
	if len(inv.Peers) == 0 {
		return peer.AddrInfo{}
	}
	return inv.Peers[0]
}

// String encodes inv as InvitePrefix || base32(binary).
func (inv Invite) String() string {
	b, err := inv.MarshalBinary()
	if err != nil {
		return "invalid-invite: " + err.Error()
	}
	return InvitePrefix + strings.ToLower(b32.EncodeToString(b))
}

// MarshalBinary encodes the invite without the text prefix:
// version(1) || gridKey(32) || token(16) || expires(8) || peerList.
func (inv Invite) MarshalBinary() ([]byte, error) {
	if len(inv.PSK) != PSKSize {
		return nil, fmt.Errorf("invite: grid key size: want=%d have=%d", PSKSize, len(inv.PSK))
	}
	out := append([]byte{InviteVersion}, inv.PSK...)
	out = append(out, inv.Token[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(inv.Expires))
	return appendPeerList(out, inv.Peers, maxInvitePeers)
}

// ParseInvite decodes an invite code as printed by Invite.String.
func ParseInvite(code string) (Invite, error) {
	code = strings.TrimSpace(code)
	if len(code) > maxInviteLen {
		return Invite{}, fmt.Errorf("invite: code too long: %d characters", len(code))
	}
	rest, ok := strings.CutPrefix(code, InvitePrefix)
	if !ok {
		return Invite{}, fmt.Errorf("invite: want prefix %q", InvitePrefix)
	}
	b, err := b32.DecodeString(strings.ToUpper(rest))
	if err != nil {
		return Invite{}, fmt.Errorf("invite: bad base32: %w", err)
	}
	return UnmarshalInvite(b)
}

// UnmarshalInvite decodes the binary form of an invite.
func UnmarshalInvite(b []byte) (Invite, error) {
	if len(b) < 1 {
		return Invite{}, errors.New("invite: empty")
	}
	if b[0] == 1 {
		return Invite{}, errors.New("invite: an old (version 1) code, which invites no longer use: ask for a new one")
	}
	if b[0] != InviteVersion {
		return Invite{}, fmt.Errorf("invite: version: want=%d have=%d", InviteVersion, b[0])
	}
	const fixed = 1 + PSKSize + TokenSize + 8
	if len(b) < fixed {
		return Invite{}, fmt.Errorf("invite: truncated: %d bytes", len(b))
	}
	inv := Invite{PSK: append([]byte(nil), b[1:1+PSKSize]...)}
	copy(inv.Token[:], b[1+PSKSize:])
	inv.Expires = int64(binary.BigEndian.Uint64(b[1+PSKSize+TokenSize:]))
	peers, rest, err := readPeerList(b[fixed:], maxInvitePeers)
	if err != nil {
		return Invite{}, fmt.Errorf("invite: %w", err)
	}
	if len(rest) != 0 {
		return Invite{}, fmt.Errorf("invite: %d trailing bytes", len(rest))
	}
	if len(peers) == 0 {
		return Invite{}, errors.New("invite: no peers")
	}
	inv.Peers = peers
	return inv, nil
}

// appendPeerList appends count(2, big endian) || peer*, each peer being
// idLen(1) || id || addrCount(1) || (addrLen(1) || multiaddr bytes)*.
// Peers or addresses beyond the bounds are dropped, not errors: the
// encoder is used on our own data.
func appendPeerList(out []byte, peers []peer.AddrInfo, max int) ([]byte, error) {
	if len(peers) > max {
		peers = peers[:max]
	}
	out = binary.BigEndian.AppendUint16(out, uint16(len(peers)))
	for _, p := range peers {
		id := []byte(p.ID)
		if len(id) == 0 || len(id) > maxIDLen {
			return nil, fmt.Errorf("peer id size %d out of range", len(id))
		}
		out = append(out, byte(len(id)))
		out = append(out, id...)
		var addrs [][]byte
		for _, a := range p.Addrs {
			if ab := a.Bytes(); len(ab) > 0 && len(ab) <= maxAddrLen && len(addrs) < maxPeerAddrs {
				addrs = append(addrs, ab)
			}
		}
		out = append(out, byte(len(addrs)))
		for _, ab := range addrs {
			out = append(out, byte(len(ab)))
			out = append(out, ab...)
		}
	}
	return out, nil
}

// readPeerList decodes what appendPeerList wrote, returning the rest of b.
func readPeerList(b []byte, max int) ([]peer.AddrInfo, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errors.New("peer list: truncated count")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n > max {
		return nil, nil, fmt.Errorf("peer list: too many peers: max=%d have=%d", max, n)
	}
	peers := make([]peer.AddrInfo, 0, n)
	for i := range n {
		if len(b) < 1 {
			return nil, nil, fmt.Errorf("peer %d: truncated", i)
		}
		idLen := int(b[0])
		b = b[1:]
		if idLen == 0 || idLen > maxIDLen || len(b) < idLen {
			return nil, nil, fmt.Errorf("peer %d: bad id length %d", i, idLen)
		}
		id, err := peer.IDFromBytes(b[:idLen])
		if err != nil {
			return nil, nil, fmt.Errorf("peer %d: bad id: %w", i, err)
		}
		b = b[idLen:]
		if len(b) < 1 {
			return nil, nil, fmt.Errorf("peer %d: truncated address count", i)
		}
		na := int(b[0])
		b = b[1:]
		if na > maxPeerAddrs {
			return nil, nil, fmt.Errorf("peer %d: too many addresses: max=%d have=%d", i, maxPeerAddrs, na)
		}
		ai := peer.AddrInfo{ID: id}
		for j := range na {
			if len(b) < 1 || len(b) < 1+int(b[0]) || b[0] == 0 {
				return nil, nil, fmt.Errorf("peer %d address %d: truncated", i, j)
			}
			al := int(b[0])
			a, err := ma.NewMultiaddrBytes(b[1 : 1+al])
			if err != nil {
				return nil, nil, fmt.Errorf("peer %d address %d: %w", i, j, err)
			}
			ai.Addrs = append(ai.Addrs, a)
			b = b[1+al:]
		}
		peers = append(peers, ai)
	}
	return peers, b, nil
}
