// Package fstest holds what tests of fs users share: an in-memory Grid
// with fault knobs, so the tree can be tested without a grid.
package fstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
)

// Cap is a fake cap: kind is "fake-file", "fake-dir-rw" or "fake-dir-ro".
type Cap struct{ kind, id string }

// Kind returns the cap kind.
func (c Cap) Kind() string { return c.kind }

// String returns "fake:<kind>:<id>".
func (c Cap) String() string { return "fake:" + c.kind + ":" + c.id }

// ParseCap parses the String form of a fake cap.
func ParseCap(s string) (Cap, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] != "fake" {
		return Cap{}, fmt.Errorf("fake cap: want fake:<kind>:<id>, have %q", s)
	}
	switch parts[1] {
	case "fake-file", "fake-dir-rw", "fake-dir-ro":
		return Cap{parts[1], parts[2]}, nil
	}
	return Cap{}, fmt.Errorf("fake cap: unknown kind %q", parts[1])
}

// ParseCap parses a fake cap string (fs.CapParser, for journal replays).
func (g *Grid) ParseCap(s string) (caps.Cap, error) { return ParseCap(s) }

// ErrInjected is returned by operations failed on purpose.
var ErrInjected = errors.New("fstest: injected failure")

// Grid is an in-memory fs.Grid. Its zero value is not usable; call New.
type Grid struct {
	mu    sync.Mutex
	files map[string][]byte
	dirs  map[string]map[string]fs.Entry // by dir id, children stored with write caps
	next  int

	// FailUploads makes every Upload fail with ErrInjected while set.
	FailUploads atomic.Bool
	// FailModify makes every ModifyDir fail with ErrInjected while set.
	FailModify atomic.Bool

	Uploads, Modifies, Reads, Opens atomic.Int64
}

var _ fs.Grid = (*Grid)(nil)

// New returns an empty fake grid.
func New() *Grid {
	return &Grid{files: map[string][]byte{}, dirs: map[string]map[string]fs.Entry{}}
}

// Upload stores the bytes under their hash (convergent, like CHK).
func (g *Grid) Upload(ctx context.Context, r io.ReaderAt, size int64) (caps.Cap, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if g.FailUploads.Load() {
		return nil, ErrInjected
	}
	b := make([]byte, size)
	if size > 0 {
		if _, err := r.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF)) {
			return nil, fmt.Errorf("fake upload: %w", err)
		}
	}
	g.Uploads.Add(1)
	h := sha256.Sum256(b)
	id := hex.EncodeToString(h[:16])
	g.mu.Lock()
	g.files[id] = b
	g.mu.Unlock()
	return Cap{"fake-file", id}, nil
}

type file struct{ b []byte }

func (f file) Size() int64 { return int64(len(f.b)) }
func (f file) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// OpenFile opens a stored file.
func (g *Grid) OpenFile(ctx context.Context, c caps.Cap) (fs.File, error) {
	fc, ok := c.(Cap)
	if !ok || fc.kind != "fake-file" {
		return nil, fmt.Errorf("fake open: not a file cap: %v", c)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.files[fc.id]
	if !ok {
		return nil, fmt.Errorf("fake open %s: %w", fc.id, fs.ErrNotExist)
	}
	g.Opens.Add(1)
	return file{b}, nil
}

// CreateDir makes a new directory.
func (g *Grid) CreateDir(ctx context.Context, entries map[string]fs.Entry) (caps.Cap, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	id := fmt.Sprintf("d%d", g.next)
	g.dirs[id] = maps.Clone(entries)
	if g.dirs[id] == nil {
		g.dirs[id] = map[string]fs.Entry{}
	}
	return Cap{"fake-dir-rw", id}, nil
}

func (g *Grid) dirID(c caps.Cap) (string, bool, error) {
	fc, ok := c.(Cap)
	if !ok || (fc.kind != "fake-dir-rw" && fc.kind != "fake-dir-ro") {
		return "", false, fmt.Errorf("fake: not a dir cap: %v", c)
	}
	return fc.id, fc.kind == "fake-dir-rw", nil
}

// ReadDir returns a copy of the table; through a read cap, child dirs
// come back as read caps (transitive read-only).
func (g *Grid) ReadDir(ctx context.Context, c caps.Cap) (map[string]fs.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, rw, err := g.dirID(c)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.dirs[id]
	if !ok {
		return nil, fmt.Errorf("fake dir %s: %w", id, fs.ErrNotExist)
	}
	g.Reads.Add(1)
	out := maps.Clone(t)
	if !rw {
		for k, e := range out {
			if ec, ok := e.Cap.(Cap); ok && ec.kind == "fake-dir-rw" {
				e.Cap = Cap{"fake-dir-ro", ec.id}
				out[k] = e
			}
		}
	}
	return out, nil
}

// ModifyDir applies changes atomically, with the conflict rule of
// fs.Grid.ModifyDir.
func (g *Grid) ModifyDir(ctx context.Context, c caps.Cap, changes []fs.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.FailModify.Load() {
		return ErrInjected
	}
	id, rw, err := g.dirID(c)
	if err != nil {
		return err
	}
	if !rw {
		return fmt.Errorf("fake modify: %w", fs.ErrReadOnly)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.dirs[id]
	if !ok {
		return fmt.Errorf("fake dir %s: %w", id, fs.ErrNotExist)
	}
	t = maps.Clone(t)
	for _, ch := range changes {
		var cur *fs.Entry
		if e, ok := t[ch.Name]; ok {
			cur = &e
		}
		got, prev, want := cur.Ident(g.ReadOnly), ch.Prev.Ident(g.ReadOnly), ch.New.Ident(g.ReadOnly)
		if got != prev && got != want {
			return &fs.ConflictError{Name: ch.Name}
		}
		if ch.New == nil {
			delete(t, ch.Name)
		} else {
			t[ch.Name] = *ch.New
		}
	}
	g.dirs[id] = t
	g.Modifies.Add(1)
	return nil
}

// Set changes one entry directly, as another writer would.
func (g *Grid) Set(c caps.Cap, name string, e *fs.Entry) error {
	id, _, err := g.dirID(c)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t := maps.Clone(g.dirs[id])
	if e == nil {
		delete(t, name)
	} else {
		t[name] = *e
	}
	g.dirs[id] = t
	return nil
}

// IsDir reports whether c is a dir cap.
func (g *Grid) IsDir(c caps.Cap) bool { _, _, err := g.dirID(c); return err == nil }

// Writable reports whether c is a dir write cap or a file.
func (g *Grid) Writable(c caps.Cap) bool {
	fc, ok := c.(Cap)
	return ok && fc.kind == "fake-dir-rw"
}

// ReadOnly returns the read cap of c.
func (g *Grid) ReadOnly(c caps.Cap) (caps.Cap, error) {
	fc, ok := c.(Cap)
	if !ok {
		return nil, fmt.Errorf("fake: foreign cap %v", c)
	}
	if fc.kind == "fake-dir-rw" {
		return Cap{"fake-dir-ro", fc.id}, nil
	}
	return fc, nil
}

// IsFake marks the fake grid, for tests that size their work by grid.
func (g *Grid) IsFake() {}
