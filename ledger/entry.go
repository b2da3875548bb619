package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Version is the entry format version (docs/spec/ledger.md).
const Version = 1

// Domain-separation tags: a signature or hash made for one purpose never
// verifies or collides as another.
const (
	TagEntry     = "sphere ledger entry v1\x00"
	TagEntryHash = "sphere ledger entry hash v1\x00"
	TagLease     = "sphere ledger lease terms v1\x00"
	TagReceipt   = "sphere ledger receipt v1\x00"
)

// Sizes of the fixed parts of an entry.
const (
	headerSize = 1 + 1 + 32 + 8 + 32 + 8 + 4 // version kind author index prev time bodylen
	SigSize    = ed25519.SignatureSize
	// MaxBody bounds a body so a hostile log cannot make us allocate much.
	MaxBody = 1024
	// MaxEntrySize is the largest valid encoded entry.
	MaxEntrySize = headerSize + MaxBody + SigSize
)

// Errors callers branch on.
var (
	ErrFormat    = errors.New("malformed ledger data")
	ErrSignature = errors.New("bad signature")
	ErrChain     = errors.New("broken chain")
	ErrFork      = errors.New("author signed two different entries at one index")
	ErrNotFound  = errors.New("not found")
)

// PeerID is a peer's Ed25519 public key: the identity that signs its log.
type PeerID [32]byte

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// String returns the key in lower-case base32 (52 characters).
func (p PeerID) String() string { return string(bytes.ToLower([]byte(b32.EncodeToString(p[:])))) }

// Short returns the first 8 characters, for logs and tables.
func (p PeerID) Short() string { return p.String()[:8] }

// LogValue logs a short fingerprint.
func (p PeerID) LogValue() slog.Value { return slog.StringValue(p.Short()) }

// ParsePeerID parses PeerID.String's form.
func ParsePeerID(s string) (PeerID, error) {
	var p PeerID
	b, err := b32.DecodeString(string(bytes.ToUpper([]byte(s))))
	if err != nil || len(b) != 32 {
		return p, fmt.Errorf("peer id %q: want 52 base32 characters: %w", s, ErrFormat)
	}
	copy(p[:], b)
	return p, nil
}

// PeerIDOf returns the id of a public key.
func PeerIDOf(pub ed25519.PublicKey) PeerID { return PeerID(pub) }

// Hash is an entry hash.
type Hash [32]byte

// Kind is the type of an entry's body.
type Kind uint8

// Entry kinds.
const (
	KindLease       Kind = 1 // a lease agreement both parties signed
	KindRenew       Kind = 2 // a renewal both parties signed
	KindEnd         Kind = 3 // a lease ended by one party
	KindReceipt     Kind = 4 // bytes stored or served, signed by the receiver
	KindObservation Kind = 5 // the author's measurement of a peer
)

