package caps

import (
	"encoding/base32"
	"fmt"
	"log/slog"
)

// b32 is the lower-case, unpadded RFC 4648 base32 alphabet used in every cap
// string and in every printed identifier.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// StorageIndex names where a file's shares live on the servers. It is a
// tagged hash of the file's key (or, for mutable files, of its read key), so
// it reveals nothing of the key or the content. It is comparable and usable as
// a map key.
type StorageIndex [16]byte

// String returns the storage index in lower-case base32 (26 characters).
func (si StorageIndex) String() string { return b32.EncodeToString(si[:]) }

// LogValue lets slog print a storage index compactly; it is not secret.
func (si StorageIndex) LogValue() slog.Value { return slog.StringValue(si.String()[:10]) }

// ParseStorageIndex parses the base32 form printed by String, and only that
// form: a string that decodes to the same bytes but is spelled otherwise
// (nonzero trailing bits, line breaks, which the base32 decoder skips) is
// refused, so one storage index has exactly one name (a share directory, a
// map key made of the string).
func ParseStorageIndex(s string) (StorageIndex, error) {
	var si StorageIndex
	b, err := b32.DecodeString(s)
	if err != nil {
		return si, fmt.Errorf("storage index: invalid base32: %w", err)
	}
	if len(b) != len(si) {
		return si, fmt.Errorf("storage index: want %d bytes, have %d", len(si), len(b))
	}
	copy(si[:], b)
	if si.String() != s {
		return StorageIndex{}, fmt.Errorf("storage index: not in canonical form (want %s)", si.String())
	}
	return si, nil
}
