package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs/journal"
)

// Options configure a tree. The zero value is usable.
type Options struct {
	// CacheDir holds the write-back copies of files open for writing.
	// Empty: a fresh directory under os.TempDir, removed by Close.
	CacheDir string
	// FlushDelay is how long directory changes wait in memory before being
	// written, so that many changes become one write. Zero: 1 s. Negative:
	// only on Fsync, Sync and Close.
	FlushDelay time.Duration
	// DirTTL is how old a directory's copy may get before it is read again
	// from the grid (to see other writers' changes). Zero: 1 s for a
	// read-only tree, 10 s for a writable one. Negative: never re-read.
	DirTTL time.Duration
	// OpenFiles is how many grid files are kept open for reading. Zero: 16.
	OpenFiles int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for modification times; nil means time.Now.
	Now func() time.Time
	// JournalDir, when set on a writable tree, holds the write-back
	// journal (package fs/journal): Flush and Fsync store the file there
	// and return, and a background batch uploads it; New first replays
	// what a crashed process left there. Empty: Flush uploads at once.
	JournalDir string
}

// Info describes one node of the tree.
type Info struct {
	Name   string
	Type   Type
	Size   int64
	Mode   uint32 // permission bits
	Mtime  time.Time
	Target string   // symlink target
	Cap    caps.Cap // the node's cap (nil for a symlink); for a file with unsaved writes, its last saved version
}

// FileMode returns the io/fs mode: permission bits plus the type bits.
func (i Info) FileMode() iofs.FileMode {
	m := iofs.FileMode(i.Mode & 0o777)
	switch i.Type {
	case TypeDir:
		m |= iofs.ModeDir
	case TypeSymlink:
		m |= iofs.ModeSymlink
	}
	return m
}

// StatFS is the answer of Statfs.
type StatFS struct {
	Total, Free uint64 // bytes
}

// FS is a tree rooted at one directory cap. It is safe for concurrent use.
type FS struct {
	g        Grid
	opts     Options
	log      *slog.Logger
	rootCap  caps.Cap
	readOnly bool
	cacheDir string
	ownCache bool
	files    *fileCache

	mu         sync.Mutex // guards the tree structure below and every dir's maps
	root       *dir
	rootMode   uint32
	rootMtime  time.Time
	dirty      []*dir // directories with pending changes, in order of first change
	timer      *time.Timer
	closed     bool
	emptyCap   caps.Cap
	lastBgErr  error
	openNodes  map[*fileNode]struct{}
	flushGroup sync.Mutex // serializes whole-tree flushes

	jr      *journal.Journal // nil without Options.JournalDir
	batchMu sync.Mutex       // serializes upload batches (uploadBatch)
	jBytes  int64            // guarded by mu: bytes of blobs not yet uploaded
	jDone   []string         // guarded by mu: uploaded blobs, dropped with their generation
	jFirst  time.Time        // guarded by mu: first journal write since the last batch
	jLast   time.Time        // guarded by mu: last journal write
}

// dir is the in-memory copy of one directory.
type dir struct {
	cap    caps.Cap
	parent *dir // nil for the root
	name   string

	io sync.Mutex // serializes loads and flushes of this directory

	// Guarded by FS.mu:
	entries  map[string]Entry // the local view: grid table + pending; nil until loaded
	loadedAt time.Time        // when entries were last read from the grid
	pending  map[string]*edit // edits not yet written
	isDirty  bool
	subdirs  map[string]*dir
	files    map[string]*fileNode
}

// edit is a pending change of one name: the entry to write (nil: delete)
// and the entry the change was made against (nil: absent).
type edit struct{ new, prev *Entry }

