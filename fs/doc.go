// Package fs is the tree a person sees: directories and files over the grid,
// with a local write-back cache, usable without a mount (the CLI and the web
// gateway use it directly) and shown as a folder by fs/fusefs.
//
// Model. Files are immutable CHK or literal objects: an open-for-write file
// lives in a temporary file in the cache directory, and on Flush (every
// close(2)) or Fsync it is uploaded and its new cap recorded in its
// directory. Directories are mutable objects holding a table of entries
// (name -> child cap + metadata). Directory changes are kept in memory as
// entry-level edits and written with one Modify per directory: on Fsync of
// any file (every dirty directory, so the chain up to the root is durable),
// after a short debounce (Options.FlushDelay), and on Close. Because the
// edits are entry-level, a concurrent writer's unrelated changes are merged
// rather than overwritten.
//
// Paths are slash-separated and relative to the root; "" and "/" name the
// root. Errors are *io/fs.PathError values wrapping io/fs sentinels
// (ErrNotExist, ErrExist, ...) or this package's ErrReadOnly, ErrNotEmpty,
// ErrNotDir, ErrIsDir; ToErrno turns them into errno values at the FUSE edge.
//
// A tree opened from a read-only directory cap refuses every change with
// ErrReadOnly and re-reads a directory from the grid when its copy is older
// than Options.DirTTL, so it sees the owner's fsynced changes.
package fs
