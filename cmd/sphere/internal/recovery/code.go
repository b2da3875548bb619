// Package recovery encodes and parses recovery codes: one string, typed
// or scanned by a human, that holds everything a new machine needs to take
// over a lost Sphere home (root directory write cap, convergence and lease
// secrets, node identity, grid key, encoding and a few grid contacts).
//
// The package is pure: bytes and strings in, bytes and strings out, no
// I/O and no clock. The format is docs/spec/recovery-code.md.
package recovery

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the version of the binary payload this package writes.
const Version = 1

// Limits of a version-1 payload.
const (
	MaxContacts     = 8  // contacts in one code
	MaxContactAddrs = 4  // addresses per contact
	MaxAddrLen      = 64 // bytes of one binary multiaddr
	SecretSize      = 32
	// MaxPayload bounds a payload's bytes (the header's length field
	// could say more; nothing valid is this long).
	MaxPayload = 2 + 7 + 6*SecretSize + 1 + MaxContacts*(SecretSize+1+MaxContactAddrs*(1+MaxAddrLen))
)

// Flags of a version-1 payload.
const (
	// FlagFounder: the home founded the grid (its grid key is its own,
	// and its node identity is the grid's admin).
	FlagFounder = 1 << 0
	knownFlags  = FlagFounder
)

var (
	// ErrFormat wraps every reason a code is refused.
	ErrFormat = errors.New("bad recovery code")
	// ErrNewerVersion: the code was made by a newer Sphere.
	ErrNewerVersion = errors.New("recovery code from a newer version of Sphere")
)

// Params is the home's encoding (caps.Params without the dependency).
type Params struct {
	K, Happy, N uint8
	SegmentSize uint32
}

// Contact is a grid member known when the code was made: its Ed25519
// public key (the libp2p peer id is derived from it) and its addresses as
// binary multiaddrs (without /p2p/).
type Contact struct {
	PubKey [SecretSize]byte
	Addrs  [][]byte
}

// Code is what a recovery code holds.
type Code struct {
	Flags       uint8
	Params      Params
	RootSeed    [SecretSize]byte // seed of the root directory's write cap (sphere:dir-rw:<seed>)
	Convergence [SecretSize]byte
	LeaseSecret [SecretSize]byte
	Identity    [SecretSize]byte // Ed25519 seed of the node's libp2p identity
	GridKey     [SecretSize]byte
	// Admin is the Ed25519 public key of the grid's admin node, whose
	// signature on the member list members trust (only without
	// FlagFounder; a founder's node is the admin).
	Admin    [SecretSize]byte
	Contacts []Contact
}

// Founder reports FlagFounder.
func (c *Code) Founder() bool { return c.Flags&FlagFounder != 0 }

// GridID is a short, non-secret name of the grid key, for messages that
// must tell two grids apart without showing the key.
func GridID(key []byte) string {
	h := sha256.Sum256(append([]byte("sphere recovery grid id v1"), key...))
	return fmt.Sprintf("%x", h[:4])
}

