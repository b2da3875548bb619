// Package site stores a git repository in the grid as a published site
// and reads it back: objects in immutable bundle files (so a fork shares
// them), refs in one mutable file whose read cap is the site's address.
// The byte formats are in docs/spec/site.md.
package site

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sphere-grid/sphere/caps"
)

// ErrFormat marks refs, index or object bytes that do not follow the spec.
var ErrFormat = errors.New("bad site format")

// Limits on what a reader accepts from the grid (each file is written by
// the site's owner, whom a reader does not trust).
const (
	MaxRefsSize  = 4 << 20  // bytes of a refs file
	MaxRefs      = 10000    // ref lines
	MaxPacks     = 10000    // pack lines
	MaxIndexObjs = 1 << 21  // entries in one index (a 77 MB index file)
	MaxSiteObjs  = 1 << 22  // objects of one site over all its packs
	MaxTreeSize  = 32 << 20 // bytes of one tree or commit object
	MaxRefName   = 1024
)

// RefsMagic is the first line of a version 1 refs file.
const RefsMagic = "sphere-site 1"

// ID is a git object id (SHA-1).
type ID [20]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses 40 lowercase hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 40 || strings.ToLower(s) != s {
		return id, fmt.Errorf("object id %q: want 40 lowercase hex digits: %w", clip(s), ErrFormat)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("object id %q: %w", clip(s), ErrFormat)
	}
	return id, nil
}

func clip(s string) string {
	if len(s) > 48 {
		return s[:48] + "..."
	}
	return s
}

// Pack names one bundle of objects and its index.
type Pack struct {
	Bundle caps.Cap
	Index  caps.Cap
}

// Refs is the content of a site's refs file.
type Refs struct {
	Head  string        // the default branch, e.g. "refs/heads/main" ("" : none yet)
	Refs  map[string]ID // ref name -> commit
	Packs []Pack        // oldest first
}

// HeadID returns the commit the default branch points at.
func (r *Refs) HeadID() (ID, bool) {
	if r.Head == "" {
		return ID{}, false
	}
	id, ok := r.Refs[r.Head]
	return id, ok
}

// validRefName accepts what git's check-ref-format would, roughly: a
// "refs/" path of printable non-space bytes without "..", or HEAD.
func validRefName(s string) error {
	if len(s) == 0 || len(s) > MaxRefName || !strings.HasPrefix(s, "refs/") {
		return fmt.Errorf("ref name %q: want refs/...: %w", clip(s), ErrFormat)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' || c == '[' || c == '\\' {
			return fmt.Errorf("ref name %q: byte %q not allowed: %w", clip(s), c, ErrFormat)
		}
	}
	if strings.Contains(s, "..") || strings.Contains(s, "//") || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".lock") {
		return fmt.Errorf("ref name %q: %w", clip(s), ErrFormat)
	}
	return nil
}

// Encode renders r as a refs file (deterministic: refs sorted by name).
func (r *Refs) Encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(RefsMagic + "\n")
	if r.Head != "" {
		if err := validRefName(r.Head); err != nil {
			return nil, err
		}
		b.WriteString("head " + r.Head + "\n")
	}
	names := make([]string, 0, len(r.Refs))
	for n := range r.Refs {
		if err := validRefName(n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "ref %s %s\n", r.Refs[n], n)
	}
	for _, p := range r.Packs {
		fmt.Fprintf(&b, "pack %s %s\n", p.Bundle.String(), p.Index.String())
	}
	if b.Len() > MaxRefsSize {
		return nil, fmt.Errorf("refs file of %d bytes: over %d: %w", b.Len(), MaxRefsSize, ErrFormat)
	}
	return b.Bytes(), nil
}

