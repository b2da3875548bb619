package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/caps"
)

// ErrNotFound: no such path, ref or object in the site.
var ErrNotFound = errors.New("not found in site")

// Reader reads sites from a store, caching what is immutable (indexes,
// open bundles, trees) and each site's refs for RefsTTL.
type Reader struct {
	st      Store
	ctx     context.Context // bounds open bundles
	RefsTTL time.Duration

	mu      sync.Mutex
	sites   map[string]*siteState // by address string
	indexes map[string][]IndexEntry
	bundles map[string]File
	trees   map[ID][]TreeEntry
}

type siteState struct {
	mu      sync.Mutex
	fetched time.Time
	refsRaw string
	snap    *Snapshot
}

// Cache bounds (count of entries kept; the oldest half is dropped beyond).
const (
	maxCachedTrees   = 20000
	maxCachedIndexes = 1000
	maxCachedBundles = 1000
	maxCachedSites   = 1000
)

// NewReader returns a reader; ctx bounds the life of opened bundles.
func NewReader(ctx context.Context, st Store) *Reader {
	return &Reader{st: st, ctx: ctx, RefsTTL: time.Second, sites: map[string]*siteState{},
		indexes: map[string][]IndexEntry{}, bundles: map[string]File{}, trees: map[ID][]TreeEntry{}}
}

// Snapshot is one version of a site: its refs and every object reachable
// through its packs.
type Snapshot struct {
	r       *Reader
	Refs    *Refs
	objs    map[ID]objLoc
	bundles []File
}

type objLoc struct {
	Loc
	bundle int
}

// Snapshot returns the site's current snapshot (refs at most RefsTTL old).
func (r *Reader) Snapshot(ctx context.Context, address caps.Cap) (*Snapshot, error) {
	key := address.String()
	r.mu.Lock()
	s := r.sites[key]
	if s == nil {
		if len(r.sites) >= maxCachedSites {
			clear(r.sites)
		}
		s = &siteState{}
		r.sites[key] = s
	}
	r.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && time.Since(s.fetched) < r.RefsTTL {
		return s.snap, nil
	}
	raw, err := r.st.Retrieve(ctx, address)
	if err != nil {
		if s.snap != nil { // serve the last good version while the grid is unwell
			return s.snap, nil
		}
		return nil, fmt.Errorf("read site refs: %w", err)
	}
	s.fetched = time.Now()
	if s.snap != nil && string(raw) == s.refsRaw {
		return s.snap, nil
	}
	refs, err := ParseRefs(raw)
	if err != nil {
		return nil, err
	}
	snap, err := r.load(ctx, refs)
	if err != nil {
		return nil, err
	}
	s.snap, s.refsRaw = snap, string(raw)
	return snap, nil
}

