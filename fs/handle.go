package fs

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs/journal"
)

// fileNode is the live state of a file while it is open (or has unsaved
// writes). All handles of one file share it, so a write through one is
// seen by a read through another.
type fileNode struct {
	mu    sync.RWMutex // guards content: cache and dirty; writers and savers hold it exclusively
	cache *wbuf        // write-back copy of the whole file; nil while content is n.cap
	dirty bool         // cache differs from cap
	// jclean: the journal holds the cache as it is (blob), so a close need
	// not store it again. Cleared by every write.
	jclean bool

	// Guarded by FS.mu:
	parent        *dir // nil once unlinked
	name          string
	refs          int
	cap           caps.Cap // last saved content
	committedSize int64    // size of cap
	blob          string   // journal blob holding the content not yet uploaded (last of chain)
	blobSize      int64    // bytes of all blobs in chain
	chain         []chainLink
	// ext: the ranges written since the content was last journalled, so
	// that the next journal entry can be a delta; extOK is false when a
	// delta cannot describe the change (a truncate, too many writes).
	ext     [][2]int64
	extOK   bool
	baseCap caps.Cap // saved file a first delta is over (no blob yet)
	size    int64
	mode    uint32
	mtime   time.Time
}

// Handle is an open file. Its methods are safe for concurrent use.
type Handle struct {
	f      *FS
	n      *fileNode
	write  bool
	mu     sync.Mutex
	closed bool
}

// Create creates (or truncates) the file at p and opens it read-write.
func (f *FS) Create(ctx context.Context, p string, mode uint32) (*Handle, error) {
	return f.OpenFile(ctx, p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, mode)
}

// Open opens the file at p for reading.
func (f *FS) Open(ctx context.Context, p string) (*Handle, error) {
	return f.OpenFile(ctx, p, os.O_RDONLY, 0)
}

// OpenFile opens the file at p with os.OpenFile's flags (O_RDONLY,
// O_WRONLY, O_RDWR, O_CREATE, O_EXCL, O_TRUNC); mode applies to a new file.
func (f *FS) OpenFile(ctx context.Context, p string, flag int, mode uint32) (*Handle, error) {
	d, name, err := f.parentOf(ctx, p)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	if d == nil {
		return nil, pathErr("open", p, ErrIsDir)
	}
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0 || flag&os.O_TRUNC != 0
	var empty caps.Cap
	if flag&os.O_CREATE != 0 && !f.readOnly {
		if empty, err = f.emptyFileCap(ctx); err != nil {
			return nil, pathErr("open", p, err)
		}
	}
	f.mu.Lock()
	e, ok := d.entries[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		err = ErrExist
	case ok && e.Type == TypeDir:
		err = ErrIsDir
	case ok && e.Type != TypeFile:
		err = ErrNotSupported
	case !ok && flag&os.O_CREATE == 0:
		err = ErrNotExist
	case write || !ok:
		err = f.writableLocked(d)
	}
	if err == nil && !ok {
		err = checkName(name)
	}
	if err != nil {
		f.mu.Unlock()
		return nil, pathErr("open", p, err)
	}
	if !ok {
		e = Entry{Type: TypeFile, Cap: empty, Mode: mode & 0o7777, Mtime: f.opts.Now()}
		if e.Mode == 0 {
			e.Mode = 0o644
		}
		f.setLocked(d, name, &e)
	}
	n := d.files[name]
	if n == nil {
		n = &fileNode{parent: d, name: name, cap: e.Cap, committedSize: e.Size, size: e.Size, mode: e.Mode, mtime: e.Mtime}
		if n.mode == 0 {
			n.mode = 0o644
		}
		d.files[name] = n
	}
	n.refs++
	f.openNodes[n] = struct{}{}
	f.mu.Unlock()
	h := &Handle{f: f, n: n, write: write}
	if write && flag&os.O_TRUNC != 0 && ok {
		if err := h.Truncate(ctx, 0); err != nil {
			h.Close(ctx)
			return nil, err
		}
	}
	return h, nil
}

// Stat returns the open file's current Info (also after it was unlinked).
func (h *Handle) Stat() Info {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	n := h.n
	return Info{Name: n.name, Type: TypeFile, Size: n.size, Mode: n.mode, Mtime: n.mtime, Cap: n.cap}
}

// Unlinked reports whether the file no longer has a name (it was removed
// or replaced while open).
func (h *Handle) Unlinked() bool {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.n.parent == nil
}

func (h *Handle) check(write bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if write && !h.write {
		return fmt.Errorf("handle opened read-only: %w", ErrInvalid)
	}
	return nil
}

