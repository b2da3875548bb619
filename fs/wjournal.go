package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs/journal"
)

// The write-back journal (Options.JournalDir): close(2) and fsync(2) store
// a file's content and every directory edit in the journal instead of
// waiting for the grid; a background batch (backgroundFlush) uploads the
// files in parallel, writes each changed directory once, and then drops
// the journal generations it covered. On start, New replays whatever a
// crashed process left (replayJournal).

// maxJournalBytes bounds the file contents waiting in memory and in the
// journal; beyond it close uploads synchronously, as without a journal.
const maxJournalBytes = 512 << 20

// uploadParallel is how many files a batch uploads at once.
const uploadParallel = 8

func toJEntry(e *Entry) *journal.Entry {
	if e == nil {
		return nil
	}
	je := &journal.Entry{Type: uint8(e.Type), Size: e.Size, Mode: e.Mode, Target: e.Target}
	if !e.Mtime.IsZero() {
		je.Mtime = e.Mtime.UnixNano()
	}
	if e.Cap != nil {
		je.Cap = e.Cap.String()
	}
	return je
}

// CapParser is optionally implemented by a Grid whose caps caps.Parse
// does not know (test fakes); journal replays parse cap strings with it.
type CapParser interface {
	ParseCap(s string) (caps.Cap, error)
}

func (f *FS) parseCap(s string) (caps.Cap, error) {
	if p, ok := f.g.(CapParser); ok {
		return p.ParseCap(s)
	}
	return caps.Parse(s)
}

func (f *FS) fromJEntry(je *journal.Entry) (*Entry, error) {
	if je == nil {
		return nil, nil
	}
	e := &Entry{Type: Type(je.Type), Size: je.Size, Mode: je.Mode, Target: je.Target}
	if je.Mtime != 0 {
		e.Mtime = time.Unix(0, je.Mtime)
	}
	if je.Cap != "" {
		c, err := f.parseCap(je.Cap)
		if err != nil {
			return nil, fmt.Errorf("journal entry cap: %w", err)
		}
		e.Cap = c
	}
	return e, nil
}

// logLocked records an edit of name in d (e nil: removal; prev: the entry
// before) in the journal. A file whose content is a journal blob not yet
// uploaded is recorded with that blob, so a replay never goes back to the
// older cap. Caller holds f.mu.
func (f *FS) logLocked(d *dir, name string, e, prev *Entry) {
	if f.jr == nil {
		return
	}
	r := journal.Record{Dir: d.cap.String(), Name: name, New: toJEntry(e), Prev: toJEntry(prev)}
	if n := d.files[name]; n != nil && n.blob != "" && e != nil && e.Type == TypeFile {
		r.Blob = n.blob
	}
	if err := f.jr.Append(r); err != nil {
		// The edit is in memory and will reach the grid; only its crash
		// safety is lost. Say so loudly.
		f.log.Error("Write-back journal append failed; this change is not crash-safe until uploaded", "err", err)
	}
}

// journalNode stores n's content as a journal blob and records it in its
// directory, instead of uploading. Caller holds n.mu exclusively; n is
// dirty and linked. It returns false when the journal is full (the caller
// uploads instead).
func (f *FS) journalNode(n *fileNode, size int64) (bool, error) {
	f.mu.Lock()
	full := f.jBytes+size > maxJournalBytes
	f.mu.Unlock()
	if full {
		return false, nil
	}
	id, err := f.jr.PutBlob(n.cache, size)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n.blob != "" {
		f.jDone = append(f.jDone, n.blob)
		f.jBytes -= n.blobSize
	}
	n.blob, n.blobSize, n.jclean = id, size, true
	f.jBytes += size
	if n.parent != nil {
		d := n.parent
		var prev *Entry
		if old, ok := d.entries[n.name]; ok {
			prev = &old
		}
		f.logLocked(d, n.name, &Entry{Type: TypeFile, Size: size, Mode: n.mode, Mtime: n.mtime}, prev)
	}
	f.armLocked(f.opts.FlushDelay)
	return true, nil
}

// uploadedLocked notes that n's content is on the grid: its blob may go
// once the journal generation recording it is dropped. Caller holds f.mu.
func (f *FS) uploadedLocked(n *fileNode) {
	if n.blob != "" {
		f.jDone = append(f.jDone, n.blob)
		f.jBytes -= n.blobSize
		n.blob, n.blobSize = "", 0
	}
	n.jclean = false
}

