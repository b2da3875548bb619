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
//
// With Options.JournalDir (as `sphere mount` runs), Flush and Fsync store
// the file and every directory edit in a local write-back journal
// (fs/journal; docs/spec/journal.md) and return: close survives the process
// being killed, fsync a crash of the machine. Upload batches run once
// writing pauses: every journalled file is uploaded (8 at a time), each
// changed directory is written once, and the journal generations covered
// are dropped. New replays what a crashed process left. A change to a big
// file is journalled as a delta of the written ranges, and a big file
// opened for writing keeps only those ranges locally (the rest is read
// from the grid on demand).
//
// Decisions and known limits:
//   - Without a journal, close waits for the upload (so it can report a
//     failure); after a failure the data is kept and the save retried in
//     the background, by Sync and by Close of the tree. With a journal,
//     an upload failure is retried by the next batch and close reports
//     only local failures.
//   - The upload of a changed file re-encodes it whole (no segment-level
//     mutable files yet), and a directory write rewrites its whole table.
//   - The write-back copy of an open file stays in memory up to 1 MiB, then
//     moves to an unlinked file in CacheDir; nothing is left after a crash.
//     What was not fsynced before a crash is lost, as on a local disk.
//   - A rename across directories is two directory writes (the new name
//     first): a crash between them leaves the node under both names.
//   - When another writer changed the same name first, our entry is kept
//     beside it as "<name>.conflict-<unix nanoseconds>" and a warning is
//     logged; a delete of ours yields to their entry.
//   - No hard links, no arbitrary extended attributes, no locks; the root
//     directory's own mode and mtime are not stored (it has no parent entry).
package fs