// ParseRefs parses a refs file.
func ParseRefs(b []byte) (*Refs, error) {
	if len(b) > MaxRefsSize {
		return nil, fmt.Errorf("refs file of %d bytes: over %d: %w", len(b), MaxRefsSize, ErrFormat)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		return nil, fmt.Errorf("refs file: does not end in a newline: %w", ErrFormat)
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != RefsMagic {
		return nil, fmt.Errorf("refs file: first line %q, want %q: %w", clip(lines[0]), RefsMagic, ErrFormat)
	}
	r := &Refs{Refs: map[string]ID{}}
	for i, ln := range lines[1:] {
		kw, rest, _ := strings.Cut(ln, " ")
		switch kw {
		case "head":
			if r.Head != "" {
				return nil, fmt.Errorf("refs line %d: a second head: %w", i+2, ErrFormat)
			}
			if err := validRefName(rest); err != nil {
				return nil, fmt.Errorf("refs line %d: %w", i+2, err)
			}
			r.Head = rest
		case "ref":
			hexID, name, ok := strings.Cut(rest, " ")
			if !ok {
				return nil, fmt.Errorf("refs line %d: want \"ref ID NAME\": %w", i+2, ErrFormat)
			}
			id, err := ParseID(hexID)
			if err != nil {
				return nil, fmt.Errorf("refs line %d: %w", i+2, err)
			}
			if err := validRefName(name); err != nil {
				return nil, fmt.Errorf("refs line %d: %w", i+2, err)
			}
			if _, dup := r.Refs[name]; dup {
				return nil, fmt.Errorf("refs line %d: ref %q twice: %w", i+2, name, ErrFormat)
			}
			if len(r.Refs) >= MaxRefs {
				return nil, fmt.Errorf("refs line %d: over %d refs: %w", i+2, MaxRefs, ErrFormat)
			}
			r.Refs[name] = id
		case "pack":
			bs, is, ok := strings.Cut(rest, " ")
			if !ok {
				return nil, fmt.Errorf("refs line %d: want \"pack BUNDLE INDEX\": %w", i+2, ErrFormat)
			}
			bc, err := parseFileCap(bs)
			if err != nil {
				return nil, fmt.Errorf("refs line %d: bundle: %w", i+2, err)
			}
			ic, err := parseFileCap(is)
			if err != nil {
				return nil, fmt.Errorf("refs line %d: index: %w", i+2, err)
			}
			if len(r.Packs) >= MaxPacks {
				return nil, fmt.Errorf("refs line %d: over %d packs: %w", i+2, MaxPacks, ErrFormat)
			}
			r.Packs = append(r.Packs, Pack{Bundle: bc, Index: ic})
		default:
			return nil, fmt.Errorf("refs line %d: unknown keyword %q: %w", i+2, clip(kw), ErrFormat)
		}
	}
	return r, nil
}

// parseFileCap accepts an immutable file cap (chk or lit).
func parseFileCap(s string) (caps.Cap, error) {
	c, err := caps.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if k := c.Kind(); k != "chk" && k != "lit" {
		return nil, fmt.Errorf("a %s cap, want an immutable file cap: %w", k, ErrFormat)
	}
	return c, nil
}

// Object types, as in git's pack format.
const (
	TypeCommit byte = 1
	TypeTree   byte = 2
	TypeBlob   byte = 3
	TypeTag    byte = 4
)

// TypeName returns git's name of an object type ("" if unknown).
func TypeName(t byte) string {
	switch t {
	case TypeCommit:
		return "commit"
	case TypeTree:
		return "tree"
	case TypeBlob:
		return "blob"
	case TypeTag:
		return "tag"
	}
	return ""
}

// TypeOf is the inverse of TypeName (0 if unknown).
func TypeOf(name string) byte {
	switch name {
	case "commit":
		return TypeCommit
	case "tree":
		return TypeTree
	case "blob":
		return TypeBlob
	case "tag":
		return TypeTag
	}
	return 0
}

// Index and bundle magics (8 bytes each).
const (
	IndexMagic  = "SPHIDX1\n"
	BundleMagic = "SPHBDL1\n"
	indexEntry  = 20 + 1 + 8 + 8
)

// Loc is where an object's content sits in a bundle.
type Loc struct {
	Type   byte
	Offset uint64 // from the start of the bundle file
	Size   uint64
}

// IndexEntry is one object of an index.
type IndexEntry struct {
	ID ID
	Loc
}

// EncodeIndex renders entries (sorted here) as an index file.
func EncodeIndex(entries []IndexEntry) []byte {
	sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i].ID[:], entries[j].ID[:]) < 0 })
	b := make([]byte, 0, 12+len(entries)*indexEntry)
	b = append(b, IndexMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = append(b, e.Type)
		b = binary.BigEndian.AppendUint64(b, e.Offset)
		b = binary.BigEndian.AppendUint64(b, e.Size)
	}
	return b
}

