package caps

// Cap strings: "sphere:<kind>:<field>:<field>...". Grammar in docs/spec/caps.md.

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// MaxCapLen bounds the length of any cap string Parse accepts; longer input
// is rejected before any other work.
const MaxCapLen = 2048

const capPrefix = "sphere:"

// Cap is any capability. String gives the canonical "sphere:<kind>:..." form.
type Cap interface {
	Kind() string
	String() string
}

// Parse parses any cap string. Errors say what was wanted and what came, and
// wrap ErrFormat. Immutable kinds come back as values: LitCap, CHKCap,
// CHKVerifyCap. Other kinds are handed to the mutable-cap parser.
func Parse(s string) (Cap, error) {
	if len(s) > MaxCapLen {
		return nil, fmt.Errorf("cap: want at most %d characters, have %d: %w", MaxCapLen, len(s), ErrFormat)
	}
	if !strings.HasPrefix(s, capPrefix) {
		return nil, fmt.Errorf("cap: want prefix %q, have %q: %w", capPrefix, clip(s, len(capPrefix)), ErrFormat)
	}
	kind, rest, ok := strings.Cut(s[len(capPrefix):], ":")
	if !ok {
		return nil, fmt.Errorf("cap: want \"sphere:<kind>:<fields>\", have no ':' after kind %q: %w", clip(kind, 20), ErrFormat)
	}
	if !validKind(kind) {
		return nil, fmt.Errorf("cap: want kind of 1-16 characters [a-z0-9-], have %q: %w", clip(kind, 20), ErrFormat)
	}
	switch kind {
	case kindLit:
		return parseLit(rest)
	case kindCHK:
		return parseCHK(rest)
	case kindCHKVerify:
		return parseCHKVerify(rest)
	}
	return parseMutable(kind, rest)
}

const (
	kindLit       = "lit"
	kindCHK       = "chk"
	kindCHKVerify = "chk-verify"
)

func validKind(k string) bool {
	if len(k) == 0 || len(k) > 16 {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// clip shortens untrusted input quoted in an error.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// splitFields splits rest into exactly want fields.
func splitFields(kind, rest string, want int) ([]string, error) {
	f := strings.Split(rest, ":")
	if len(f) != want {
		return nil, fmt.Errorf("%s cap: want %d fields, have %d: %w", kind, want, len(f), ErrFormat)
	}
	return f, nil
}

// decodeB32 decodes a field that must be the canonical base32 of exactly
// len(dst) bytes. Go's decoder ignores newlines and non-zero trailing bits;
// re-encoding and comparing rejects both.
func decodeB32(kind, name, s string, dst []byte) error {
	if want := b32.EncodedLen(len(dst)); len(s) != want {
		return fmt.Errorf("%s cap: %s: want %d base32 characters, have %d: %w", kind, name, want, len(s), ErrFormat)
	}
	b, err := b32.DecodeString(s)
	if err != nil || len(b) != len(dst) || b32.EncodeToString(b) != s {
		return fmt.Errorf("%s cap: %s: want canonical lower-case base32, have %q: %w", kind, name, clip(s, 60), ErrFormat)
	}
	copy(dst, b)
	return nil
}

// parseUint parses a canonical decimal: digits only, no leading zero.
func parseUint(kind, name, s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s cap: %s: want canonical decimal, have %q: %w", kind, name, clip(s, 24), ErrFormat)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, fmt.Errorf("%s cap: %s: want at most %d, have %s: %w", kind, name, max, s, ErrFormat)
	}
	return v, nil
}

// parseKNSize parses the trailing k, n and size fields common to chk kinds.
func parseKNSize(kind string, f []string) (k, n int, size uint64, err error) {
	k64, err := parseUint(kind, "k", f[0], MaxShares)
	if err != nil {
		return 0, 0, 0, err
	}
	n64, err := parseUint(kind, "n", f[1], MaxShares)
	if err != nil {
		return 0, 0, 0, err
	}
	if k64 < 1 || k64 > n64 {
		return 0, 0, 0, fmt.Errorf("%s cap: want 1 <= k <= n <= %d, have k=%d n=%d: %w", kind, MaxShares, k64, n64, ErrFormat)
	}
	size, err = parseUint(kind, "size", f[2], MaxFileSize)
	if err != nil {
		return 0, 0, 0, err
	}
	return int(k64), int(n64), size, nil
}

func formatKNSize(b *strings.Builder, k, n int, size uint64) {
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(k))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(n))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(size, 10))
}

// LitCap holds a tiny file's bytes inside the cap itself. Its string is
// "sphere:lit:<base32 data>"; the empty file is "sphere:lit:".
type LitCap struct{ Data []byte }

// Kind returns "lit".
func (LitCap) Kind() string { return kindLit }

// String returns the cap string, which contains the file's bytes.
func (c LitCap) String() string { return capPrefix + kindLit + ":" + b32.EncodeToString(c.Data) }

// LogValue shows only the kind and length, never the data.
func (c LitCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", kindLit), slog.Int("size", len(c.Data)))
}