// ReadAt reads len(p) bytes at off; at the end of the file it returns
// fewer bytes and io.EOF. A file not being written is read from the grid
// segment by segment.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := h.check(false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, ErrInvalid
	}
	f, n := h.f, h.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	f.mu.Lock()
	size, c := n.size, n.cap
	f.mu.Unlock()
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if rest := size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	var got int
	var err error
	if n.cache != nil {
		got, err = n.cache.ReadAt(want, off)
	} else {
		var cf *cachedFile
		if cf, err = f.files.open(ctx, f.g, c); err != nil {
			return 0, fmt.Errorf("read %q: %w", n.name, err)
		}
		got, err = cf.readAt(ctx, want, off)
		f.files.release(cf)
	}
	if err == io.EOF && got == len(want) {
		err = nil
	}
	if err != nil {
		return got, fmt.Errorf("read %q at %d: %w", n.name, off, err)
	}
	if got < len(p) {
		return got, io.EOF
	}
	return got, nil
}

// WriteAt writes p at off into the local write-back copy; the file is saved
// to the grid by Flush, Fsync or Close.
func (h *Handle) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := h.check(true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, ErrInvalid
	}
	f, n := h.f, h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := f.ensureCache(ctx, n, -1); err != nil {
		return 0, err
	}
	w, err := n.cache.WriteAt(p, off)
	if w > 0 {
		n.dirty, n.jclean = true, false
		if n.extOK && len(n.ext) < journal.MaxExtents {
			n.ext = append(n.ext, [2]int64{off, int64(w)})
		} else {
			n.extOK = false
		}
		f.mu.Lock()
		if end := off + int64(w); end > n.size {
			n.size = end
		}
		n.mtime = f.opts.Now()
		f.mu.Unlock()
	}
	if err != nil {
		return w, fmt.Errorf("write %q: cache: %w", n.name, err)
	}
	return w, nil
}

// Truncate sets the file's size.
func (h *Handle) Truncate(ctx context.Context, size int64) error {
	if err := h.check(true); err != nil {
		return err
	}
	if size < 0 {
		return ErrInvalid
	}
	f, n := h.f, h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := f.ensureCache(ctx, n, size); err != nil {
		return err
	}
	if err := n.cache.Truncate(size); err != nil {
		return fmt.Errorf("truncate %q: cache: %w", n.name, err)
	}
	n.dirty, n.jclean, n.extOK = true, false, false
	f.mu.Lock()
	n.size = size
	n.mtime = f.opts.Now()
	f.mu.Unlock()
	return nil
}

// ensureCache makes the write-back copy, holding the first keep bytes of
// the saved content (keep < 0: all of it). Caller holds n.mu exclusively.
func (f *FS) ensureCache(ctx context.Context, n *fileNode, keep int64) error {
	if n.cache != nil {
		return nil
	}
	f.mu.Lock()
	c, size := n.cap, n.committedSize
	f.mu.Unlock()
	if keep < 0 || keep > size {
		keep = size
	}
	if keep > memLimit {
		// Big: a lazy copy that reads unwritten ranges from the grid.
		cf, err := f.files.open(ctx, f.g, c)
		if err != nil {
			return fmt.Errorf("open %q for writing: %w", n.name, err)
		}
		tmp, err := newLazyWbuf(f.cacheDir, cf.f, keep, func() { f.files.release(cf) })
		if err != nil {
			f.files.release(cf)
			return err
		}
		n.cache = tmp
		f.setDeltaBase(n, c, keep == size)
		return nil
	}
	tmp := newWbuf(f.cacheDir)
	if keep > 0 {
		cf, err := f.files.open(ctx, f.g, c)
		if err != nil {
			return fmt.Errorf("load %q into cache: %w", n.name, err)
		}
		_, err = io.Copy(io.NewOffsetWriter(tmp, 0), io.NewSectionReader(cf.f, 0, keep))
		f.files.release(cf)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("load %q into cache: %w", n.name, err)
		}
	}
	n.cache = tmp
	f.setDeltaBase(n, c, keep == size)
	return nil
}

// setDeltaBase notes that n's cache now equals the saved file c (when
// whole), so the journal may record later writes as a delta over c.
// Caller holds n.mu exclusively.
func (f *FS) setDeltaBase(n *fileNode, c caps.Cap, whole bool) {
	n.ext = nil
	n.extOK = whole && c != nil && n.blob == ""
	n.baseCap = nil
	if n.extOK {
		n.baseCap = c
	}
}

// Flush saves the file if it has unsaved writes: into the write-back
// journal when the tree has one (uploaded by the next batch), else to the
// grid, recording its new cap in its directory (written to the grid later,
// see Fsync). An error means the data is not saved.
func (h *Handle) Flush(ctx context.Context) error {
	if err := h.check(false); err != nil {
		return err
	}
	return h.f.saveNode(ctx, h.n, false)
}