// load opens every pack of refs: bundles and indexes all at once (each
// open waits a grace period for slow servers; in a row they add up).
func (r *Reader) load(ctx context.Context, refs *Refs) (*Snapshot, error) {
	snap := &Snapshot{r: r, Refs: refs, objs: map[ID]objLoc{}}
	n := len(refs.Packs)
	files := make([]File, n)
	indexes := make([][]byte, n)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(16)
	for i, p := range refs.Packs {
		eg.Go(func() error {
			f, err := r.bundle(ectx, p.Bundle)
			files[i] = f
			return err
		})
		eg.Go(func() error {
			b, err := r.indexBytes(ectx, p.Index)
			indexes[i] = b
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	for i, p := range refs.Packs {
		entries, err := r.index(ctx, p.Index, indexes[i], uint64(files[i].Size()))
		if err != nil {
			return nil, err
		}
		snap.bundles = append(snap.bundles, files[i])
		if len(snap.objs)+len(entries) > MaxSiteObjs {
			return nil, fmt.Errorf("site of over %d objects: %w", MaxSiteObjs, ErrFormat)
		}
		for _, e := range entries {
			if _, ok := snap.objs[e.ID]; !ok {
				snap.objs[e.ID] = objLoc{Loc: e.Loc, bundle: i}
			}
		}
	}
	return snap, nil
}

func (r *Reader) bundle(ctx context.Context, c caps.Cap) (File, error) {
	key := c.String()
	r.mu.Lock()
	f := r.bundles[key]
	r.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f, err := r.st.Open(r.ctx, c)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.bundles[key]; old != nil {
		f.Close()
		return old, nil
	}
	if len(r.bundles) >= maxCachedBundles {
		// Bundles in use by a snapshot stay usable: only our handle goes.
		for k := range r.bundles {
			delete(r.bundles, k)
			if len(r.bundles) < maxCachedBundles/2 {
				break
			}
		}
	}
	r.bundles[key] = f
	return f, nil
}

// indexBytes reads an index file unless its parsed form is cached (nil).
func (r *Reader) indexBytes(ctx context.Context, c caps.Cap) ([]byte, error) {
	r.mu.Lock()
	_, ok := r.indexes[c.String()]
	r.mu.Unlock()
	if ok {
		return nil, nil
	}
	f, err := r.st.Open(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	defer f.Close()
	if f.Size() > 12+MaxIndexObjs*indexEntry {
		return nil, fmt.Errorf("index of %d bytes: %w", f.Size(), ErrFormat)
	}
	b := make([]byte, f.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read index: %w", err)
	}
	return b, nil
}

// index parses (and caches) an index read by indexBytes.
func (r *Reader) index(ctx context.Context, c caps.Cap, b []byte, bundleSize uint64) ([]IndexEntry, error) {
	key := c.String()
	r.mu.Lock()
	e, ok := r.indexes[key]
	r.mu.Unlock()
	if ok {
		return e, nil
	}
	if b == nil { // evicted since indexBytes looked
		var err error
		if b, err = r.indexBytes(ctx, c); err != nil {
			return nil, err
		}
	}
	e, err := ParseIndex(b, bundleSize)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.indexes) >= maxCachedIndexes {
		clear(r.indexes)
	}
	r.indexes[key] = e
	r.mu.Unlock()
	return e, nil
}

// Has reports whether the snapshot holds the object.
func (s *Snapshot) Has(id ID) bool { _, ok := s.objs[id]; return ok }

// Len is the number of objects in the snapshot.
func (s *Snapshot) Len() int { return len(s.objs) }

// Stat returns where an object is.
func (s *Snapshot) Stat(id ID) (Loc, bool) { l, ok := s.objs[id]; return l.Loc, ok }

// Section returns a reader over an object's content.
func (s *Snapshot) Section(id ID) (*io.SectionReader, Loc, error) {
	l, ok := s.objs[id]
	if !ok {
		return nil, Loc{}, fmt.Errorf("object %s: %w", id, ErrNotFound)
	}
	return io.NewSectionReader(s.bundles[l.bundle], int64(l.Offset), int64(l.Size)), l.Loc, nil
}

// ReadObject reads a whole object of at most max bytes.
func (s *Snapshot) ReadObject(id ID, max int64) (byte, []byte, error) {
	sec, l, err := s.Section(id)
	if err != nil {
		return 0, nil, err
	}
	if sec.Size() > max {
		return 0, nil, fmt.Errorf("object %s of %d bytes: over %d: %w", id, sec.Size(), max, ErrFormat)
	}
	b := make([]byte, sec.Size())
	if _, err := io.ReadFull(sec, b); err != nil {
		return 0, nil, fmt.Errorf("read object %s: %w", id, err)
	}
	return l.Type, b, nil
}

// Tree reads and parses a tree (cached: trees are immutable).
func (s *Snapshot) Tree(id ID) ([]TreeEntry, error) {
	s.r.mu.Lock()
	t, ok := s.r.trees[id]
	s.r.mu.Unlock()
	if ok {
		return t, nil
	}
	typ, b, err := s.ReadObject(id, MaxTreeSize)
	if err != nil {
		return nil, err
	}
	if typ != TypeTree {
		return nil, fmt.Errorf("object %s is a %s, want a tree: %w", id, TypeName(typ), ErrFormat)
	}
	if t, err = ParseTree(b); err != nil {
		return nil, err
	}
	s.r.mu.Lock()
	if len(s.r.trees) >= maxCachedTrees {
		clear(s.r.trees)
	}
	s.r.trees[id] = t
	s.r.mu.Unlock()
	return t, nil
}

// RootTree returns the tree of the default branch's commit.
func (s *Snapshot) RootTree() (ID, error) {
	head, ok := s.Refs.HeadID()
	if !ok {
		return ID{}, fmt.Errorf("site has no commits yet: %w", ErrNotFound)
	}
	typ, b, err := s.ReadObject(head, MaxTreeSize)
	if err != nil {
		return ID{}, err
	}
	if typ != TypeCommit {
		return ID{}, fmt.Errorf("head %s is a %s, want a commit: %w", head, TypeName(typ), ErrFormat)
	}
	return CommitTree(b)
}

// Resolve walks path elements (already split and checked by SplitPath)
// from the root tree and returns the entry found; the root itself is a
// TreeEntry with Mode "40000" and an empty name.
func (s *Snapshot) Resolve(elems []string) (TreeEntry, error) {
	root, err := s.RootTree()
	if err != nil {
		return TreeEntry{}, err
	}
	cur := TreeEntry{Mode: "40000", ID: root}
	for _, el := range elems {
		if !cur.IsDir() {
			return TreeEntry{}, fmt.Errorf("%s: %w", el, ErrNotFound)
		}
		t, err := s.Tree(cur.ID)
		if err != nil {
			return TreeEntry{}, err
		}
		found := false
		for _, e := range t {
			if e.Name == el {
				cur, found = e, true
				break
			}
		}
		if !found {
			return TreeEntry{}, fmt.Errorf("%s: %w", el, ErrNotFound)
		}
	}
	return cur, nil
}

// SplitPath turns a decoded URL path into tree path elements. It refuses
// (ErrFormat) any "." or ".." element, NUL, backslash and empty inner
// elements, so no encoding can leave the site's tree; a trailing slash
// gives a final empty element "" (a directory request).
func SplitPath(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path %q: must start with /: %w", clip(p), ErrFormat)
	}
	if len(p) > 4096 {
		return nil, fmt.Errorf("path of %d bytes: %w", len(p), ErrFormat)
	}
	if p == "/" {
		return []string{""}, nil
	}
	els := strings.Split(p[1:], "/")
	for i, el := range els {
		if el == "" && i == len(els)-1 {
			continue
		}
		if el == "" || el == "." || el == ".." || strings.ContainsAny(el, "\x00\\") {
			return nil, fmt.Errorf("path %q: element %q not allowed: %w", clip(p), clip(el), ErrFormat)
		}
	}
	return els, nil
}

// IDs lists every object of the snapshot.
func (s *Snapshot) IDs() []ID {
	out := make([]ID, 0, len(s.objs))
	for id := range s.objs {
		out = append(out, id)
	}
	return out
}
