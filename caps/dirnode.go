package caps

// Directory tables: the plaintext of a directory's mutable file. The byte
// format is specified in docs/spec/dirnode.md (version 1); keep the two in
// step.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// DirTableVersion is the first byte of every encoded table.
const DirTableVersion = 1

// Limits on directory tables; decode rejects anything beyond them.
const (
	MaxNameLen       = 255     // bytes of one entry name
	MaxTargetLen     = 4096    // bytes of a symlink target
	MaxDirEntries    = 1 << 20 // entries in one table
	dirEntryMinSize  = 1 + 1 + 2 + 1 + 1 + 8 + 4 + 8 + 2
	dirTableHdrSize  = 1 + 4
	dirWriteNonceLen = chacha20poly1305.NonceSizeX
)

const (
	ctxDirWriteCaps  = "sphere 2026-11-27 dirnode write caps v1"
	ctxDirWriteNonce = "sphere 2026-11-27 dirnode write caps nonce v1"
)

// ErrConflict: a change to a directory expected a previous entry that is no
// longer there (someone else changed the same name first).
var ErrConflict = errors.New("conflicting change")

// EntryType says what a directory entry names.
type EntryType uint8

// Entry types.
const (
	TypeFile    EntryType = 1
	TypeDir     EntryType = 2
	TypeSymlink EntryType = 3
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Entry is one name in a directory.
type Entry struct {
	Name string
	// ReadCap is the child's read cap string (lit, chk, mut-ro or dir-ro);
	// empty for symlinks.
	ReadCap string
	// WriteCap is the child's write cap string (mut-rw or dir-rw), or empty:
	// immutable children have none, and a table decoded with only a read cap
	// never carries any (transitive read-only).
	WriteCap string
	Type     EntryType
	Size     uint64
	Mode     uint32
	MTime    int64  // nanoseconds since the Unix epoch
	Target   string // symlink target; empty for other types
}

// Ident is what a Change compares to decide whether an entry is the one
// its editor saw: the child read cap, or "symlink:"+Target for a symlink.
func (e Entry) Ident() string {
	if e.Type == TypeSymlink {
		return "symlink:" + e.Target
	}
	return e.ReadCap
}

// ValidName returns an error unless name may be a directory entry name:
// non-empty, at most MaxNameLen bytes of valid UTF-8, no '/' or NUL, and
// not "." or "..".
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("entry name: want non-empty: %w", ErrFormat)
	case len(name) > MaxNameLen:
		return fmt.Errorf("entry name: want at most %d bytes, have %d: %w", MaxNameLen, len(name), ErrFormat)
	case name == "." || name == "..":
		return fmt.Errorf("entry name: want not %q: %w", name, ErrFormat)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("entry name %q: want no '/': %w", clip(name, 40), ErrFormat)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("entry name %q: want no NUL byte: %w", clip(name, 40), ErrFormat)
	case !utf8.ValidString(name):
		return fmt.Errorf("entry name %q: want valid UTF-8: %w", clip(name, 40), ErrFormat)
	}
	return nil
}

// capKind returns the kind of a cap string after a cheap syntactic check.
func capKind(s string) (string, error) {
	if !strings.HasPrefix(s, capPrefix) {
		return "", fmt.Errorf("want prefix %q, have %q: %w", capPrefix, clip(s, 20), ErrFormat)
	}
	kind, _, ok := strings.Cut(s[len(capPrefix):], ":")
	if !ok {
		return "", fmt.Errorf("want \"sphere:<kind>:...\", have %q: %w", clip(s, 30), ErrFormat)
	}
	return kind, nil
}

