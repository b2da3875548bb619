package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The signed member list is the grid's authority on who is a member: the
// admin (the founding node's identity key, see docs/spec/node.md) signs a
// list with a serial number; every node keeps the highest-serial list
// signed by the admin it trusts and serves only the peers on it.

const (
	// MemberListVersion is the version byte of signed member lists.
	MemberListVersion = 1
	// maxMembers bounds a member list (and so the address book).
	maxMembers = 1024
	// maxRemoved bounds the removed ids a list carries.
	maxRemoved = 1024
	// memberListDomain separates member-list signatures from every other
	// use of a node's key.
	memberListDomain = "sphere-member-list-v1\x00"
	// maxMemberListLen bounds an encoded list before decoding.
	maxMemberListLen = 1 + 32 + 8 + 8 + 65 + 2 + maxMembers*(65+8) + 2 + maxRemoved*65 + 65 + 1 + 255
)

// GridID names a grid without revealing its key: SHA-256 of a tag and
// the grid key.
func GridID(gridKey []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("sphere-grid-id-v1"))
	h.Write(gridKey)
	var id [32]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Member is one entry of a member list.
type Member struct {
	ID peer.ID
	// Added is when the admin admitted it (unix seconds).
	Added int64
}

// MemberList is a signed, versioned list of a grid's members.
type MemberList struct {
	Grid   [32]byte // GridID of the grid's key
	Serial uint64   // strictly increasing per grid
	Issued int64    // unix seconds
	// Admin signs the next lists; it differs from Signer only in a
	// handover (the admin's identity was rotated).
	Admin   peer.ID
	Members []Member  // sorted by ID, unique
	Removed []peer.ID // sorted, unique, none of them in Members
	Signer  peer.ID
	Sig     []byte
}

// Has reports whether id is on the list.
func (l *MemberList) Has(id peer.ID) bool {
	if l == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(l.Members, id, func(m Member, id peer.ID) int {
		return cmpID(m.ID, id)
	})
	return ok
}

// IsRemoved reports whether id was removed (and not admitted again).
func (l *MemberList) IsRemoved(id peer.ID) bool {
	if l == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(l.Removed, id, cmpID)
	return ok
}

func cmpID(a, b peer.ID) int { return bytes.Compare([]byte(a), []byte(b)) }

// IDs returns the members' ids.
func (l *MemberList) IDs() []peer.ID {
	if l == nil {
		return nil
	}
	out := make([]peer.ID, len(l.Members))
	for i, m := range l.Members {
		out[i] = m.ID
	}
	return out
}

// Clone returns a deep copy (without the signature).
func (l *MemberList) Clone() *MemberList {
	c := *l
	c.Members = slices.Clone(l.Members)
	c.Removed = slices.Clone(l.Removed)
	c.Sig = nil
	return &c
}

// Admit returns the next list with ids added (and dropped from Removed).
func (l *MemberList) Admit(now int64, ids ...peer.ID) *MemberList {
	c := l.Clone()
	for _, id := range ids {
		if c.Has(id) {
			continue
		}
		c.Members = append(c.Members, Member{ID: id, Added: now})
		slices.SortFunc(c.Members, func(a, b Member) int { return cmpID(a.ID, b.ID) })
		c.Removed = slices.DeleteFunc(c.Removed, func(r peer.ID) bool { return r == id })
	}
	return c
}

// Remove returns the next list without ids (recorded in Removed, the
// oldest removals dropped beyond maxRemoved).
func (l *MemberList) Remove(ids ...peer.ID) *MemberList {
	c := l.Clone()
	for _, id := range ids {
		c.Members = slices.DeleteFunc(c.Members, func(m Member) bool { return m.ID == id })
		if !c.IsRemoved(id) {
			c.Removed = append(c.Removed, id)
			slices.SortFunc(c.Removed, cmpID)
		}
	}
	if len(c.Removed) > maxRemoved {
		c.Removed = c.Removed[len(c.Removed)-maxRemoved:]
	}
	return c
}