// MarshalBinary returns the version-1 payload:
//
//	version(1) || flags(1) || k(1) || happy(1) || n(1) || segsize(4, BE) ||
//	root(32) || convergence(32) || lease(32) || identity(32) || gridkey(32) ||
//	[ admin(32), only without FlagFounder ] || ncontacts(1) || ncontacts * ( pubkey(32) || naddrs(1) || naddrs * ( len(1) || addr ) )
func (c *Code) MarshalBinary() ([]byte, error) {
	if c.Flags&^knownFlags != 0 {
		return nil, fmt.Errorf("recovery code: unknown flags %#x: %w", c.Flags&^knownFlags, ErrFormat)
	}
	if len(c.Contacts) > MaxContacts {
		return nil, fmt.Errorf("recovery code: want at most %d contacts, have %d: %w", MaxContacts, len(c.Contacts), ErrFormat)
	}
	b := make([]byte, 0, 2+7+5*SecretSize+1+len(c.Contacts)*48)
	b = append(b, Version, c.Flags, c.Params.K, c.Params.Happy, c.Params.N)
	b = binary.BigEndian.AppendUint32(b, c.Params.SegmentSize)
	for _, s := range [][SecretSize]byte{c.RootSeed, c.Convergence, c.LeaseSecret, c.Identity, c.GridKey} {
		b = append(b, s[:]...)
	}
	if !c.Founder() {
		b = append(b, c.Admin[:]...)
	}
	b = append(b, byte(len(c.Contacts)))
	for i, ct := range c.Contacts {
		if len(ct.Addrs) == 0 || len(ct.Addrs) > MaxContactAddrs {
			return nil, fmt.Errorf("recovery code: contact %d: want 1..%d addresses, have %d: %w", i, MaxContactAddrs, len(ct.Addrs), ErrFormat)
		}
		b = append(b, ct.PubKey[:]...)
		b = append(b, byte(len(ct.Addrs)))
		for _, a := range ct.Addrs {
			if len(a) == 0 || len(a) > MaxAddrLen {
				return nil, fmt.Errorf("recovery code: contact %d: address of %d bytes, want 1..%d: %w", i, len(a), MaxAddrLen, ErrFormat)
			}
			b = append(b, byte(len(a)))
			b = append(b, a...)
		}
	}
	return b, nil
}

// UnmarshalBinary parses a payload. Every field is checked; trailing
// bytes are refused, so each code has exactly one payload.
func (c *Code) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	v := r.byte()
	if r.err == nil && v > Version {
		return fmt.Errorf("recovery code: payload version %d, this Sphere reads up to %d (upgrade Sphere): %w", v, Version, ErrNewerVersion)
	}
	if r.err == nil && v != Version {
		return fmt.Errorf("recovery code: payload version: want=%d have=%d: %w", Version, v, ErrFormat)
	}
	var out Code
	out.Flags = r.byte()
	out.Params.K, out.Params.Happy, out.Params.N = r.byte(), r.byte(), r.byte()
	out.Params.SegmentSize = r.uint32()
	for _, s := range []*[SecretSize]byte{&out.RootSeed, &out.Convergence, &out.LeaseSecret, &out.Identity, &out.GridKey} {
		copy(s[:], r.take(SecretSize))
	}
	if !out.Founder() {
		copy(out.Admin[:], r.take(SecretSize))
	}
	n := int(r.byte())
	if r.err != nil {
		return r.err
	}
	if out.Flags&^knownFlags != 0 {
		return fmt.Errorf("recovery code: unknown flags %#x: %w", out.Flags&^knownFlags, ErrFormat)
	}
	p := out.Params
	if p.K < 1 || p.K > p.Happy || p.Happy > p.N {
		return fmt.Errorf("recovery code: encoding: want 1 <= k <= happy <= n, have k=%d happy=%d n=%d: %w", p.K, p.Happy, p.N, ErrFormat)
	}
	if n > MaxContacts {
		return fmt.Errorf("recovery code: want at most %d contacts, have %d: %w", MaxContacts, n, ErrFormat)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var ct Contact
		copy(ct.PubKey[:], r.take(SecretSize))
		na := int(r.byte())
		if r.err == nil && (na == 0 || na > MaxContactAddrs) {
			return fmt.Errorf("recovery code: contact %d: want 1..%d addresses, have %d: %w", i, MaxContactAddrs, na, ErrFormat)
		}
		for j := 0; j < na && r.err == nil; j++ {
			l := int(r.byte())
			if r.err == nil && (l == 0 || l > MaxAddrLen) {
				return fmt.Errorf("recovery code: contact %d: address of %d bytes, want 1..%d: %w", i, l, MaxAddrLen, ErrFormat)
			}
			if a := r.take(l); r.err == nil {
				ct.Addrs = append(ct.Addrs, append([]byte(nil), a...))
			}
		}
		out.Contacts = append(out.Contacts, ct)
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("recovery code: %d bytes after the last field: %w", len(r.b), ErrFormat)
	}
	*c = out
	return nil
}

// reader takes fields from a byte slice, remembering the first short read.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("recovery code: payload ends at byte %d, want %d more: %w", r.off+len(r.b), n-len(r.b), ErrFormat)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	r.off += n
	return out
}

func (r *reader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