// check validates an entry's fields and caps. Caps are parsed in full, so a
// table never carries a cap string that Parse rejects.
func (e *Entry) check() error {
	if err := ValidName(e.Name); err != nil {
		return err
	}
	if len(e.Target) > MaxTargetLen {
		return fmt.Errorf("entry %q: want symlink target of at most %d bytes, have %d: %w", clip(e.Name, 40), MaxTargetLen, len(e.Target), ErrFormat)
	}
	switch e.Type {
	case TypeSymlink:
		if e.ReadCap != "" || e.WriteCap != "" {
			return fmt.Errorf("entry %q: want no caps on a symlink: %w", clip(e.Name, 40), ErrFormat)
		}
		return nil
	case TypeFile, TypeDir:
	default:
		return fmt.Errorf("entry %q: want type file, dir or symlink, have %v: %w", clip(e.Name, 40), e.Type, ErrFormat)
	}
	if e.Target != "" {
		return fmt.Errorf("entry %q: want no symlink target on a %v: %w", clip(e.Name, 40), e.Type, ErrFormat)
	}
	rk, err := capKind(e.ReadCap)
	if err != nil {
		return fmt.Errorf("entry %q: read cap: %w", clip(e.Name, 40), err)
	}
	if ok := rk == KindDirRead; ok != (e.Type == TypeDir) || !ok && rk != kindCHK && rk != kindLit && rk != KindMutableRead {
		want := "lit, chk or mut-ro"
		if e.Type == TypeDir {
			want = KindDirRead
		}
		return fmt.Errorf("entry %q: read cap of a %v: want kind %s, have %q: %w", clip(e.Name, 40), e.Type, want, clip(rk, 20), ErrFormat)
	}
	if err := checkTableCap(rk, e.ReadCap); err != nil {
		return fmt.Errorf("entry %q: read cap: %w", clip(e.Name, 40), err)
	}
	if e.WriteCap == "" {
		return nil
	}
	wk, err := capKind(e.WriteCap)
	if err != nil {
		return fmt.Errorf("entry %q: write cap: %w", clip(e.Name, 40), err)
	}
	wantWrite := ""
	switch rk {
	case KindMutableRead:
		wantWrite = KindMutableWrite
	case KindDirRead:
		wantWrite = KindDirWrite
	}
	if wk != wantWrite || wantWrite == "" {
		return fmt.Errorf("entry %q: write cap for read cap kind %s: want kind %q, have %q: %w", clip(e.Name, 40), rk, wantWrite, clip(wk, 20), ErrFormat)
	}
	if err := checkTableCap(wk, e.WriteCap); err != nil {
		return fmt.Errorf("entry %q: write cap: %w", clip(e.Name, 40), err)
	}
	// Both caps must name one file: else write-cap holders would see one
	// directory and read-cap holders another.
	rc, err := readCapOfWriteCap(e.WriteCap)
	if err != nil {
		return fmt.Errorf("entry %q: write cap: %w", clip(e.Name, 40), err)
	}
	if rc != e.ReadCap {
		return fmt.Errorf("entry %q: write cap and read cap name different files: %w", clip(e.Name, 40), ErrFormat)
	}
	return nil
}

// derivedReadCaps caches write cap string -> read cap string: deriving
// costs an Ed25519 public key (tens of µs), and a directory of many
// writable children is decoded again on every change. Bounded: cleared
// when full.
var derivedReadCaps = struct {
	sync.Mutex
	m map[string]string
}{m: make(map[string]string)}

const maxDerivedReadCaps = 8192

// readCapOfWriteCap returns the read cap string a mutable write cap derives.
func readCapOfWriteCap(s string) (string, error) {
	derivedReadCaps.Lock()
	rc, ok := derivedReadCaps.m[s]
	derivedReadCaps.Unlock()
	if ok {
		return rc, nil
	}
	c, err := Parse(s)
	if err != nil {
		return "", err
	}
	wc, ok := c.(MutableWriteCap)
	if !ok {
		return "", fmt.Errorf("kind %q is not a mutable write cap: %w", clip(c.Kind(), 20), ErrFormat)
	}
	rc = wc.ReadCap().String()
	derivedReadCaps.Lock()
	if len(derivedReadCaps.m) >= maxDerivedReadCaps {
		clear(derivedReadCaps.m)
	}
	derivedReadCaps.m[s] = rc
	derivedReadCaps.Unlock()
	return rc, nil
}