func (k Kind) String() string {
	switch k {
	case KindLease:
		return "lease"
	case KindRenew:
		return "renew"
	case KindEnd:
		return "end"
	case KindReceipt:
		return "receipt"
	case KindObservation:
		return "observation"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one signed log entry. Body holds the decoded typed body.
type Entry struct {
	Author PeerID
	Index  uint64
	Prev   Hash
	Time   time.Time // millisecond precision on the wire
	Body   Body
	Sig    [SigSize]byte
}

// Kind returns the body's kind.
func (e *Entry) Kind() Kind { return e.Body.Kind() }

// signedBytes returns the canonical encoding the signature covers (without
// the tag).
func (e *Entry) signedBytes() []byte {
	body := e.Body.appendTo(nil)
	b := make([]byte, 0, headerSize+len(body)+SigSize)
	b = append(b, Version, byte(e.Body.Kind()))
	b = append(b, e.Author[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Index)
	b = append(b, e.Prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// Encode returns the entry's wire form: signed bytes || signature.
func (e *Entry) Encode() []byte { return append(e.signedBytes(), e.Sig[:]...) }

// Hash returns the entry's hash, the Prev of the next entry. It covers the
// signed bytes, not the signature, so the chain does not depend on which of
// several valid signatures a relay passed on.
func (e *Entry) Hash() Hash { return hashSigned(e.signedBytes()) }

func hashSigned(signed []byte) Hash {
	h := sha256.New()
	h.Write([]byte(TagEntryHash))
	h.Write(signed)
	return Hash(h.Sum(nil))
}

func tagged(tag string, b []byte) []byte {
	m := make([]byte, 0, len(tag)+len(b))
	return append(append(m, tag...), b...)
}

// Sign fills in Sig with key, which must be Author's.
func (e *Entry) Sign(key ed25519.PrivateKey) {
	copy(e.Sig[:], ed25519.Sign(key, tagged(TagEntry, e.signedBytes())))
}

// DecodeEntry parses an entry's wire form. It checks the structure and the
// body's own rules but no signature: use VerifyEntry or VerifyChain.
func DecodeEntry(b []byte) (*Entry, error) {
	e, _, err := decodeEntry(b)
	return e, err
}

func decodeEntry(b []byte) (*Entry, []byte, error) {
	if len(b) < headerSize+SigSize {
		return nil, nil, fmt.Errorf("entry: want at least %d bytes, have %d: %w", headerSize+SigSize, len(b), ErrFormat)
	}
	if b[0] != Version {
		return nil, nil, fmt.Errorf("entry: want version %d, have %d: %w", Version, b[0], ErrFormat)
	}
	e := &Entry{}
	kind := Kind(b[1])
	copy(e.Author[:], b[2:34])
	e.Index = binary.BigEndian.Uint64(b[34:42])
	copy(e.Prev[:], b[42:74])
	ms := int64(binary.BigEndian.Uint64(b[74:82]))
	if ms < 0 {
		return nil, nil, fmt.Errorf("entry: negative time: %w", ErrFormat)
	}
	e.Time = time.UnixMilli(ms).UTC()
	n := binary.BigEndian.Uint32(b[82:86])
	if n > MaxBody {
		return nil, nil, fmt.Errorf("entry: body of %d bytes, max %d: %w", n, MaxBody, ErrFormat)
	}
	if len(b) != headerSize+int(n)+SigSize {
		return nil, nil, fmt.Errorf("entry: want %d bytes for a %d-byte body, have %d: %w", headerSize+int(n)+SigSize, n, len(b), ErrFormat)
	}
	body, err := decodeBody(kind, b[headerSize:headerSize+int(n)])
	if err != nil {
		return nil, nil, fmt.Errorf("entry %d: %w", e.Index, err)
	}
	if err := body.check(e.Author); err != nil {
		return nil, nil, fmt.Errorf("entry %d (%v): %w", e.Index, kind, err)
	}
	e.Body = body
	copy(e.Sig[:], b[headerSize+int(n):])
	return e, b[:headerSize+int(n)], nil
}

// NewEntry builds and signs the entry that follows prev (nil for the first)
// in key's log.
func NewEntry(key ed25519.PrivateKey, prev *Entry, t time.Time, body Body) (*Entry, error) {
	e := &Entry{Author: PeerIDOf(key.Public().(ed25519.PublicKey)), Time: t.Truncate(time.Millisecond).UTC(), Body: body}
	if prev != nil {
		if prev.Author != e.Author {
			return nil, fmt.Errorf("new entry: previous entry is %v's, not ours: %w", prev.Author, ErrChain)
		}
		e.Index = prev.Index + 1
		e.Prev = prev.Hash()
		if e.Time.Before(prev.Time) {
			e.Time = prev.Time // a clock step back must not break our own chain
		}
	}
	if err := body.check(e.Author); err != nil {
		return nil, fmt.Errorf("new %v entry: %w", body.Kind(), err)
	}
	if len(body.appendTo(nil)) > MaxBody {
		return nil, fmt.Errorf("new %v entry: body too large: %w", body.Kind(), ErrFormat)
	}
	e.Sign(key)
	return e, nil
}

// MarshalText renders the id as String does (for JSON).
func (p PeerID) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses String's form.
func (p *PeerID) UnmarshalText(b []byte) error {
	q, err := ParsePeerID(string(b))
	*p = q
	return err
}