// ParseIndex parses an index file; bundleSize bounds every object's range.
func ParseIndex(b []byte, bundleSize uint64) ([]IndexEntry, error) {
	if len(b) < 12 || string(b[:8]) != IndexMagic {
		return nil, fmt.Errorf("index: bad magic: %w", ErrFormat)
	}
	n := binary.BigEndian.Uint32(b[8:12])
	if uint64(n) > MaxIndexObjs || uint64(len(b)-12) != uint64(n)*indexEntry {
		return nil, fmt.Errorf("index: %d entries in %d bytes: %w", n, len(b), ErrFormat)
	}
	out := make([]IndexEntry, n)
	for i := range out {
		p := b[12+i*indexEntry:]
		e := &out[i]
		copy(e.ID[:], p[:20])
		e.Type = p[20]
		e.Offset = binary.BigEndian.Uint64(p[21:29])
		e.Size = binary.BigEndian.Uint64(p[29:37])
		if TypeName(e.Type) == "" {
			return nil, fmt.Errorf("index entry %d: type %d: %w", i, e.Type, ErrFormat)
		}
		if e.Offset < uint64(len(BundleMagic)) || e.Offset > bundleSize || e.Size > bundleSize-e.Offset {
			return nil, fmt.Errorf("index entry %d: range %d+%d outside a bundle of %d bytes: %w", i, e.Offset, e.Size, bundleSize, ErrFormat)
		}
		if i > 0 && bytes.Compare(out[i-1].ID[:], e.ID[:]) >= 0 {
			return nil, fmt.Errorf("index entry %d: not in ascending order: %w", i, ErrFormat)
		}
	}
	return out, nil
}

// TreeEntry is one row of a git tree object.
type TreeEntry struct {
	Mode string // "100644", "100755", "40000", "120000", "160000"
	Name string
	ID   ID
}

// IsDir reports whether the entry is a subtree.
func (e TreeEntry) IsDir() bool { return e.Mode == "40000" || e.Mode == "040000" }

// ParseTree parses a git tree object's content.
func ParseTree(b []byte) ([]TreeEntry, error) {
	var out []TreeEntry
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 || sp > 7 {
			return nil, fmt.Errorf("tree entry %d: bad mode: %w", len(out), ErrFormat)
		}
		mode := string(b[:sp])
		for _, c := range mode {
			if c < '0' || c > '7' {
				return nil, fmt.Errorf("tree entry %d: mode %q: %w", len(out), mode, ErrFormat)
			}
		}
		b = b[sp+1:]
		nul := bytes.IndexByte(b, 0)
		if nul <= 0 || len(b) < nul+21 {
			return nil, fmt.Errorf("tree entry %d: bad name: %w", len(out), ErrFormat)
		}
		name := string(b[:nul])
		if name == "." || name == ".." || strings.ContainsRune(name, '/') {
			return nil, fmt.Errorf("tree entry %d: name %q: %w", len(out), clip(name), ErrFormat)
		}
		e := TreeEntry{Mode: mode, Name: name}
		copy(e.ID[:], b[nul+1:nul+21])
		out = append(out, e)
		b = b[nul+21:]
	}
	return out, nil
}

// EncodeTree renders entries as git does (entries must be in git order).
func EncodeTree(entries []TreeEntry) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e.Mode...)
		b = append(b, ' ')
		b = append(b, e.Name...)
		b = append(b, 0)
		b = append(b, e.ID[:]...)
	}
	return b
}

// CommitTree returns the tree a commit object names (its first line).
func CommitTree(b []byte) (ID, error) {
	line, _, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("tree ")) {
		return ID{}, fmt.Errorf("commit: first line is not \"tree ID\": %w", ErrFormat)
	}
	return ParseID(string(line[5:]))
}