// checkTableCap accepts exactly the cap strings of kind (one a table may
// hold: lit, chk, mut-ro, dir-ro, mut-rw, dir-rw) that Parse accepts, without
// allocating: decoding a 10,000-entry table checks 10,000 caps.
// TestCheckTableCapMatchesParse and FuzzDirTable keep the two in step.
func checkTableCap(kind, s string) error {
	if len(s) > MaxCapLen {
		return fmt.Errorf("cap: want at most %d characters, have %d: %w", MaxCapLen, len(s), ErrFormat)
	}
	rest := s[len(capPrefix)+len(kind)+1:]
	var want []int // bytes of each base32 field; -1 for a decimal field
	switch kind {
	case kindLit:
		if len(rest) > b32.EncodedLen(LiteralMax) || !canonicalB32(rest) {
			return fmt.Errorf("lit cap: want canonical base32 of at most %d bytes: %w", LiteralMax, ErrFormat)
		}
		return nil
	case kindCHK:
		want = []int{16, 32, -1, -1, -1}
	case KindMutableRead, KindDirRead:
		want = []int{16, 32}
	case KindMutableWrite, KindDirWrite:
		want = []int{32}
	default:
		return fmt.Errorf("cap: kind %q not allowed in a directory: %w", clip(kind, 20), ErrFormat)
	}
	var nums [3]uint64
	ni := 0
	for i, w := range want {
		f := rest
		if i < len(want)-1 {
			j := strings.IndexByte(rest, ':')
			if j < 0 {
				return fmt.Errorf("%s cap: want %d fields, have %d: %w", kind, len(want), i+1, ErrFormat)
			}
			f, rest = rest[:j], rest[j+1:]
		}
		if w < 0 {
			if !allDigits(f) || len(f) > 20 || (len(f) > 1 && f[0] == '0') {
				return fmt.Errorf("%s cap: field %d: want canonical decimal: %w", kind, i+1, ErrFormat)
			}
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return fmt.Errorf("%s cap: field %d: %w", kind, i+1, ErrFormat)
			}
			nums[ni] = v
			ni++
			continue
		}
		if len(f) != b32.EncodedLen(w) || !canonicalB32(f) {
			return fmt.Errorf("%s cap: field %d: want canonical base32 of %d bytes: %w", kind, i+1, w, ErrFormat)
		}
	}
	// The last field took the rest, so a further ':' failed its check.
	if kind == kindCHK {
		if k, n := nums[0], nums[1]; k < 1 || k > n || n > MaxShares || nums[2] > MaxFileSize {
			return fmt.Errorf("chk cap: want 1 <= k <= n <= %d and size <= %d: %w", MaxShares, uint64(MaxFileSize), ErrFormat)
		}
	}
	return nil
}

var b32Char = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '2'; c <= '7'; c++ {
		t[c] = true
	}
	return t
}()

// allDigits reports whether s is non-empty and only ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// canonicalB32 reports whether s is lower-case unpadded base32 that decodes
// to whole bytes with zero trailing bits (what b32 encoding produces).
func canonicalB32(s string) bool {
	switch len(s) % 8 {
	case 1, 3, 6:
		return false
	}
	for i := 0; i < len(s); i++ {
		if !b32Char[s[i]] {
			return false
		}
	}
	if len(s) == 0 {
		return true
	}
	unused := (len(s) * 5) % 8
	c := s[len(s)-1]
	v := int(c - 'a')
	if c <= '7' {
		v = int(c-'2') + 26
	}
	return v&(1<<unused-1) == 0
}

// Table is a decoded directory: entries sorted by name, looked up by binary
// search. A sorted slice (rather than a map) keeps decoding a large table
// to one allocation and lets Encode write entries in order without sorting.
// The zero value is an empty table. It is not safe for concurrent mutation.
type Table struct {
	entries []Entry // sorted by Name, names unique
	sealed  bool    // decoded with only a read cap while write caps were present
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{} }

// Len returns the number of entries.
func (t *Table) Len() int { return len(t.entries) }

func (t *Table) find(name string) (int, bool) {
	return slices.BinarySearchFunc(t.entries, name, func(e Entry, n string) int { return strings.Compare(e.Name, n) })
}

// Get returns the entry called name.
func (t *Table) Get(name string) (Entry, bool) {
	if i, ok := t.find(name); ok {
		return t.entries[i], true
	}
	return Entry{}, false
}

// Set adds or replaces the entry e.Name after validating it. Adding a name
// that sorts after every other is O(1); elsewhere it moves the entries
// after it (use TableOf to build a large table from unsorted entries).
func (t *Table) Set(e Entry) error {
	if err := e.check(); err != nil {
		return err
	}
	t.set(e)
	return nil
}

func (t *Table) set(e Entry) {
	if n := len(t.entries); n == 0 || t.entries[n-1].Name < e.Name {
		t.entries = append(t.entries, e)
		return
	}
	i, ok := t.find(e.Name)
	if ok {
		t.entries[i] = e
		return
	}
	t.entries = slices.Insert(t.entries, i, e)
}

