package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// Type is what a directory entry names: the directory table's own type,
// so the tree and the format cannot drift apart.
type Type = caps.EntryType

// Entry types.
const (
	TypeFile    = caps.TypeFile
	TypeDir     = caps.TypeDir
	TypeSymlink = caps.TypeSymlink
)

// Entry is one row of a directory table as fs sees it.
type Entry struct {
	Type Type
	// Cap is the child's cap: for a directory, its write cap when the
	// parent is held writable (the grid unseals it), else its read cap;
	// for a file, its CHK or literal cap. Nil for a symlink.
	Cap    caps.Cap
	Size   int64     // file size in bytes
	Mode   uint32    // permission bits (0o777 mask)
	Mtime  time.Time // modification time
	Target string    // symlink target
}

// File is an immutable file opened on the grid: random access by segment.
type File interface {
	io.ReaderAt
	Size() int64
}

// Grid is what the tree needs from the grid: immutable files, and
// directories as tables of entries. grid.Client satisfies it through
// FromClient; fs/fstest has an in-memory fake. Every method may be called
// concurrently.
type Grid interface {
	// Upload stores size bytes read from r as an immutable file and returns
	// its cap (a literal cap for tiny files).
	Upload(ctx context.Context, r io.ReaderAt, size int64) (caps.Cap, error)
	// OpenFile opens an immutable file for random access.
	OpenFile(ctx context.Context, c caps.Cap) (File, error)
	// CreateDir creates a new directory holding entries and returns its
	// write cap.
	CreateDir(ctx context.Context, entries map[string]Entry) (caps.Cap, error)
	// ReadDir retrieves the current table of the directory c names.
	ReadDir(ctx context.Context, c caps.Cap) (map[string]Entry, error)
	// ModifyDir applies changes, all or none, to the directory's current
	// table and publishes the result. Changes to names nobody else touched
	// merge with other writers' changes; a change whose Prev is no longer
	// what the table holds fails with a *ConflictError (never a silent
	// loss), unless the table already holds the change's outcome.
	ModifyDir(ctx context.Context, c caps.Cap, changes []Change) error
	// IsDir reports whether c names a directory.
	IsDir(c caps.Cap) bool
	// Writable reports whether c allows changing what it names.
	Writable(c caps.Cap) bool
	// ReadOnly derives the read cap of c (c itself when already read-only).
	ReadOnly(c caps.Cap) (caps.Cap, error)
}

// Change is one entry-level edit of a directory.
type Change struct {
	Name string
	New  *Entry // the entry to store; nil deletes Name
	Prev *Entry // what the editor last saw under Name; nil: absent
}

// Ident is what a conflict check compares: the read cap of the entry's cap
// (via ro, e.g. Grid.ReadOnly), or "symlink:"+Target; "" for nil.
func (e *Entry) Ident(ro func(caps.Cap) (caps.Cap, error)) string {
	switch {
	case e == nil:
		return ""
	case e.Type == TypeSymlink:
		return "symlink:" + e.Target
	case e.Cap == nil:
		return ""
	}
	if rc, err := ro(e.Cap); err == nil {
		return rc.String()
	}
	return e.Cap.String()
}

// ErrConflict: another writer changed the same entry first.
var ErrConflict = errors.New("conflicting change")

// ConflictError names the entry that changed under a Change; it wraps
// ErrConflict.
type ConflictError struct{ Name string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("entry %q changed concurrently", e.Name)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// StatFSer is optionally implemented by a Grid that knows its capacity.
type StatFSer interface {
	StatFS(ctx context.Context) (total, free uint64, err error)
}