// body encodes everything the signature covers.
func (l *MemberList) body() ([]byte, error) {
	if len(l.Members) > maxMembers {
		return nil, fmt.Errorf("member list: %d members, max %d", len(l.Members), maxMembers)
	}
	if len(l.Removed) > maxRemoved {
		return nil, fmt.Errorf("member list: %d removed, max %d", len(l.Removed), maxRemoved)
	}
	out := []byte{MemberListVersion}
	out = append(out, l.Grid[:]...)
	out = binary.BigEndian.AppendUint64(out, l.Serial)
	out = binary.BigEndian.AppendUint64(out, uint64(l.Issued))
	var err error
	if out, err = appendID(out, l.Admin); err != nil {
		return nil, fmt.Errorf("member list admin: %w", err)
	}
	out = binary.BigEndian.AppendUint16(out, uint16(len(l.Members)))
	for _, m := range l.Members {
		if out, err = appendID(out, m.ID); err != nil {
			return nil, fmt.Errorf("member list: %w", err)
		}
		out = binary.BigEndian.AppendUint64(out, uint64(m.Added))
	}
	out = binary.BigEndian.AppendUint16(out, uint16(len(l.Removed)))
	for _, id := range l.Removed {
		if out, err = appendID(out, id); err != nil {
			return nil, fmt.Errorf("member list removed: %w", err)
		}
	}
	if out, err = appendID(out, l.Signer); err != nil {
		return nil, fmt.Errorf("member list signer: %w", err)
	}
	return out, nil
}

func appendID(out []byte, id peer.ID) ([]byte, error) {
	b := []byte(id)
	if len(b) == 0 || len(b) > maxIDLen {
		return nil, fmt.Errorf("peer id size %d out of range", len(b))
	}
	out = append(out, byte(len(b)))
	return append(out, b...), nil
}

// Sign sets Signer to the key's id and signs the list.
func (l *MemberList) Sign(key crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fmt.Errorf("sign member list: %w", err)
	}
	l.Signer = id
	body, err := l.body()
	if err != nil {
		return err
	}
	sig, err := key.Sign(append([]byte(memberListDomain), body...))
	if err != nil {
		return fmt.Errorf("sign member list: %w", err)
	}
	l.Sig = sig
	return nil
}

// MarshalBinary encodes a signed list: body || sigLen(1) || sig.
func (l *MemberList) MarshalBinary() ([]byte, error) {
	body, err := l.body()
	if err != nil {
		return nil, err
	}
	if len(l.Sig) == 0 || len(l.Sig) > 255 {
		return nil, errors.New("member list: not signed")
	}
	out := append(body, byte(len(l.Sig)))
	return append(out, l.Sig...), nil
}