// Fsync saves the file and makes it and the directory chain up to the
// root durable: with a journal, durable on this machine (synced to its
// disk; on the grid after the next batch or Sync); without, written to
// the grid.
func (h *Handle) Fsync(ctx context.Context) error {
	if err := h.Flush(ctx); err != nil {
		return err
	}
	if h.f.jr != nil {
		return h.f.jr.Sync()
	}
	if err := h.f.flushDirs(ctx); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// Close saves the file (as Flush) and releases the handle. On error the
// unsaved data is kept and retried by Sync and by the tree's Close.
func (h *Handle) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.closed = true
	h.mu.Unlock()
	err := h.f.saveNode(ctx, h.n, false)
	h.f.release(h.n)
	return err
}

// release drops one reference to n and forgets it once unused and saved.
func (f *FS) release(n *fileNode) {
	f.mu.Lock()
	n.refs--
	if n.refs > 0 {
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	f.forget(n)
}

// forget drops n once unused and saved. An unused node whose save failed
// is kept, with its data, and retried by the background flush.
func (f *FS) forget(n *fileNode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n.refs > 0 {
		return
	}
	if n.dirty {
		if n.blob != "" {
			f.armLocked(f.opts.FlushDelay)
		} else {
			f.armLocked(f.retryDelay())
		}
		return
	}
	if n.cache != nil {
		n.cache.Close()
		n.cache = nil
	}
	if n.parent != nil && n.parent.files[n.name] == n {
		delete(n.parent.files, n.name)
	}
	delete(f.openNodes, n)
}

// saveNode saves n's write-back copy if dirty: with upload false and a
// journal, into the journal (uploaded by the next batch); else to the grid,
// recording the new entry.
func (f *FS) saveNode(ctx context.Context, n *fileNode, upload bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.dirty {
		return nil
	}
	f.mu.Lock()
	size, name, linked := n.size, n.name, n.parent != nil
	if !linked {
		n.dirty = false // unlinked: nothing can reach the data any more
		f.uploadedLocked(n)
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	if !upload && f.jr != nil {
		if n.jclean {
			return nil
		}
		ok, err := f.journalNode(n, size)
		if err != nil {
			return fmt.Errorf("save %q: %w", name, err)
		}
		if ok {
			return nil
		}
	}
	c, err := f.g.Upload(ctx, n.cache, size)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	n.dirty = false
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploadedLocked(n)
	n.cap, n.committedSize = c, size
	f.setDeltaBase(n, c, true) // the cache is now exactly c
	if n.parent != nil {
		f.setLocked(n.parent, n.name, &Entry{Type: TypeFile, Cap: c, Size: size, Mode: n.mode, Mtime: n.mtime})
	}
	return nil
}

// fileCache keeps a few grid files open for reading, least recently used
// first out. A file is closed once evicted and no read uses it.
type fileCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cachedFile, most recent at front
	byCap map[string]*list.Element
}

type cachedFile struct {
	key     string
	f       File
	refs    int // guarded by fileCache.mu
	evicted bool
}

// readAt reads through ReadAtContext when the file has it, so a cancelled
// request stops its fetch.
func (cf *cachedFile) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if r, ok := cf.f.(interface {
		ReadAtContext(context.Context, []byte, int64) (int, error)
	}); ok {
		return r.ReadAtContext(ctx, p, off)
	}
	return cf.f.ReadAt(p, off)
}

func newFileCache(max int) *fileCache {
	return &fileCache{max: max, order: list.New(), byCap: map[string]*list.Element{}}
}

// open returns the open file for cp with a reference; call release.
func (c *fileCache) open(ctx context.Context, g Grid, cp caps.Cap) (*cachedFile, error) {
	if cp == nil {
		return nil, errors.New("file has no cap")
	}
	key := cp.String()
	c.mu.Lock()
	if el, ok := c.byCap[key]; ok {
		c.order.MoveToFront(el)
		cf := el.Value.(*cachedFile)
		cf.refs++
		c.mu.Unlock()
		return cf, nil
	}
	c.mu.Unlock()
	gf, err := g.OpenFile(ctx, cp)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byCap[key]; ok {
		closeFile(gf)
		cf := el.Value.(*cachedFile)
		cf.refs++
		return cf, nil
	}
	cf := &cachedFile{key: key, f: gf, refs: 1}
	c.byCap[key] = c.order.PushFront(cf)
	for c.order.Len() > c.max {
		el := c.order.Back()
		c.order.Remove(el)
		old := el.Value.(*cachedFile)
		delete(c.byCap, old.key)
		old.evicted = true
		if old.refs == 0 {
			closeFile(old.f)
		}
	}
	return cf, nil
}

func (c *fileCache) release(cf *cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf.refs--
	if cf.evicted && cf.refs == 0 {
		closeFile(cf.f)
	}
}

// closeAll closes every cached file.
func (c *fileCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; el = el.Next() {
		cf := el.Value.(*cachedFile)
		cf.evicted = true
		if cf.refs == 0 {
			closeFile(cf.f)
		}
	}
	c.order.Init()
	clear(c.byCap)
}

func closeFile(f File) {
	if c, ok := f.(io.Closer); ok {
		c.Close()
	}
}