// TableOf builds a table from entries in any order, validating each; a
// duplicate name is an error.
func TableOf(entries []Entry) (*Table, error) {
	t := &Table{entries: slices.Clone(entries)}
	slices.SortFunc(t.entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	for i := range t.entries {
		if err := t.entries[i].check(); err != nil {
			return nil, err
		}
		if i > 0 && t.entries[i-1].Name == t.entries[i].Name {
			return nil, fmt.Errorf("table: duplicate name %q: %w", clip(t.entries[i].Name, 40), ErrFormat)
		}
	}
	return t, nil
}

// Delete removes name and reports whether it was there.
func (t *Table) Delete(name string) bool {
	i, ok := t.find(name)
	if ok {
		t.entries = slices.Delete(t.entries, i, i+1)
	}
	return ok
}

// Names returns the names in byte order.
func (t *Table) Names() []string {
	out := make([]string, len(t.entries))
	for i, e := range t.entries {
		out[i] = e.Name
	}
	return out
}

// Entries returns a copy of the entries, sorted by name.
func (t *Table) Entries() []Entry {
	out := make([]Entry, len(t.entries))
	copy(out, t.entries)
	return out
}

// All yields the entries in name order without copying them; the table
// must not change during the loop.
func (t *Table) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, e := range t.entries {
			if !yield(e) {
				return
			}
		}
	}
}

// WriteCapsSealed reports that the table was decoded without the
// directory's write cap while it held child write caps: they stayed sealed
// and Entries carry none. Re-encoding such a table would drop them.
func (t *Table) WriteCapsSealed() bool { return t.sealed }

// dirWriteKeys returns the AEAD key that seals child write caps and the
// key of the PRF that picks its nonce, both from the directory's write key.
func dirWriteKeys(wc MutableWriteCap) (aeadKey, nonceKey []byte) {
	wk := wc.WriteKey()
	aeadKey = make([]byte, chacha20poly1305.KeySize)
	nonceKey = make([]byte, 32)
	blake3.DeriveKey(ctxDirWriteCaps, wk[:], aeadKey)
	blake3.DeriveKey(ctxDirWriteNonce, wk[:], nonceKey)
	return aeadKey, nonceKey
}

// Encode serializes the table. Child write caps are sealed under a key
// derived from the directory's write key wc; with wc nil they are left out
// (a read-only snapshot). Encoding is deterministic: the sealing nonce is a
// keyed hash of the sealed plaintext (SIV construction), so an unchanged
// table encodes to the same bytes and no randomness is needed.
func (t *Table) Encode(wc *MutableWriteCap) ([]byte, error) {
	if len(t.entries) > MaxDirEntries {
		return nil, fmt.Errorf("encode table: want at most %d entries, have %d: %w", MaxDirEntries, len(t.entries), ErrFormat)
	}
	size := dirTableHdrSize + 4
	wsize := 0
	for i := range t.entries {
		e := &t.entries[i]
		size += dirEntryMinSize + len(e.Name) + len(e.ReadCap) + len(e.Target)
		if wc != nil && e.WriteCap != "" {
			wsize += 2 + len(e.WriteCap)
		}
	}
	if wsize > 0 {
		size += dirWriteNonceLen + wsize + chacha20poly1305.Overhead
	}
	if size > MaxMutableSize {
		return nil, fmt.Errorf("encode table: want at most %d bytes, have %d: %w", MaxMutableSize, size, ErrFormat)
	}
	out := make([]byte, 0, size)
	out = append(out, DirTableVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(t.entries)))
	var wplain []byte
	if wsize > 0 {
		wplain = make([]byte, 0, wsize+chacha20poly1305.Overhead)
	}
	for i := range t.entries {
		e := &t.entries[i]
		out = append(out, byte(len(e.Name)))
		out = append(out, e.Name...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(e.ReadCap)))
		out = append(out, e.ReadCap...)
		var flags byte
		if wc != nil && e.WriteCap != "" {
			flags = 1
			wplain = binary.BigEndian.AppendUint16(wplain, uint16(len(e.WriteCap)))
			wplain = append(wplain, e.WriteCap...)
		}
		out = append(out, flags, byte(e.Type))
		out = binary.BigEndian.AppendUint64(out, e.Size)
		out = binary.BigEndian.AppendUint32(out, e.Mode)
		out = binary.BigEndian.AppendUint64(out, uint64(e.MTime))
		out = binary.BigEndian.AppendUint16(out, uint16(len(e.Target)))
		out = append(out, e.Target...)
	}
	if wsize == 0 {
		return binary.BigEndian.AppendUint32(out, 0), nil
	}
	out = binary.BigEndian.AppendUint32(out, uint32(dirWriteNonceLen+wsize+chacha20poly1305.Overhead))
	aeadKey, nonceKey := dirWriteKeys(*wc)
	ad := dirWriteAD(len(t.entries))
	h, _ := blake3.NewKeyed(nonceKey) // key is always 32 bytes
	h.Write(ad)
	h.Write(wplain)
	var sum [32]byte
	h.Sum(sum[:0])
	out = append(out, sum[:dirWriteNonceLen]...)
	aead, err := chacha20poly1305.NewX(aeadKey)
	if err != nil {
		return nil, fmt.Errorf("encode table: %w", err)
	}
	return aead.Seal(out, sum[:dirWriteNonceLen], wplain, ad), nil
}