// reader is a bounds-checked cursor over untrusted bytes.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("truncated %s", what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(what string) int {
	b := r.take(1, what)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16(what string) int {
	b := r.take(2, what)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func (r *reader) u64(what string) uint64 {
	b := r.take(8, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) id(what string) peer.ID {
	n := r.u8(what + " length")
	if r.err == nil && (n == 0 || n > maxIDLen) {
		r.err = fmt.Errorf("bad %s length %d", what, n)
		return ""
	}
	b := r.take(n, what)
	if r.err != nil {
		return ""
	}
	id, err := peer.IDFromBytes(b)
	if err != nil {
		r.err = fmt.Errorf("bad %s: %w", what, err)
		return ""
	}
	return id
}

// UnmarshalMemberList decodes a signed list and checks its form and its
// signature by its Signer. Whether the signer is trusted is the caller's
// question (see membership.adopt).
func UnmarshalMemberList(b []byte) (*MemberList, error) {
	if len(b) > maxMemberListLen {
		return nil, fmt.Errorf("member list: %d bytes, max %d", len(b), maxMemberListLen)
	}
	r := &reader{b: b}
	if v := r.u8("version"); r.err == nil && v != MemberListVersion {
		return nil, fmt.Errorf("member list: version: want=%d have=%d", MemberListVersion, v)
	}
	l := &MemberList{}
	copy(l.Grid[:], r.take(32, "grid id"))
	l.Serial = r.u64("serial")
	l.Issued = int64(r.u64("issued"))
	l.Admin = r.id("admin id")
	n := r.u16("member count")
	if r.err == nil && n > maxMembers {
		return nil, fmt.Errorf("member list: %d members, max %d", n, maxMembers)
	}
	for i := 0; i < n && r.err == nil; i++ {
		m := Member{ID: r.id("member id")}
		m.Added = int64(r.u64("member added"))
		if r.err == nil && len(l.Members) > 0 && cmpID(l.Members[len(l.Members)-1].ID, m.ID) >= 0 {
			return nil, fmt.Errorf("member list: member %d out of order or repeated", i)
		}
		l.Members = append(l.Members, m)
	}
	n = r.u16("removed count")
	if r.err == nil && n > maxRemoved {
		return nil, fmt.Errorf("member list: %d removed, max %d", n, maxRemoved)
	}
	for i := 0; i < n && r.err == nil; i++ {
		id := r.id("removed id")
		if r.err == nil && len(l.Removed) > 0 && cmpID(l.Removed[len(l.Removed)-1], id) >= 0 {
			return nil, fmt.Errorf("member list: removed %d out of order or repeated", i)
		}
		if r.err == nil && l.Has(id) {
			return nil, fmt.Errorf("member list: %s is both member and removed", id)
		}
		l.Removed = append(l.Removed, id)
	}
	l.Signer = r.id("signer id")
	bodyLen := len(b) - len(r.b)
	sl := r.u8("signature length")
	l.Sig = slices.Clone(r.take(sl, "signature"))
	if r.err != nil {
		return nil, fmt.Errorf("member list: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("member list: %d trailing bytes", len(r.b))
	}
	pk, err := l.Signer.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("member list: signer key: %w", err)
	}
	if pk.Type() != crypto.Ed25519 {
		return nil, errors.New("member list: signer key is not Ed25519")
	}
	ok, err := pk.Verify(append([]byte(memberListDomain), b[:bodyLen]...), l.Sig)
	if err != nil || !ok {
		return nil, errors.New("member list: bad signature")
	}
	return l, nil
}

// NewMemberList returns the first list of a grid founded by admin: the
// admin alone, serial 1, signed.
func NewMemberList(gridKey []byte, admin crypto.PrivKey, now int64) (*MemberList, error) {
	id, err := peer.IDFromPrivateKey(admin)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	l := &MemberList{Grid: GridID(gridKey), Serial: 1, Issued: now, Admin: id, Members: []Member{{ID: id, Added: now}}}
	if err := l.Sign(admin); err != nil {
		return nil, err
	}
	return l, nil
}

// Next returns a signed successor of l: next's content with l's serial
// plus one, signed by key (which must be l's admin).
func (l *MemberList) Next(next *MemberList, key crypto.PrivKey, now int64) (*MemberList, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	if id != l.Admin {
		return nil, fmt.Errorf("member list: only the admin %s signs the grid's list", l.Admin)
	}
	c := next.Clone()
	c.Grid = l.Grid
	c.Serial = l.Serial + 1
	c.Issued = now
	if c.Admin == "" {
		c.Admin = l.Admin
	}
	if err := c.Sign(key); err != nil {
		return nil, err
	}
	return c, nil
}

// follows reports whether l may replace cur for a node that trusts admin:
// same grid, higher serial, signed by the trusted admin.
func (l *MemberList) follows(cur *MemberList, grid [32]byte, admin peer.ID) error {
	if l.Grid != grid {
		return errors.New("member list of another grid")
	}
	if l.Signer != admin {
		return fmt.Errorf("member list signed by %s, not the admin %s", l.Signer, admin)
	}
	if cur != nil && l.Serial <= cur.Serial {
		return fmt.Errorf("member list serial %d not newer than %d", l.Serial, cur.Serial)
	}
	return nil
}