// New opens the tree rooted at the directory root. A read-only root gives
// a read-only tree. The root is read once here, so a bad cap fails early.
func New(ctx context.Context, g Grid, root caps.Cap, opts Options) (*FS, error) {
	if root == nil || !g.IsDir(root) {
		return nil, fmt.Errorf("open tree: %w: root is not a directory cap", ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushDelay == 0 {
		opts.FlushDelay = time.Second
	}
	ro := !g.Writable(root)
	if opts.DirTTL == 0 {
		opts.DirTTL = 10 * time.Second
		if ro {
			opts.DirTTL = time.Second
		}
	}
	if opts.OpenFiles <= 0 {
		opts.OpenFiles = 16
	}
	f := &FS{
		g: g, opts: opts, log: opts.Logger.With("component", "fs"), rootCap: root, readOnly: ro,
		files: newFileCache(opts.OpenFiles), rootMode: 0o755, rootMtime: opts.Now(),
		openNodes: map[*fileNode]struct{}{},
	}
	f.root = f.newDir(nil, "", root)
	if err := f.load(ctx, f.root, false); err != nil {
		return nil, fmt.Errorf("open tree: %w", err)
	}
	if !ro {
		f.cacheDir = opts.CacheDir
		if f.cacheDir == "" {
			d, err := os.MkdirTemp("", "sphere-cache-")
			if err != nil {
				return nil, fmt.Errorf("open tree: cache dir: %w", err)
			}
			f.cacheDir, f.ownCache = d, true
		} else if err := os.MkdirAll(f.cacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("open tree: cache dir: %w", err)
		}
		if opts.JournalDir != "" {
			jr, err := journal.Open(opts.JournalDir)
			if err != nil {
				return nil, fmt.Errorf("open tree: %w", err)
			}
			f.jr = jr
			if err := f.replayJournal(ctx); err != nil {
				jr.Close()
				return nil, fmt.Errorf("open tree: %w", err)
			}
			// The replay may have changed directories already loaded.
			f.root.loadedAt = time.Time{}
			if err := f.load(ctx, f.root, true); err != nil {
				jr.Close()
				return nil, fmt.Errorf("open tree: %w", err)
			}
		}
	}
	return f, nil
}

// Pending reports what is not yet on the grid: journal records (0 without
// a journal) and bytes of file contents waiting for upload.
func (f *FS) Pending() (records int, bytes int64) {
	f.mu.Lock()
	bytes = f.jBytes
	f.mu.Unlock()
	if f.jr != nil {
		records = f.jr.Pending()
	}
	return records, bytes
}

// SyncLocal makes every change made so far survive a crash of this
// machine: with a journal, one sync of it; without, the same as Sync.
func (f *FS) SyncLocal(ctx context.Context) error {
	if f.jr == nil {
		return f.Sync(ctx)
	}
	return f.jr.Sync()
}

// Root returns the cap the tree was opened with.
func (f *FS) Root() caps.Cap { return f.rootCap }

// ReadOnly reports whether the tree refuses changes.
func (f *FS) ReadOnly() bool { return f.readOnly }

func (f *FS) newDir(parent *dir, name string, c caps.Cap) *dir {
	return &dir{cap: c, parent: parent, name: name, pending: map[string]*edit{},
		subdirs: map[string]*dir{}, files: map[string]*fileNode{}}
}

// splitPath cleans p and returns its elements ("" and "/" give none).
func splitPath(p string) ([]string, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return nil, nil
	}
	els := strings.Split(p[1:], "/")
	for _, e := range els {
		if e == "" || e == "." || e == ".." {
			return nil, ErrInvalid
		}
	}
	return els, nil
}

func sameCap(a, b caps.Cap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

// load makes sure d.entries is present, re-reading it from the grid when
// older than DirTTL (or always when force).
func (f *FS) load(ctx context.Context, d *dir, force bool) error {
	if !force && f.fresh(d) {
		return nil
	}
	d.io.Lock()
	defer d.io.Unlock()
	if !force && f.fresh(d) {
		return nil
	}
	ents, err := f.g.ReadDir(ctx, d.cap)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", f.dirPath(d), err)
	}
	if ents == nil {
		ents = map[string]Entry{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, ed := range d.pending {
		if ed.new == nil {
			delete(ents, name)
		} else {
			ents[name] = *ed.new
		}
	}
	// Keep what is in flight locally: open files' newer state wins.
	for name, s := range d.subdirs {
		if e, ok := ents[name]; !ok || e.Type != TypeDir || !sameCap(e.Cap, s.cap) {
			if len(s.pending) == 0 {
				delete(d.subdirs, name)
			}
		}
	}
	d.entries = ents
	d.loadedAt = time.Now()
	return nil
}

func (f *FS) fresh(d *dir) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d.entries == nil {
		return false
	}
	return f.opts.DirTTL < 0 || time.Since(d.loadedAt) < f.opts.DirTTL
}

// dirPath returns d's path for messages (caller may or may not hold mu; it
// only reads names, a race there only affects a message).
func (f *FS) dirPath(d *dir) string {
	var els []string
	for ; d != nil && d.parent != nil; d = d.parent {
		els = append(els, d.name)
	}
	for i, j := 0, len(els)-1; i < j; i, j = i+1, j-1 {
		els[i], els[j] = els[j], els[i]
	}
	return "/" + strings.Join(els, "/")
}

// subdirLocked returns the dir object for entry e named name in d.
func (f *FS) subdirLocked(d *dir, name string, e Entry) *dir {
	if s := d.subdirs[name]; s != nil && sameCap(s.cap, e.Cap) {
		return s
	}
	s := f.newDir(d, name, e.Cap)
	d.subdirs[name] = s
	return s
}

// walk returns the loaded directory at els.
func (f *FS) walk(ctx context.Context, els []string) (*dir, error) {
	d := f.root
	for _, name := range els {
		if err := f.load(ctx, d, false); err != nil {
			return nil, err
		}
		f.mu.Lock()
		e, ok := d.entries[name]
		switch {
		case !ok:
			f.mu.Unlock()
			return nil, ErrNotExist
		case e.Type != TypeDir:
			f.mu.Unlock()
			return nil, ErrNotDir
		}
		d = f.subdirLocked(d, name, e)
		f.mu.Unlock()
	}
	if err := f.load(ctx, d, false); err != nil {
		return nil, err
	}
	return d, nil
}

// parentOf resolves p to its loaded parent directory and last name.
func (f *FS) parentOf(ctx context.Context, p string) (*dir, string, error) {
	els, err := splitPath(p)
	if err != nil {
		return nil, "", err
	}
	if len(els) == 0 {
		return nil, "", nil
	}
	d, err := f.walk(ctx, els[:len(els)-1])
	if err != nil {
		return nil, "", err
	}
	return d, els[len(els)-1], nil
}

// infoLocked builds the Info of entry e named name in d.
func (f *FS) infoLocked(d *dir, name string, e Entry) Info {
	in := Info{Name: name, Type: e.Type, Size: e.Size, Mode: e.Mode, Mtime: e.Mtime, Target: e.Target, Cap: e.Cap}
	if e.Type == TypeSymlink {
		in.Size = int64(len(e.Target))
	}
	if n := d.files[name]; n != nil {
		in.Size, in.Mode, in.Mtime, in.Cap = n.size, n.mode, n.mtime, n.cap
	}
	if in.Mode == 0 {
		switch e.Type {
		case TypeDir:
			in.Mode = 0o755
		case TypeSymlink:
			in.Mode = 0o777
		default:
			in.Mode = 0o644
		}
	}
	return in
}

func (f *FS) rootInfoLocked() Info {
	return Info{Name: "", Type: TypeDir, Mode: f.rootMode, Mtime: f.rootMtime, Cap: f.rootCap}
}

// Stat returns the Info of the node at p (symlinks are not followed).
func (f *FS) Stat(ctx context.Context, p string) (Info, error) {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return Info{}, pathErr("stat", p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d == nil {
		return f.rootInfoLocked(), nil
	}
	e, ok := d.entries[name]
	if !ok {
		return Info{}, pathErr("stat", p, ErrNotExist)
	}
	return f.infoLocked(d, name, e), nil
}

// Lookup is Stat by another name, for callers walking a tree.
func (f *FS) Lookup(ctx context.Context, p string) (Info, error) { return f.Stat(ctx, p) }

// ReadDir lists the directory at p, sorted by name.
func (f *FS) ReadDir(ctx context.Context, p string) ([]Info, error) {
	els, err := splitPath(p)
	if err != nil {
		return nil, pathErr("readdir", p, err)
	}
	d, err := f.walk(ctx, els)
	if err != nil {
		return nil, pathErr("readdir", p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Info, 0, len(d.entries))
	for name, e := range d.entries {
		out = append(out, f.infoLocked(d, name, e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// writableLocked returns ErrReadOnly unless d may be changed.
func (f *FS) writableLocked(d *dir) error {
	if f.readOnly {
		return ErrReadOnly
	}
	if f.closed {
		return ErrClosed
	}
	if !f.g.Writable(d.cap) {
		return ErrReadOnly
	}
	return nil
}

// setLocked records entry e (nil: removal) for name in d, in the view and
// as a pending edit, and schedules a flush.
func (f *FS) setLocked(d *dir, name string, e *Entry) {
	if ed, ok := d.pending[name]; ok {
		ed.new = e
	} else {
		var prev *Entry
		if old, ok := d.entries[name]; ok {
			prev = &old
		}
		d.pending[name] = &edit{new: e, prev: prev}
	}
	if f.jr != nil {
		var prev *Entry
		if old, ok := d.entries[name]; ok {
			prev = &old
		}
		f.logLocked(d, name, e, prev)
	}
	if e == nil {
		delete(d.entries, name)
	} else {
		d.entries[name] = *e
	}
	f.markDirtyLocked(d)
}

func (f *FS) markDirtyLocked(d *dir) {
	if !d.isDirty {
		d.isDirty = true
		f.dirty = append(f.dirty, d)
	}
	f.armLocked(f.opts.FlushDelay)
}

// armLocked schedules a background flush after delay unless one is due.
func (f *FS) armLocked(delay time.Duration) {
	if f.opts.FlushDelay > 0 && f.timer == nil && !f.closed {
		f.timer = time.AfterFunc(delay, f.backgroundFlush)
	}
}

// retryDelay is how long the background flush waits after a failure.
func (f *FS) retryDelay() time.Duration { return 5 * f.opts.FlushDelay }

// backgroundFlush saves closed files (journalled ones, and ones whose
// save failed) and writes changed directories: one upload batch.
func (f *FS) backgroundFlush() {
	f.mu.Lock()
	f.timer = nil
	// With a journal, wait until writing pauses (FlushDelay without a
	// journal write), so a burst like untar is not slowed by its own
	// upload; but not longer than 10 FlushDelays, nor past batchBytes.
	if f.jr != nil && !f.jFirst.IsZero() {
		quiet := time.Since(f.jLast)
		if quiet < f.opts.FlushDelay && time.Since(f.jFirst) < 10*f.opts.FlushDelay && f.jBytes < batchBytes {
			f.armLocked(f.opts.FlushDelay - quiet)
			f.mu.Unlock()
			return
		}
	}
	f.jFirst = time.Time{}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := f.uploadBatch(ctx, false)
	f.mu.Lock()
	f.lastBgErr = err
	if err != nil {
		f.armLocked(f.retryDelay())
	}
	f.mu.Unlock()
	if err != nil {
		f.log.Warn("Background save failed; will retry", "err", err)
	}
}

// Mkdir creates a directory at p.
func (f *FS) Mkdir(ctx context.Context, p string, mode uint32) error {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	if d == nil {
		return pathErr("mkdir", p, ErrExist)
	}
	f.mu.Lock()
	err = f.writableLocked(d)
	if _, ok := d.entries[name]; ok && err == nil {
		err = ErrExist
	}
	f.mu.Unlock()
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	if err := checkName(name); err != nil {
		return pathErr("mkdir", p, err)
	}
	c, err := f.g.CreateDir(ctx, nil)
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := d.entries[name]; ok {
		return pathErr("mkdir", p, ErrExist)
	}
	f.setLocked(d, name, &Entry{Type: TypeDir, Cap: c, Mode: mode & 0o7777, Mtime: f.opts.Now()})
	return nil
}

// checkName rejects names a directory table cannot hold.
func checkName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrInvalid)
	}
	if strings.ContainsRune(name, 0) {
		return fmt.Errorf("name with NUL: %w", ErrInvalid)
	}
	return nil
}

// Symlink creates a symbolic link at p pointing to target.
func (f *FS) Symlink(ctx context.Context, target, p string) error {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return pathErr("symlink", p, err)
	}
	if d == nil {
		return pathErr("symlink", p, ErrExist)
	}
	if err := checkName(name); err != nil {
		return pathErr("symlink", p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writableLocked(d); err != nil {
		return pathErr("symlink", p, err)
	}
	if _, ok := d.entries[name]; ok {
		return pathErr("symlink", p, ErrExist)
	}
	f.setLocked(d, name, &Entry{Type: TypeSymlink, Target: target, Mode: 0o777, Mtime: f.opts.Now()})
	return nil
}

// Readlink returns the target of the symbolic link at p.
func (f *FS) Readlink(ctx context.Context, p string) (string, error) {
	in, err := f.Stat(ctx, p)
	if err != nil {
		return "", err
	}
	if in.Type != TypeSymlink {
		return "", pathErr("readlink", p, ErrInvalid)
	}
	return in.Target, nil
}

// Unlink removes the file or symlink at p. Open handles keep working on
// the removed file.
func (f *FS) Unlink(ctx context.Context, p string) error {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return pathErr("unlink", p, err)
	}
	if d == nil {
		return pathErr("unlink", p, ErrIsDir)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writableLocked(d); err != nil {
		return pathErr("unlink", p, err)
	}
	e, ok := d.entries[name]
	if !ok {
		return pathErr("unlink", p, ErrNotExist)
	}
	if e.Type == TypeDir {
		return pathErr("unlink", p, ErrIsDir)
	}
	f.detachFileLocked(d, name)
	f.setLocked(d, name, nil)
	return nil
}

// detachFileLocked unlinks the live file node named name in d, if any.
func (f *FS) detachFileLocked(d *dir, name string) {
	if n := d.files[name]; n != nil {
		n.parent = nil
		delete(d.files, name)
	}
}

// Rmdir removes the empty directory at p.
func (f *FS) Rmdir(ctx context.Context, p string) error {
	els, err := splitPath(p)
	if err != nil {
		return pathErr("rmdir", p, err)
	}
	if len(els) == 0 {
		return pathErr("rmdir", p, ErrInvalid)
	}
	sub, err := f.walk(ctx, els)
	if err != nil {
		return pathErr("rmdir", p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, name := sub.parent, sub.name
	if err := f.writableLocked(d); err != nil {
		return pathErr("rmdir", p, err)
	}
	if e, ok := d.entries[name]; !ok || e.Type != TypeDir || !sameCap(e.Cap, sub.cap) {
		return pathErr("rmdir", p, ErrNotExist)
	}
	if len(sub.entries) > 0 {
		return pathErr("rmdir", p, ErrNotEmpty)
	}
	delete(d.subdirs, name)
	f.setLocked(d, name, nil)
	return nil
}

// Rename moves the node at oldp to newp, within or across directories,
// replacing a file or an empty directory at newp.
func (f *FS) Rename(ctx context.Context, oldp, newp string) error {
	sp, sname, err := f.parentOf(ctx, oldp)
	if err != nil {
		return pathErr("rename", oldp, err)
	}
	dp, dname, err := f.parentOf(ctx, newp)
	if err != nil {
		return pathErr("rename", newp, err)
	}
	if sp == nil || dp == nil {
		return pathErr("rename", oldp, ErrInvalid)
	}
	if err := checkName(dname); err != nil {
		return pathErr("rename", newp, err)
	}
	// Load a directory about to be replaced, to check it is empty.
	if in, err := f.Stat(ctx, newp); err == nil && in.Type == TypeDir {
		if _, err := f.walk(ctx, mustSplit(newp)); err != nil {
			return pathErr("rename", newp, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writableLocked(sp); err != nil {
		return pathErr("rename", oldp, err)
	}
	if err := f.writableLocked(dp); err != nil {
		return pathErr("rename", newp, err)
	}
	e, ok := sp.entries[sname]
	if !ok {
		return pathErr("rename", oldp, ErrNotExist)
	}
	if sp == dp && sname == dname {
		return nil
	}
	var moved *dir
	if e.Type == TypeDir {
		moved = f.subdirLocked(sp, sname, e)
		for a := dp; a != nil; a = a.parent {
			if a == moved {
				return pathErr("rename", newp, ErrInvalid)
			}
		}
	}
	if de, ok := dp.entries[dname]; ok {
		switch {
		case e.Type == TypeDir && de.Type != TypeDir:
			return pathErr("rename", newp, ErrNotDir)
		case e.Type != TypeDir && de.Type == TypeDir:
			return pathErr("rename", newp, ErrIsDir)
		case de.Type == TypeDir:
			target := dp.subdirs[dname]
			if target == nil || target.entries == nil || !sameCap(target.cap, de.Cap) {
				return pathErr("rename", newp, fmt.Errorf("target directory changed: %w", ErrNotEmpty))
			}
			if len(target.entries) > 0 {
				return pathErr("rename", newp, ErrNotEmpty)
			}
			delete(dp.subdirs, dname)
		default:
			f.detachFileLocked(dp, dname)
		}
	}
	// The live file node moves first, so the journal records the new name
	// with the node's unsaved content (logLocked).
	if n := sp.files[sname]; n != nil {
		delete(sp.files, sname)
		n.parent, n.name = dp, dname
		dp.files[dname] = n
	}
	// Write the new name before removing the old one: a crash between the
	// two directory writes leaves the node reachable twice, never lost.
	f.setLocked(dp, dname, &e)
	f.setLocked(sp, sname, nil)
	if moved != nil {
		delete(sp.subdirs, sname)
		moved.parent, moved.name = dp, dname
		dp.subdirs[dname] = moved
	}
	return nil
}

func mustSplit(p string) []string {
	els, _ := splitPath(p)
	return els
}

// Chmod sets the permission bits of the node at p.
func (f *FS) Chmod(ctx context.Context, p string, mode uint32) error {
	return f.setMeta(ctx, "chmod", p, func(e *Entry, n *fileNode) {
		e.Mode = mode & 0o7777
		if n != nil {
			n.mode = e.Mode
		}
	}, func() { f.rootMode = mode & 0o7777 })
}

// Utimens sets the modification time of the node at p.
func (f *FS) Utimens(ctx context.Context, p string, mtime time.Time) error {
	return f.setMeta(ctx, "utimens", p, func(e *Entry, n *fileNode) {
		e.Mtime = mtime
		if n != nil {
			n.mtime = mtime
		}
	}, func() { f.rootMtime = mtime })
}

func (f *FS) setMeta(ctx context.Context, op, p string, set func(*Entry, *fileNode), setRoot func()) error {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return pathErr(op, p, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d == nil {
		if f.readOnly {
			return pathErr(op, p, ErrReadOnly)
		}
		setRoot() // kept in memory only: the root has no parent entry
		return nil
	}
	if err := f.writableLocked(d); err != nil {
		return pathErr(op, p, err)
	}
	e, ok := d.entries[name]
	if !ok {
		return pathErr(op, p, ErrNotExist)
	}
	n := d.files[name]
	if n != nil {
		e.Cap, e.Size = n.cap, n.committedSize
	}
	if e.Mode == 0 {
		e.Mode = f.infoLocked(d, name, e).Mode
	}
	set(&e, n)
	f.setLocked(d, name, &e)
	return nil
}

// Truncate sets the size of the file at p and saves it.
func (f *FS) Truncate(ctx context.Context, p string, size int64) error {
	h, err := f.OpenFile(ctx, p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := h.Truncate(ctx, size); err != nil {
		h.Close(ctx)
		return err
	}
	return h.Close(ctx)
}

// Caps returns the cap of the node at p and its read cap, for sharing.
// A file with unsaved writes is saved first.
func (f *FS) Caps(ctx context.Context, p string) (c, readCap caps.Cap, err error) {
	in, err := f.Stat(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	if in.Type == TypeSymlink || in.Cap == nil {
		return nil, nil, pathErr("caps", p, ErrNotSupported)
	}
	c = in.Cap
	if in.Type == TypeFile {
		if n := f.liveNode(ctx, p); n != nil {
			if err := f.saveNode(ctx, n, true); err != nil {
				return nil, nil, pathErr("caps", p, err)
			}
			f.mu.Lock()
			c = n.cap
			f.mu.Unlock()
		}
	}
	rc, err := f.g.ReadOnly(c)
	if err != nil {
		return nil, nil, pathErr("caps", p, err)
	}
	return c, rc, nil
}

// liveNode returns the open-file state of p, if any.
func (f *FS) liveNode(ctx context.Context, p string) *fileNode {
	d, name, err := f.parentOf(ctx, p)
	if err != nil || d == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return d.files[name]
}

// Statfs reports capacity, from the grid when it knows, else a large
// nominal figure.
func (f *FS) Statfs(ctx context.Context) (StatFS, error) {
	if s, ok := f.g.(StatFSer); ok {
		total, free, err := s.StatFS(ctx)
		if err != nil {
			return StatFS{}, fmt.Errorf("statfs: %w", err)
		}
		return StatFS{Total: total, Free: free}, nil
	}
	return StatFS{Total: 1 << 50, Free: 1 << 49}, nil
}

// Sync saves every file with unsaved writes and writes every changed
// directory. When it returns nil, everything changed before the call is
// durable on the grid (and the journal holds nothing it covered).
func (f *FS) Sync(ctx context.Context) error {
	return f.uploadBatch(ctx, true)
}

// flushDirs writes every directory with pending edits.
func (f *FS) flushDirs(ctx context.Context) error {
	f.flushGroup.Lock()
	defer f.flushGroup.Unlock()
	f.mu.Lock()
	list := f.dirty
	f.dirty = nil
	for _, d := range list {
		d.isDirty = false
	}
	f.mu.Unlock()
	var errs []error
	for _, d := range list {
		if err := f.flushDir(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *FS) flushDir(ctx context.Context, d *dir) error {
	d.io.Lock()
	defer d.io.Unlock()
	f.mu.Lock()
	batch := d.pending
	d.pending = map[string]*edit{}
	f.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	changes := make([]Change, 0, len(batch))
	for name, ed := range batch {
		changes = append(changes, Change{Name: name, New: ed.new, Prev: ed.prev})
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	conflicted, err := f.modifyResolving(ctx, d.cap, f.dirPath(d), changes)
	if conflicted {
		f.mu.Lock()
		d.loadedAt = time.Time{} // re-read to show the other writer's entry
		f.mu.Unlock()
	}
	if err != nil {
		f.mu.Lock()
		for name, ed := range batch {
			if newer, ok := d.pending[name]; ok {
				newer.prev = ed.prev // the batch never landed
			} else {
				d.pending[name] = ed
			}
		}
		if !d.isDirty {
			d.isDirty = true
			f.dirty = append(f.dirty, d)
		}
		f.armLocked(f.retryDelay())
		f.mu.Unlock()
		return fmt.Errorf("write directory %q: %w", f.dirPath(d), err)
	}
	return nil
}

// modifyResolving applies changes to the directory dc (path names it in
// logs) with one ModifyDir, resolving conflicts with other writers: a
// delete of ours yields to their entry; an entry of ours moves aside as
// "<name>.conflict-<unix nanoseconds>". conflicted reports whether that
// happened.
func (f *FS) modifyResolving(ctx context.Context, dc caps.Cap, path string, changes []Change) (conflicted bool, err error) {
	for attempt := 0; attempt < 8; attempt++ {
		err = f.g.ModifyDir(ctx, dc, changes)
		var ce *ConflictError
		if err == nil || !errors.As(err, &ce) {
			break
		}
		i := slices.IndexFunc(changes, func(c Change) bool { return c.Name == ce.Name })
		if i < 0 {
			break
		}
		conflicted = true
		c := changes[i]
		changes = slices.Delete(changes, i, i+1)
		if c.New != nil {
			aside := fmt.Sprintf("%s.conflict-%d", c.Name, f.opts.Now().UnixNano())
			changes = append(changes, Change{Name: aside, New: c.New})
			f.log.Warn("Directory entry changed by another writer; kept ours under another name",
				"dir", path, "name", c.Name, "keptAs", aside)
		} else {
			f.log.Warn("Directory entry changed by another writer; not deleted", "dir", path, "name", c.Name)
		}
		if len(changes) == 0 {
			err = nil
			break
		}
	}
	return conflicted, err
}

// Close saves everything (as Sync) and releases the cache. The tree is
// unusable afterwards; the error says whether anything failed to save.
func (f *FS) Close(ctx context.Context) error {
	err := f.Sync(ctx)
	return f.finish(err)
}

// CloseNoWait closes the tree without uploading: what is not yet on the
// grid stays in the journal (synced to disk) and is uploaded by the next
// tree opened on it. Without a journal it is Close.
func (f *FS) CloseNoWait(ctx context.Context) error {
	if f.jr == nil {
		return f.Close(ctx)
	}
	// Files still open or closed since the last batch go to the journal.
	f.mu.Lock()
	nodes := make([]*fileNode, 0, len(f.openNodes))
	for n := range f.openNodes {
		nodes = append(nodes, n)
	}
	f.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		errs = append(errs, f.saveNode(ctx, n, false))
	}
	errs = append(errs, f.jr.Sync())
	return f.finish(errors.Join(errs...))
}

func (f *FS) finish(err error) error {
	f.mu.Lock()
	f.closed = true
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	f.mu.Unlock()
	f.files.closeAll()
	if f.jr != nil {
		if cerr := f.jr.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil && f.ownCache {
		os.RemoveAll(f.cacheDir)
	}
	if err != nil {
		return fmt.Errorf("close tree: %w", err)
	}
	return nil
}

// emptyFileCap returns the cap of the empty file (a literal cap).
func (f *FS) emptyFileCap(ctx context.Context) (caps.Cap, error) {
	f.mu.Lock()
	c := f.emptyCap
	f.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := f.g.Upload(ctx, bytes.NewReader(nil), 0)
	if err != nil {
		return nil, fmt.Errorf("empty file: %w", err)
	}
	f.mu.Lock()
	f.emptyCap = c
	f.mu.Unlock()
	return c, nil
}
