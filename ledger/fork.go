package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ForkProof is two validly signed entries by one author at one index with
// different content: proof, checkable offline by anyone, that the author
// told two stories. Wire form: version(1) || len(A) u16 || A || len(B) u16 || B,
// A and B the encoded entries ordered bytewise so a proof has one encoding.
type ForkProof struct {
	A, B []byte
}

// NewForkProof builds a proof from two encoded entries and checks it.
func NewForkProof(a, b []byte) (*ForkProof, error) {
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	p := &ForkProof{A: bytes.Clone(a), B: bytes.Clone(b)}
	if _, _, err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// Verify checks the proof and returns the author and index it convicts.
func (p *ForkProof) Verify() (PeerID, uint64, error) {
	a, sa, err := decodeEntry(p.A)
	if err != nil {
		return PeerID{}, 0, fmt.Errorf("fork proof: first entry: %w", err)
	}
	b, sb, err := decodeEntry(p.B)
	if err != nil {
		return PeerID{}, 0, fmt.Errorf("fork proof: second entry: %w", err)
	}
	switch {
	case a.Author != b.Author:
		return PeerID{}, 0, fmt.Errorf("fork proof: two authors: %w", ErrFormat)
	case a.Index != b.Index:
		return PeerID{}, 0, fmt.Errorf("fork proof: indexes %d and %d differ: %w", a.Index, b.Index, ErrFormat)
	case bytes.Equal(sa, sb):
		return PeerID{}, 0, fmt.Errorf("fork proof: same entry twice: %w", ErrFormat)
	}
	// Only the author's own signature matters: it signed both.
	if !verifyOne(sigCheck{a.Author, tagged(TagEntry, sa), a.Sig[:]}) ||
		!verifyOne(sigCheck{b.Author, tagged(TagEntry, sb), b.Sig[:]}) {
		return PeerID{}, 0, fmt.Errorf("fork proof: %w", ErrSignature)
	}
	return a.Author, a.Index, nil
}

// Encode returns the proof's wire form.
func (p *ForkProof) Encode() []byte {
	b := make([]byte, 0, 5+len(p.A)+len(p.B))
	b = append(b, Version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.A)))
	b = append(b, p.A...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.B)))
	return append(b, p.B...)
}

// DecodeForkProof parses and verifies a proof.
func DecodeForkProof(b []byte) (*ForkProof, error) {
	if len(b) < 5 || b[0] != Version {
		return nil, fmt.Errorf("fork proof: bad header: %w", ErrFormat)
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if n > MaxEntrySize || len(b) < 3+n+2 {
		return nil, fmt.Errorf("fork proof: first entry of %d bytes does not fit: %w", n, ErrFormat)
	}
	a := b[3 : 3+n]
	rest := b[3+n:]
	m := int(binary.BigEndian.Uint16(rest[:2]))
	if m > MaxEntrySize || len(rest) != 2+m {
		return nil, fmt.Errorf("fork proof: second entry of %d bytes does not fit: %w", m, ErrFormat)
	}
	if bytes.Compare(a, rest[2:]) >= 0 {
		return nil, fmt.Errorf("fork proof: entries not in canonical order: %w", ErrFormat)
	}
	p := &ForkProof{A: bytes.Clone(a), B: bytes.Clone(rest[2:])}
	if _, _, err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}