// dirWriteAD binds the sealed write caps to the table format and its entry
// count.
func dirWriteAD(count int) []byte {
	return binary.BigEndian.AppendUint32([]byte("sphere-dirnode-v1"), uint32(count))
}

// tableReader reads big-endian fields from untrusted bytes, remembering the
// first error. It reads from one string so that names and caps are
// substrings of it: no allocation per entry.
type tableReader struct {
	s   string
	err error
}

func (r *tableReader) take(n int, what string) string {
	if r.err != nil {
		return ""
	}
	if n > len(r.s) {
		r.err = fmt.Errorf("table: %s: want %d bytes, have %d left: %w", what, n, len(r.s), ErrFormat)
		return ""
	}
	out := r.s[:n]
	r.s = r.s[n:]
	return out
}

func (r *tableReader) uint(n int, what string) uint64 {
	b := r.take(n, what)
	var v uint64
	for i := 0; i < len(b); i++ {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func (r *tableReader) u8(what string) int     { return int(r.uint(1, what)) }
func (r *tableReader) u16(what string) int    { return int(r.uint(2, what)) }
func (r *tableReader) u32(what string) uint32 { return uint32(r.uint(4, what)) }
func (r *tableReader) u64(what string) uint64 { return r.uint(8, what) }

// DecodeTable parses a directory table from untrusted bytes. With wc (the
// directory's write cap) the child write caps are unsealed and checked; with
// nil they stay sealed and every Entry.WriteCap is empty. Names must be
// strictly increasing (no duplicates), every field valid and every cap
// parseable. Errors wrap ErrFormat, or ErrIntegrity when the sealed write
// caps fail to open.
func DecodeTable(content []byte, wc *MutableWriteCap) (*Table, error) {
	if len(content) > MaxMutableSize {
		return nil, fmt.Errorf("table: want at most %d bytes, have %d: %w", MaxMutableSize, len(content), ErrFormat)
	}
	r := &tableReader{s: string(content)}
	if v := r.u8("version"); r.err == nil && v != DirTableVersion {
		return nil, fmt.Errorf("table: invalid version, want=%d have=%d: %w", DirTableVersion, v, ErrFormat)
	}
	count := r.u32("entry count")
	if r.err != nil {
		return nil, r.err
	}
	if count > MaxDirEntries || int(count) > len(r.s)/dirEntryMinSize {
		return nil, fmt.Errorf("table: entry count %d does not fit in %d bytes (at most %d entries): %w", count, len(content), MaxDirEntries, ErrFormat)
	}
	sealedIdx := make([]int, 0)
	entries := make([]Entry, count)
	prev := ""
	for i := range entries {
		e := &entries[i]
		e.Name = r.take(r.u8("name length"), "name")
		e.ReadCap = r.take(r.u16("read cap length"), "read cap")
		flags := r.u8("flags")
		e.Type = EntryType(r.u8("type"))
		e.Size = r.u64("size")
		e.Mode = uint32(r.u32("mode"))
		e.MTime = int64(r.u64("mtime"))
		e.Target = r.take(r.u16("target length"), "target")
		if r.err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, r.err)
		}
		if flags&^1 != 0 {
			return nil, fmt.Errorf("table: entry %d: want flags 0 or 1, have %d: %w", i, flags, ErrFormat)
		}
		if i > 0 && e.Name <= prev {
			return nil, fmt.Errorf("table: entry %d %q: want names strictly increasing (no duplicates) after %q: %w", i, clip(e.Name, 40), clip(prev, 40), ErrFormat)
		}
		prev = e.Name
		if flags == 1 {
			sealedIdx = append(sealedIdx, i)
		}
	}
	wlen := r.u32("sealed write caps length")
	wblob := []byte(r.take(int(min(wlen, uint32(len(r.s))+1)), "sealed write caps"))
	if r.err != nil {
		return nil, r.err
	}
	if len(r.s) != 0 {
		return nil, fmt.Errorf("table: want end of table, have %d trailing bytes: %w", len(r.s), ErrFormat)
	}
	if (len(sealedIdx) == 0) != (wlen == 0) {
		return nil, fmt.Errorf("table: %d entries flag a write cap but the sealed block is %d bytes: %w", len(sealedIdx), wlen, ErrFormat)
	}
	if len(wblob) > 0 && len(wblob) < dirWriteNonceLen+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("table: sealed write caps: want at least %d bytes, have %d: %w", dirWriteNonceLen+chacha20poly1305.Overhead, len(wblob), ErrFormat)
	}
	if len(wblob) > 0 && wc != nil {
		aeadKey, _ := dirWriteKeys(*wc)
		aead, err := chacha20poly1305.NewX(aeadKey)
		if err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		plain, err := aead.Open(nil, wblob[:dirWriteNonceLen], wblob[dirWriteNonceLen:], dirWriteAD(int(count)))
		if err != nil {
			return nil, fmt.Errorf("table: sealed write caps do not open under this directory's write cap: %w", errors.Join(ErrIntegrity, err))
		}
		wr := &tableReader{s: string(plain)}
		for _, i := range sealedIdx {
			entries[i].WriteCap = wr.take(wr.u16("write cap length"), "write cap")
		}
		if wr.err != nil {
			return nil, fmt.Errorf("table: sealed write caps: %w", wr.err)
		}
		if len(wr.s) != 0 {
			return nil, fmt.Errorf("table: sealed write caps: %d trailing bytes: %w", len(wr.s), ErrFormat)
		}
	}
	for i := range entries {
		if err := entries[i].check(); err != nil {
			return nil, fmt.Errorf("table: entry %d: %w", i, err)
		}
	}
	return &Table{entries: entries, sealed: wc == nil && len(sealedIdx) > 0}, nil
}