// uploadBatch is the background upload: every closed or journalled file
// is uploaded (uploadParallel at a time), then each changed directory is
// written once; when all of that succeeded, the journal generations it
// covered are dropped. With all, files still open with unsaved writes are
// uploaded too (Sync).
func (f *FS) uploadBatch(ctx context.Context, all bool) error {
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	f.mu.Lock()
	var nodes []*fileNode
	for n := range f.openNodes {
		if all || n.refs == 0 || n.blob != "" {
			nodes = append(nodes, n)
		}
	}
	f.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallel)
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		g.Go(func() error {
			errs[i] = f.saveNode(gctx, n, true)
			f.forget(n) // drops it if closed and saved
			return nil
		})
	}
	g.Wait()
	// Everything the journal holds so far is now either in a directory's
	// pending edits (written by flushDirs below) or a blob of a file closed
	// meanwhile, recorded again in the new generation: so once flushDirs
	// succeeded, the generations up to gen can go.
	var gen uint64
	if f.jr != nil {
		f.mu.Lock()
		var err error
		gen, err = f.jr.Rotate()
		if err == nil {
			for n := range f.openNodes {
				if n.blob != "" && n.parent != nil {
					d := n.parent
					var prev *Entry
					if old, ok := d.entries[n.name]; ok {
						prev = &old
					}
					f.logLocked(d, n.name, &Entry{Type: TypeFile, Size: n.blobSize, Mode: n.mode, Mtime: n.mtime}, prev)
				}
			}
		}
		f.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := f.flushDirs(ctx); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil || f.jr == nil {
		return err
	}
	f.mu.Lock()
	done := f.jDone
	f.jDone = nil
	f.mu.Unlock()
	return f.jr.Drop(gen, done)
}

// ReplayJournal uploads what a stopped or crashed tree left in the
// journal in dir, without opening a tree (`sphere sync` when no mount is
// running). It fails with journal.ErrInUse while a tree holds the journal.
func ReplayJournal(ctx context.Context, g Grid, dir string, opts Options) error {
	jr, err := journal.Open(dir)
	if err != nil {
		return err
	}
	defer jr.Close()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &FS{g: g, opts: opts, log: opts.Logger.With("component", "fs"), jr: jr}
	return f.replayJournal(ctx)
}

// replayJournal brings what a crashed process left in the journal to the
// grid: blobs are uploaded, then each directory gets one Modify with, per
// name, the last recorded entry against the first recorded previous one
// (so a conflict with another writer is detected as it would have been).
func (f *FS) replayJournal(ctx context.Context) error {
	recs, gen, err := f.jr.Records()
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return f.jr.Drop(gen, nil)
	}
	type key struct{ dir, name string }
	type change struct {
		prev *Entry
		new  *Entry
		blob string
	}
	byKey := map[key]*change{}
	dirs := map[string][]key{}
	var blobs []string
	for _, r := range recs {
		k := key{r.Dir, r.Name}
		nw, err := f.fromJEntry(r.New)
		if err != nil {
			return err
		}
		c := byKey[k]
		if c == nil {
			prev, err := f.fromJEntry(r.Prev)
			if err != nil {
				return err
			}
			c = &change{prev: prev}
			byKey[k] = c
			dirs[r.Dir] = append(dirs[r.Dir], k)
		}
		c.new, c.blob = nw, r.Blob
	}
	for _, c := range byKey {
		if c.blob == "" {
			continue
		}
		bf, err := os.Open(f.jr.BlobPath(c.blob))
		if err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
		fi, err := bf.Stat()
		if err != nil {
			bf.Close()
			return fmt.Errorf("replay journal: %w", err)
		}
		cp, err := f.g.Upload(ctx, bf, fi.Size())
		bf.Close()
		if err != nil {
			return fmt.Errorf("replay journal: upload: %w", err)
		}
		c.new.Cap, c.new.Size = cp, fi.Size()
		blobs = append(blobs, c.blob)
	}
	dirNames := make([]string, 0, len(dirs))
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames)
	for _, ds := range dirNames {
		dc, err := f.parseCap(ds)
		if err != nil {
			return fmt.Errorf("replay journal: directory cap: %w", err)
		}
		var changes []Change
		for _, k := range dirs[ds] {
			c := byKey[k]
			changes = append(changes, Change{Name: k.name, New: c.new, Prev: c.prev})
		}
		sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
		if _, err := f.modifyResolving(ctx, dc, ds, changes); err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
	}
	f.log.Info("Write-back journal replayed", "records", len(recs), "files", len(blobs), "dirs", len(dirs))
	return f.jr.Drop(gen, blobs)
}
