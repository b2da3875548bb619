package boltserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkPages walks the bbolt file at path with plain reads (no mmap) and
// checks what bbolt itself trusts: a valid meta page, every page reachable
// from the root inside the file and below the high-water mark, claiming its
// own id, of the type its parent expects, reached once (so no cycles), its
// elements and their keys and values inside the page, and the freelist's
// ids in range. A store that passes can be walked by bbolt without
// recursing forever or touching memory outside its mapping; damage this
// does not see (a changed value, a key out of order) gives wrong bytes or
// an error, which readers catch by their hashes. The layout is bbolt
// v1's on-disk format (go.etcd.io/bbolt internal/common), native byte
// order (little endian on the machines Sphere runs on).
func checkPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c := pageChecker{f: f, size: st.Size(), seen: map[uint64]bool{}}
	return c.run()
}

const (
	pageHeaderSize = 16
	elemSize       = 16
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagMeta       = 0x04
	flagFreelist   = 0x10
	leafBucketFlag = 0x01
	boltMagic      = 0xED0CDAED
	noFreelist     = ^uint64(0)
	metaSumLen     = 56 // bytes of the meta before its checksum
	maxDepth       = 64 // far above any real tree (fan-out is in the tens)
	maxPages       = 1 << 26
)

type pageChecker struct {
	f        *os.File
	size     int64
	pageSize int64
	hwm      uint64
	seen     map[uint64]bool
}

type boltMeta struct {
	pageSize, flags uint32
	root, freelist  uint64
	hwm, txid       uint64
}

func parseMeta(b []byte) (boltMeta, error) {
	var m boltMeta
	if len(b) < pageHeaderSize+metaSumLen+8 {
		return m, errors.New("meta page truncated")
	}
	if binary.LittleEndian.Uint16(b[8:]) != flagMeta {
		return m, errors.New("meta page has wrong type")
	}
	d := b[pageHeaderSize:]
	if binary.LittleEndian.Uint32(d) != boltMagic {
		return m, errors.New("meta page has wrong magic")
	}
	if v := binary.LittleEndian.Uint32(d[4:]); v != 2 {
		return m, fmt.Errorf("meta page has version %d, want 2", v)
	}
	h := fnv.New64a()
	h.Write(d[:metaSumLen])
	if h.Sum64() != binary.LittleEndian.Uint64(d[metaSumLen:]) {
		return m, errors.New("meta page checksum mismatch")
	}
	m.pageSize = binary.LittleEndian.Uint32(d[8:])
	m.flags = binary.LittleEndian.Uint32(d[12:])
	m.root = binary.LittleEndian.Uint64(d[16:])
	m.freelist = binary.LittleEndian.Uint64(d[32:])
	m.hwm = binary.LittleEndian.Uint64(d[40:])
	m.txid = binary.LittleEndian.Uint64(d[48:])
	return m, nil
}

func (c *pageChecker) run() error {
	head := make([]byte, 4096)
	n, err := c.f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	m0, err0 := parseMeta(head[:n])
	ps := int64(m0.pageSize)
	if err0 != nil {
		ps = int64(os.Getpagesize())
	}
	if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d", ps)
	}
	b1 := make([]byte, ps)
	n, err = c.f.ReadAt(b1, ps)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	m1, err1 := parseMeta(b1[:n])
	var m boltMeta
	switch {
	case err0 == nil && err1 == nil:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case err0 == nil:
		m = m0
	case err1 == nil:
		m = m1
	default:
		return fmt.Errorf("both meta pages invalid: %v; %v", err0, err1)
	}
	if int64(m.pageSize) != ps {
		return fmt.Errorf("meta pages disagree on the page size")
	}
	c.pageSize = ps
	c.hwm = m.hwm
	if c.hwm < 3 || c.hwm > maxPages || int64(c.hwm)*ps > c.size {
		return fmt.Errorf("high-water mark %d pages outside the file of %d bytes", c.hwm, c.size)
	}
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	return c.checkTree(m.root, 0)
}

