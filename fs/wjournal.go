package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// batchBytes starts a batch without waiting for writes to pause.
const batchBytes = 64 << 20

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

// chainLink is one journal blob of a file's content: a whole copy (base
// "") or a delta over the previous link.
type chainLink struct {
	id, base string
	baseCap  string // first link over a saved file instead of a blob
	ext      [][2]int64
	size     int64 // file size after this link
}

// logLocked records an edit of name in d (e nil: removal; prev: the entry
// before) in the journal. A file whose content is a journal blob not yet
// uploaded is recorded with that blob, so a replay never goes back to the
// older cap. Caller holds f.mu.
func (f *FS) logLocked(d *dir, name string, e, prev *Entry) {
	if f.jr == nil {
		return
	}
	f.noteJournalLocked()
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

// journalNode stores n's content in the journal and records it in its
// directory, instead of uploading: as a delta over the blob already
// journalled when only a few ranges changed since (a 4 KiB write in a big
// file costs 4 KiB), else as a whole copy. Caller holds n.mu exclusively;
// n is dirty and linked. It returns false when the journal is full (the
// caller uploads instead).
func (f *FS) journalNode(n *fileNode, size int64) (bool, error) {
	f.mu.Lock()
	var delta int64
	for _, x := range n.ext {
		delta += x[1]
	}
	useDelta := (n.blob != "" || n.baseCap != nil) && n.extOK && len(n.ext) > 0 && delta <= size/4
	full := f.jBytes+size > maxJournalBytes && !useDelta
	f.mu.Unlock()
	if full {
		return false, nil
	}
	var link chainLink
	var err error
	if useDelta {
		link = chainLink{base: n.blob, ext: n.ext, size: size}
		if n.blob == "" {
			link.baseCap = n.baseCap.String()
		}
		link.id, err = f.jr.PutBlobParts(n.cache, n.ext)
	} else {
		link = chainLink{size: size}
		link.id, err = f.jr.PutBlob(n.cache, size)
		delta = size
	}
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !useDelta {
		f.supersedeLocked(n)
	}
	n.chain = append(n.chain, link)
	n.blob, n.jclean = link.id, true
	n.blobSize += delta
	n.ext, n.extOK = nil, true
	f.jBytes += delta
	if n.parent != nil {
		f.logLinkLocked(n, link)
	} else {
		f.jr.Release(link.id) // unlinked meanwhile: no record will name it
	}
	f.armLocked(f.opts.FlushDelay)
	return true, nil
}

// noteJournalLocked notes a journal write, for the batch's debounce.
func (f *FS) noteJournalLocked() {
	f.jLast = time.Now()
	if f.jFirst.IsZero() {
		f.jFirst = f.jLast
	}
}

// logLinkLocked records n's content as link in its directory.
func (f *FS) logLinkLocked(n *fileNode, link chainLink) {
	f.noteJournalLocked()
	d := n.parent
	var prev *Entry
	if old, ok := d.entries[n.name]; ok {
		prev = &old
	}
	r := journal.Record{Dir: d.cap.String(), Name: n.name, Prev: toJEntry(prev), Blob: link.id, Base: link.base, BaseCap: link.baseCap, Ext: link.ext,
		New: toJEntry(&Entry{Type: TypeFile, Size: link.size, Mode: n.mode, Mtime: n.mtime})}
	if err := f.jr.Append(r); err != nil {
		f.log.Error("Write-back journal append failed; this change is not crash-safe until uploaded", "err", err)
	}
}

// supersedeLocked lets n's journal blobs go (with their generation): its
// content is now elsewhere. Caller holds f.mu.
func (f *FS) supersedeLocked(n *fileNode) {
	for _, l := range n.chain {
		f.jDone = append(f.jDone, l.id)
	}
	f.jBytes -= n.blobSize
	n.chain, n.blob, n.blobSize = nil, "", 0
	n.ext, n.extOK, n.baseCap = nil, false, nil
}

// uploadedLocked notes that n's content is on the grid: its blob may go
// once the journal generation recording it is dropped. Caller holds f.mu.
func (f *FS) uploadedLocked(n *fileNode) {
	f.supersedeLocked(n)
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
					for _, l := range n.chain {
						f.logLinkLocked(n, l)
					}
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
	deltas := map[string]journal.Record{}
	for _, r := range recs {
		if r.Base != "" || r.BaseCap != "" {
			deltas[r.Blob] = r
		}
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
		bf, err := f.materialize(ctx, c.blob, deltas)
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
		if bf.Name() != f.jr.BlobPath(c.blob) {
			os.Remove(bf.Name())
		}
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

// materialize opens the content of blob id: the blob itself, or for a
// delta a temporary file rebuilt from its chain of bases.
func (f *FS) materialize(ctx context.Context, id string, deltas map[string]journal.Record) (*os.File, error) {
	var chain []journal.Record
	for cur := id; ; {
		r, ok := deltas[cur]
		if !ok {
			break
		}
		if len(chain) > len(deltas) {
			return nil, fmt.Errorf("blob %s: delta chain loops: %w", id, journal.ErrFormat)
		}
		chain = append(chain, r)
		if r.BaseCap != "" {
			break
		}
		cur = r.Base
	}
	if len(chain) == 0 {
		return os.Open(f.jr.BlobPath(id))
	}
	var base io.Reader
	if last := chain[len(chain)-1]; last.BaseCap != "" {
		c, err := f.parseCap(last.BaseCap)
		if err != nil {
			return nil, fmt.Errorf("delta base: %w", err)
		}
		gf, err := f.g.OpenFile(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("delta base: %w", err)
		}
		defer closeFile(gf)
		base = io.NewSectionReader(gf, 0, gf.Size())
	} else {
		bf, err := os.Open(f.jr.BlobPath(last.Base))
		if err != nil {
			return nil, err
		}
		defer bf.Close()
		base = bf
	}
	tmp, err := os.CreateTemp(f.jr.Dir(), "replay-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, base); err != nil {
		return nil, err
	}
	for i := len(chain) - 1; i >= 0; i-- {
		r := chain[i]
		d, err := os.ReadFile(f.jr.BlobPath(r.Blob))
		if err != nil {
			return nil, err
		}
		var want int64
		for _, x := range r.Ext {
			want += x[1]
		}
		if int64(len(d)) != want {
			return nil, fmt.Errorf("delta blob %s: %d bytes, extents say %d: %w", r.Blob, len(d), want, journal.ErrFormat)
		}
		for _, x := range r.Ext {
			if _, err := tmp.WriteAt(d[:x[1]], x[0]); err != nil {
				return nil, err
			}
			d = d[x[1]:]
		}
		if err := tmp.Truncate(r.New.Size); err != nil {
			return nil, err
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ok = true
	return tmp, nil
}