// GoString hides the data from %#v.
func (c LitCap) GoString() string { return fmt.Sprintf("caps.LitCap{size=%d}", len(c.Data)) }

// Format hides the data from every fmt verb; call String for the cap itself.
func (c LitCap) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "sphere:lit:<%d bytes>", len(c.Data))
}

func parseLit(rest string) (Cap, error) {
	if max := b32.EncodedLen(LiteralMax); len(rest) > max {
		return nil, fmt.Errorf("lit cap: want at most %d bytes (%d base32 characters), have %d characters: %w",
			LiteralMax, max, len(rest), ErrFormat)
	}
	b, err := b32.DecodeString(rest)
	if err != nil || b32.EncodeToString(b) != rest {
		return nil, fmt.Errorf("lit cap: want canonical lower-case base32, have %q: %w", clip(rest, 60), ErrFormat)
	}
	if len(b) == 0 {
		b = nil
	}
	return LitCap{Data: b}, nil
}

// CHKCap is the read cap of an immutable file:
// "sphere:chk:<key>:<root>:<k>:<n>:<size>".
type CHKCap struct {
	Key  [16]byte // read key; the AEAD key and storage index derive from it
	Root [32]byte // hash of the file's extension block (binds params, share root)
	K, N int
	Size uint64
}

// Kind returns "chk".
func (CHKCap) Kind() string { return kindCHK }

// String returns the cap string, which contains the read key.
func (c CHKCap) String() string {
	var b strings.Builder
	b.Grow(128)
	b.WriteString(capPrefix + kindCHK + ":")
	b.WriteString(b32.EncodeToString(c.Key[:]))
	b.WriteByte(':')
	b.WriteString(b32.EncodeToString(c.Root[:]))
	formatKNSize(&b, c.K, c.N, c.Size)
	return b.String()
}

// StorageIndex returns where the file's shares live.
func (c CHKCap) StorageIndex() StorageIndex { return StorageIndexOf(c.Key) }

// VerifyCap returns the cap that checks the shares but cannot decrypt them.
func (c CHKCap) VerifyCap() CHKVerifyCap {
	return CHKVerifyCap{SI: c.StorageIndex(), Root: c.Root, K: c.K, N: c.N, Size: c.Size}
}

// LogValue shows the kind and a storage-index fingerprint, never the key.
func (c CHKCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", kindCHK), slog.Any("si", c.StorageIndex()))
}

// GoString hides the key from %#v.
func (c CHKCap) GoString() string {
	return fmt.Sprintf("caps.CHKCap{si=%s k=%d n=%d size=%d}", c.StorageIndex().String()[:10], c.K, c.N, c.Size)
}

// Format hides the key from every fmt verb; call String for the cap itself.
func (c CHKCap) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "sphere:chk:<si %s>", c.StorageIndex().String()[:10])
}

func parseCHK(rest string) (Cap, error) {
	f, err := splitFields(kindCHK, rest, 5)
	if err != nil {
		return nil, err
	}
	var c CHKCap
	if err := decodeB32(kindCHK, "key", f[0], c.Key[:]); err != nil {
		return nil, err
	}
	if err := decodeB32(kindCHK, "root", f[1], c.Root[:]); err != nil {
		return nil, err
	}
	if c.K, c.N, c.Size, err = parseKNSize(kindCHK, f[2:]); err != nil {
		return nil, err
	}
	return c, nil
}

// CHKVerifyCap can check an immutable file's shares but not decrypt them:
// "sphere:chk-verify:<storage index>:<root>:<k>:<n>:<size>". It holds no
// secret.
type CHKVerifyCap struct {
	SI   StorageIndex
	Root [32]byte
	K, N int
	Size uint64
}

// Kind returns "chk-verify".
func (CHKVerifyCap) Kind() string { return kindCHKVerify }

// String returns the cap string.
func (c CHKVerifyCap) String() string {
	var b strings.Builder
	b.Grow(128)
	b.WriteString(capPrefix + kindCHKVerify + ":")
	b.WriteString(b32.EncodeToString(c.SI[:]))
	b.WriteByte(':')
	b.WriteString(b32.EncodeToString(c.Root[:]))
	formatKNSize(&b, c.K, c.N, c.Size)
	return b.String()
}

// StorageIndex returns where the file's shares live.
func (c CHKVerifyCap) StorageIndex() StorageIndex { return c.SI }

// LogValue shows the kind and a storage-index fingerprint.
func (c CHKVerifyCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", kindCHKVerify), slog.Any("si", c.SI))
}

func parseCHKVerify(rest string) (Cap, error) {
	f, err := splitFields(kindCHKVerify, rest, 5)
	if err != nil {
		return nil, err
	}
	var c CHKVerifyCap
	if err := decodeB32(kindCHKVerify, "storage index", f[0], c.SI[:]); err != nil {
		return nil, err
	}
	if err := decodeB32(kindCHKVerify, "root", f[1], c.Root[:]); err != nil {
		return nil, err
	}
	if c.K, c.N, c.Size, err = parseKNSize(kindCHKVerify, f[2:]); err != nil {
		return nil, err
	}
	return c, nil
}
