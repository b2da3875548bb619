package boltserver

import (
	"container/list"
	"os"
	"sync"
)

// fdCache keeps up to max share files open for reading, so a download of
// many blocks from one share opens it once. Entries are reference counted:
// evicting or forgetting a file closes it only after its last reader is done.
type fdCache struct {
	max int

	mu  sync.Mutex
	m   map[string]*fdEntry
	lru list.List // of *fdEntry, most recent at the front
	gen uint64    // bumped by forget: an open racing with it is not cached
}

type fdEntry struct {
	path string
	f    *os.File
	refs int
	dead bool // removed from the cache; close at refs == 0
	elem *list.Element
}

func newFDCache(max int) *fdCache { return &fdCache{max: max, m: make(map[string]*fdEntry)} }

// get returns an open file for path; the caller must put it back.
func (c *fdCache) get(path string) (*fdEntry, error) {
	if c.max <= 0 {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return &fdEntry{path: path, f: f, refs: 1, dead: true}, nil
	}
	c.mu.Lock()
	if e, ok := c.m[path]; ok {
		e.refs++
		c.lru.MoveToFront(e.elem)
		c.mu.Unlock()
		return e, nil
	}
	gen := c.gen
	c.mu.Unlock()
	f, err := os.Open(path) // outside the lock: opening may block on disk
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen { // a file was deleted or replaced meanwhile, maybe this one
		return &fdEntry{path: path, f: f, refs: 1, dead: true}, nil
	}
	if e, ok := c.m[path]; ok { // raced with another opener
		f.Close()
		e.refs++
		c.lru.MoveToFront(e.elem)
		return e, nil
	}
	e := &fdEntry{path: path, f: f, refs: 1}
	e.elem = c.lru.PushFront(e)
	c.m[path] = e
	for c.lru.Len() > c.max {
		c.dropLocked(c.lru.Back().Value.(*fdEntry))
	}
	return e, nil
}

// put releases a file returned by get.
func (c *fdCache) put(e *fdEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.dead && e.refs == 0 {
		e.f.Close()
	}
}

// forget drops path from the cache, e.g. before the file is deleted.
func (c *fdCache) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e, ok := c.m[path]; ok {
		c.dropLocked(e)
	}
}

func (c *fdCache) dropLocked(e *fdEntry) {
	delete(c.m, e.path)
	c.lru.Remove(e.elem)
	e.dead = true
	if e.refs == 0 {
		e.f.Close()
	}
}

// close closes every idle file; files in use close when put back.
func (c *fdCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m {
		c.dropLocked(e)
	}
}
