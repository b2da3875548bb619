package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Identity rotation while the node is stopped (sphere recovery --rotate):
// the admin signs its handover with HandOver, a member asks the admin with
// RequestRotation; PushList then hands the new list to the members at
// once, so the old identity is refused from then on, not only once the
// new node connects.

// maxPushTargets bounds the members PushList contacts.
const maxPushTargets = 64

// HandOver signs, with the admin's key, the successor of cur that admits
// newID, removes the admin's own id and names newID the admin.
func HandOver(cur *MemberList, adminKey crypto.PrivKey, newID peer.ID, now int64) (*MemberList, []byte, error) {
	oldID, err := peer.IDFromPrivateKey(adminKey)
	if err != nil {
		return nil, nil, fmt.Errorf("hand over: %w", err)
	}
	if cur == nil || cur.Admin != oldID {
		return nil, nil, ErrNotAdmin
	}
	if newID == oldID {
		return nil, nil, errors.New("hand over: same identity")
	}
	next := cur.Admit(now, newID).Remove(oldID)
	next.Admin = newID
	l, err := cur.Next(next, adminKey, now)
	if err != nil {
		return nil, nil, fmt.Errorf("hand over: %w", err)
	}
	raw, err := l.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("hand over: %w", err)
	}
	return l, raw, nil
}

// PushList sends the member list raw to each of to over the member
// exchange (a node takes a newer list from anyone holding the grid key:
// the admin's signature is what counts) and returns how many answered
// holding it. Each push is bounded by the exchange timeout.
func PushList(ctx context.Context, h host.Host, raw []byte, to []peer.AddrInfo) int {
	serial, err := peekSerial(raw)
	if err != nil || len(raw) > maxMemberListLen {
		return 0
	}
	msg := []byte{exchangeVersion}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(raw)))
	msg = append(msg, raw...)
	msg = appendChunks(msg, nil) // no records
	msg = appendChunks(msg, nil) // no delegations
	if len(to) > maxPushTargets {
		to = to[:maxPushTargets]
	}
	ok := 0
	for _, ai := range to {
		if ai.ID == h.ID() || pushOne(ctx, h, ai, msg) == serial {
			ok++
		}
	}
	return ok
}

// pushOne sends msg to ai and returns the serial of the list it answers
// with (0: no answer; a non-member after the push gets none).
func pushOne(ctx context.Context, h host.Host, ai peer.AddrInfo, msg []byte) uint64 {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		return 0
	}
	s, err := h.NewStream(ctx, ai.ID, PeersProtocol)
	if err != nil {
		return 0
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	if err := writeMsg(s, msg); err != nil {
		_ = s.Reset()
		return 0
	}
	_ = s.CloseWrite()
	resp, err := readMsg(s, maxMemberMsg)
	if err != nil {
		return 0
	}
	m, err := parseExchange(resp)
	if err != nil {
		return 0
	}
	serial, _ := peekSerial(m.list)
	return serial
}