// Change is one entry-level edit of a directory, made against what the
// editor last saw, so that edits to different names by uncoordinated
// writers merge and edits to the same name are caught.
type Change struct {
	Name string
	// New is the entry to store under Name (its Name is set to Name); nil
	// deletes Name.
	New *Entry
	// Prev is the Ident of the entry the editor expects under Name now
	// (its read cap, or "symlink:"+target); "" means Name must be absent.
	// Ignored when Force is set.
	Prev  string
	Force bool
}

// ConflictError says which name changed under a Change. It wraps
// ErrConflict.
type ConflictError struct {
	Name      string
	Want, Got string // expected and found read caps ("" = absent)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("entry %q changed concurrently: want %s, found %s", e.Name, capOrAbsent(e.Want), capOrAbsent(e.Got))
}

func capOrAbsent(c string) string {
	if c == "" {
		return "absent"
	}
	if strings.HasPrefix(c, "symlink:") {
		return "a symlink"
	}
	if k, err := capKind(c); err == nil {
		return "a " + k + " cap" // never print the cap itself
	}
	return "an entry"
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Apply makes all of changes or none. A change conflicts when Name holds
// something other than Prev, unless the table already holds the outcome the
// change wants (the same read cap under Name, or Name absent for a delete):
// re-applying a change that already landed is not a conflict, which is what
// lets a writer retry after a concurrent publish. Conflicts return a
// *ConflictError; invalid entries an ErrFormat error.
func (t *Table) Apply(changes []Change) error {
	changes = slices.Clone(changes) // New is replaced by a checked copy below
	// Check every change against the state the earlier ones leave.
	overlay := make(map[string]*Entry, len(changes))
	cur := func(name string) (string, bool) {
		if e, ok := overlay[name]; ok {
			if e == nil {
				return "", false
			}
			return e.Ident(), true
		}
		e, ok := t.Get(name)
		return e.Ident(), ok
	}
	for i := range changes {
		ch := &changes[i]
		if err := ValidName(ch.Name); err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		if ch.New != nil {
			e := *ch.New
			e.Name = ch.Name
			if err := e.check(); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			ch.New = &e
		}
		got, present := cur(ch.Name)
		switch {
		case ch.Force:
		case ch.New == nil && !present: // already deleted
		case ch.New != nil && present && got == ch.New.Ident(): // already set
		case ch.Prev == "" && !present:
		case ch.Prev != "" && present && got == ch.Prev:
		default:
			return &ConflictError{Name: ch.Name, Want: ch.Prev, Got: got}
		}
		overlay[ch.Name] = ch.New
	}
	for _, ch := range changes {
		if ch.New == nil {
			t.Delete(ch.Name)
		} else {
			t.set(*ch.New)
		}
	}
	return nil
}
