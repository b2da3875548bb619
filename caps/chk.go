package caps

// THIS FILE IS THE AGREED API OF THE CHK ENCODING. Bodies are stubs to be
// replaced by the real implementation (owner: caps/CHK work).

import (
	"errors"
)

var (
	// ErrFormat: bytes or a string are malformed (wrong length, version, field).
	ErrFormat = errors.New("malformed")
	// ErrIntegrity: bytes are well-formed but fail a hash or signature check.
	ErrIntegrity      = errors.New("integrity check failed")
	errNotImplemented = errors.New("not implemented")
)

// LiteralMax is the largest file kept inside its cap (a lit cap) instead of
// being encoded into shares.
const LiteralMax = 55

// Params are the erasure-coding parameters of an upload.
type Params struct {
	K           int // shares needed to read
	Happy       int // distinct servers that must hold shares for an upload to succeed
	N           int // shares made
	SegmentSize int // plaintext bytes per segment
}

// DefaultParams returns k=3, happy=7, n=10 and the benchmarked segment size.
func DefaultParams() Params { return Params{K: 3, Happy: 7, N: 10, SegmentSize: 1 << 20} }

// Validate checks 1 <= K <= Happy <= N <= 255 and a sane segment size.
func (p Params) Validate() error { return errNotImplemented }

// Cap is any capability. String gives the canonical "sphere:<kind>:..." form.
type Cap interface {
	Kind() string
	String() string
}

// Parse parses any cap string. Errors say what was wanted and what came.
func Parse(s string) (Cap, error) { return nil, errNotImplemented }

// LitCap holds a tiny file's bytes inside the cap itself.
type LitCap struct{ Data []byte }

// CHKCap is the read cap of an immutable file.
type CHKCap struct {
	Key  [16]byte // read key; the AEAD key and storage index derive from it
	Root [32]byte // hash of the file's extension block (binds params, share root)
	K, N int
	Size uint64
}

// CHKVerifyCap can check an immutable file's shares but not decrypt them.
type CHKVerifyCap struct {
	SI   StorageIndex
	Root [32]byte
	K, N int
	Size uint64
}

// KeyHasher derives a convergent key: write the whole plaintext, then Key.
type KeyHasher struct{}

// NewKeyHasher starts a convergent key derivation from the user's
// convergence secret and the encoding parameters.
func NewKeyHasher(secret []byte, p Params) *KeyHasher { return &KeyHasher{} }

// Write feeds plaintext; it never fails.
func (h *KeyHasher) Write(p []byte) (int, error) { return len(p), nil }

// Key returns the derived key.
func (h *KeyHasher) Key() [16]byte { return [16]byte{} }

// Layout says where things are inside every share of one file. All shares
// of a file have the same layout.
type Layout struct {
	K, N        int
	Size        uint64
	SegmentSize int
}

// NumSegments returns the number of segments (at least 1, even for size 0).
func (l Layout) NumSegments() int { return 0 }

// SegmentLen returns the plaintext length of segment seg.
func (l Layout) SegmentLen(seg int) int { return 0 }

// BlockSize returns the length of each share's block for segment seg.
func (l Layout) BlockSize(seg int) int { return 0 }

// BlockOffset returns the offset of segment seg's block inside a share.
func (l Layout) BlockOffset(seg int) int64 { return 0 }

// TrailerOffset and TrailerSize locate the share's trailer (hashes + extension block).
func (l Layout) TrailerOffset() int64 { return 0 }
func (l Layout) TrailerSize() int     { return 0 }

// ShareSize is the total length of each share.
func (l Layout) ShareSize() int64 { return 0 }

// ShareHeaderSize is the fixed length of the header at offset 0 of a share.
const ShareHeaderSize = 0

// Encoder turns a plaintext into n shares, segment by segment.
type Encoder struct{}

// NewEncoder prepares to encode size bytes under key.
func NewEncoder(key [16]byte, p Params, size uint64) (*Encoder, error) { return nil, errNotImplemented }

// StorageIndex returns where the shares will live.
func (e *Encoder) StorageIndex() StorageIndex { return StorageIndex{} }

// Layout returns the share layout.
func (e *Encoder) Layout() Layout { return Layout{} }

// ShareHeader returns the bytes at offset 0 of share shnum.
func (e *Encoder) ShareHeader(shnum int) []byte { return nil }

// EncodeSegment seals and erasure-codes plaintext segment seg and returns
// its n blocks (blocks[shnum]). Safe to call concurrently for distinct seg;
// each seg exactly once.
func (e *Encoder) EncodeSegment(seg int, plaintext []byte) ([][]byte, error) {
	return nil, errNotImplemented
}

// Finish, once every segment is encoded, returns each share's trailer and
// the read cap.
func (e *Encoder) Finish() (trailers [][]byte, c CHKCap, err error) {
	return nil, CHKCap{}, errNotImplemented
}

// Verifier checks shares against a verify cap.
type Verifier struct{}

// NewVerifier returns a verifier for the file vc names.
func NewVerifier(vc CHKVerifyCap) *Verifier { return &Verifier{} }

// ParseHeader checks a share header and returns the layout it claims. The
// layout is trusted only after VerifyTrailer succeeds.
func (v *Verifier) ParseHeader(shnum int, hdr []byte) (Layout, error) {
	return Layout{}, errNotImplemented
}

// VerifyTrailer checks a share's trailer against the cap's root and returns
// the proof used to check that share's blocks.
func (v *Verifier) VerifyTrailer(shnum int, l Layout, trailer []byte) (*ShareProof, error) {
	return nil, errNotImplemented
}

// ShareProof holds a verified share's block hashes.
type ShareProof struct{}

// CheckBlock returns an ErrIntegrity error unless block is segment seg's
// block of this share.
func (p *ShareProof) CheckBlock(seg int, block []byte) error { return errNotImplemented }

// Decoder decrypts and decodes segments of a file.
type Decoder struct{ *Verifier }

// NewDecoder returns a decoder for the file c names.
func NewDecoder(c CHKCap) *Decoder { return &Decoder{} }

// DecodeSegment rebuilds and decrypts segment seg from at least k blocks
// already checked with CheckBlock (blocks[shnum], nil where missing).
func (d *Decoder) DecodeSegment(l Layout, seg int, blocks [][]byte) ([]byte, error) {
	return nil, errNotImplemented
}