// readPage reads page id with its overflow pages, checking its header.
func (c *pageChecker) readPage(id uint64) ([]byte, uint16, error) {
	if id < 2 || id >= c.hwm {
		return nil, 0, fmt.Errorf("page id %d outside 2..%d", id, c.hwm-1)
	}
	if c.seen[id] {
		return nil, 0, fmt.Errorf("page %d referenced twice", id)
	}
	c.seen[id] = true
	hdr := make([]byte, pageHeaderSize)
	if _, err := c.f.ReadAt(hdr, int64(id)*c.pageSize); err != nil {
		return nil, 0, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, 0, fmt.Errorf("page %d claims to be page %d", id, got)
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= c.hwm {
		return nil, 0, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	for i := uint64(1); i <= overflow; i++ {
		if c.seen[id+i] {
			return nil, 0, fmt.Errorf("page %d referenced twice", id+i)
		}
		c.seen[id+i] = true
	}
	p := make([]byte, int64(overflow+1)*c.pageSize)
	if _, err := c.f.ReadAt(p, int64(id)*c.pageSize); err != nil {
		return nil, 0, fmt.Errorf("page %d: %w", id, err)
	}
	return p, flags, nil
}

func (c *pageChecker) checkFreelist(id uint64) error {
	p, flags, err := c.readPage(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != flagFreelist {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	count := uint64(binary.LittleEndian.Uint16(p[10:]))
	ids := p[pageHeaderSize:]
	if count == 0xFFFF {
		if len(ids) < 8 {
			return fmt.Errorf("freelist page %d truncated", id)
		}
		count = binary.LittleEndian.Uint64(ids)
		ids = ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return fmt.Errorf("freelist page %d: %d ids do not fit", id, count)
	}
	for i := range count {
		if v := binary.LittleEndian.Uint64(ids[i*8:]); v < 2 || v >= c.hwm {
			return fmt.Errorf("freelist page %d: free page id %d out of range", id, v)
		}
	}
	return nil
}

// checkTree checks the bucket tree rooted at page id.
func (c *pageChecker) checkTree(id uint64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, maxDepth)
	}
	p, flags, err := c.readPage(id)
	if err != nil {
		return err
	}
	switch flags {
	case flagBranch:
		count := int(binary.LittleEndian.Uint16(p[10:]))
		if count == 0 || pageHeaderSize+count*elemSize > len(p) {
			return fmt.Errorf("branch page %d: %d elements do not fit", id, count)
		}
		for i := range count {
			e := pageHeaderSize + i*elemSize
			pos, ksize := int64(binary.LittleEndian.Uint32(p[e:])), int64(binary.LittleEndian.Uint32(p[e+4:]))
			if int64(e)+pos+ksize > int64(len(p)) {
				return fmt.Errorf("branch page %d: element %d outside the page", id, i)
			}
			if err := c.checkTree(binary.LittleEndian.Uint64(p[e+8:]), depth+1); err != nil {
				return err
			}
		}
		return nil
	case flagLeaf:
		return c.checkLeaf(p, fmt.Sprintf("leaf page %d", id), depth)
	default:
		return fmt.Errorf("page %d has type %#x, want branch or leaf", id, flags)
	}
}

// checkLeaf checks a leaf page's elements (p is the page, or an inline
// bucket's page) and the buckets its bucket entries hold.
func (c *pageChecker) checkLeaf(p []byte, what string, depth int) error {
	if len(p) < pageHeaderSize {
		return fmt.Errorf("%s truncated", what)
	}
	count := int(binary.LittleEndian.Uint16(p[10:]))
	if pageHeaderSize+count*elemSize > len(p) {
		return fmt.Errorf("%s: %d elements do not fit", what, count)
	}
	for i := range count {
		e := pageHeaderSize + i*elemSize
		flags := binary.LittleEndian.Uint32(p[e:])
		pos, ksize, vsize := int64(binary.LittleEndian.Uint32(p[e+4:])), int64(binary.LittleEndian.Uint32(p[e+8:])), int64(binary.LittleEndian.Uint32(p[e+12:]))
		end := int64(e) + pos + ksize + vsize
		if end > int64(len(p)) {
			return fmt.Errorf("%s: element %d outside the page", what, i)
		}
		if flags&leafBucketFlag == 0 {
			continue
		}
		v := p[int64(e)+pos+ksize : end]
		if len(v) < 16 {
			return fmt.Errorf("%s: bucket entry %d too short", what, i)
		}
		if root := binary.LittleEndian.Uint64(v); root != 0 {
			if err := c.checkTree(root, depth+1); err != nil {
				return err
			}
			continue
		}
		in := v[16:]
		if len(in) < pageHeaderSize || binary.LittleEndian.Uint16(in[8:]) != flagLeaf {
			return fmt.Errorf("%s: inline bucket %d malformed", what, i)
		}
		if depth+1 > maxDepth {
			return fmt.Errorf("%s: buckets nested deeper than %d", what, maxDepth)
		}
		if err := c.checkLeaf(in, fmt.Sprintf("%s inline bucket %d", what, i), depth+1); err != nil {
			return err
		}
	}
	return nil
}
