package fs

import (
	"fmt"
	"io"
	"os"
)

// memLimit is how large a write-back copy may grow in memory before it
// moves to a file in the cache directory. Small files (the common case of
// cp -r, git, editors) then cost no file system calls of their own.
const memLimit = 1 << 20

// wbuf is the write-back copy of one file: in memory while small, then a
// temporary file (unlinked at once: nothing to clean up after a crash).
//
// A big saved file opened for writing gets a lazy copy (newLazyWbuf): a
// sparse temporary file holding only the ranges written, the rest read
// from the saved file on the grid when needed, so a 4 KiB write into a
// 1 GiB file costs 4 KiB, not a download of the whole file.
type wbuf struct {
	dir  string
	mem  []byte
	file *os.File

	// Lazy copy only (base != nil): bytes outside have are read from base
	// below baseLen and are zero above it; size is the logical size.
	base    io.ReaderAt
	baseLen int64
	size    int64
	have    [][2]int64 // sorted, disjoint, non-adjacent [start, end) ranges held in file
	release func()
}

func newWbuf(dir string) *wbuf { return &wbuf{dir: dir} }

// newLazyWbuf returns a lazy copy of the first size bytes of base; release
// is called by Close.
func newLazyWbuf(dir string, base io.ReaderAt, size int64, release func()) (*wbuf, error) {
	f, err := os.CreateTemp(dir, "w-")
	if err != nil {
		return nil, fmt.Errorf("write-back cache: %w", err)
	}
	os.Remove(f.Name())
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("write-back cache: %w", err)
	}
	return &wbuf{dir: dir, file: f, base: base, baseLen: size, size: size, release: release}, nil
}

// addHave records [start, end) as held in the file.
func (b *wbuf) addHave(start, end int64) {
	out := make([][2]int64, 0, len(b.have)+1)
	for _, r := range b.have {
		switch {
		case r[1] < start:
			out = append(out, r)
		case r[0] > end:
			if start <= end {
				out = append(out, [2]int64{start, end})
				start, end = 1, 0 // inserted
			}
			out = append(out, r)
		default: // overlaps or touches: merge
			start, end = min(start, r[0]), max(end, r[1])
		}
	}
	if start <= end {
		out = append(out, [2]int64{start, end})
	}
	b.have = out
}

// readLazy fills p from offset off (within size) of a lazy copy.
func (b *wbuf) readLazy(p []byte, off int64) error {
	for len(p) > 0 {
		// The held range containing off, or the next one after it.
		next := int64(-1)
		inHave := false
		for _, r := range b.have {
			if r[0] <= off && off < r[1] {
				inHave, next = true, r[1]
				break
			}
			if r[0] > off {
				next = r[0]
				break
			}
		}
		n := int64(len(p))
		if next >= 0 && next-off < n {
			n = next - off
		}
		chunk := p[:n]
		switch {
		case inHave:
			if _, err := b.file.ReadAt(chunk, off); err != nil && err != io.EOF {
				return err
			}
		case off >= b.baseLen:
			clear(chunk)
		default:
			m := min(n, b.baseLen-off)
			if _, err := b.base.ReadAt(chunk[:m], off); err != nil && err != io.EOF {
				return fmt.Errorf("write-back cache: read saved file: %w", err)
			}
			clear(chunk[m:])
			n = int64(len(chunk))
		}
		p = p[n:]
		off += n
	}
	return nil
}

func (b *wbuf) spill(need int64) error {
	if b.file != nil || need <= memLimit {
		return nil
	}
	f, err := os.CreateTemp(b.dir, "w-")
	if err != nil {
		return fmt.Errorf("write-back cache: %w", err)
	}
	os.Remove(f.Name())
	if _, err := f.WriteAt(b.mem, 0); err != nil {
		f.Close()
		return fmt.Errorf("write-back cache: %w", err)
	}
	b.file, b.mem = f, nil
	return nil
}

// ReadAt implements io.ReaderAt.
func (b *wbuf) ReadAt(p []byte, off int64) (int, error) {
	if b.base != nil {
		if off >= b.size {
			return 0, io.EOF
		}
		n := min(int64(len(p)), b.size-off)
		if err := b.readLazy(p[:n], off); err != nil {
			return 0, err
		}
		if n < int64(len(p)) {
			return int(n), io.EOF
		}
		return int(n), nil
	}
	if b.file != nil {
		return b.file.ReadAt(p, off)
	}
	if off >= int64(len(b.mem)) {
		return 0, io.EOF
	}
	n := copy(p, b.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt implements io.WriterAt, growing the copy as needed.
func (b *wbuf) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if b.base != nil {
		n, err := b.file.WriteAt(p, off)
		if n > 0 {
			b.addHave(off, off+int64(n))
			b.size = max(b.size, off+int64(n))
		}
		return n, err
	}
	if err := b.spill(end); err != nil {
		return 0, err
	}
	if b.file != nil {
		return b.file.WriteAt(p, off)
	}
	if end > int64(len(b.mem)) {
		if end > int64(cap(b.mem)) {
			nb := make([]byte, end, max(end, 2*int64(cap(b.mem))))
			copy(nb, b.mem)
			b.mem = nb
		} else {
			clear(b.mem[len(b.mem):end])
			b.mem = b.mem[:end]
		}
	}
	return copy(b.mem[off:], p), nil
}

// Truncate sets the size.
func (b *wbuf) Truncate(size int64) error {
	if b.base != nil {
		if err := b.file.Truncate(size); err != nil {
			return err
		}
		if size < b.size {
			var keep [][2]int64
			for _, r := range b.have {
				if r[0] < size {
					keep = append(keep, [2]int64{r[0], min(r[1], size)})
				}
			}
			b.have = keep
			b.baseLen = min(b.baseLen, size)
		}
		b.size = size
		return nil
	}
	if err := b.spill(size); err != nil {
		return err
	}
	if b.file != nil {
		return b.file.Truncate(size)
	}
	if size <= int64(len(b.mem)) {
		b.mem = b.mem[:size]
		return nil
	}
	_, err := b.WriteAt(make([]byte, size-int64(len(b.mem))), int64(len(b.mem)))
	return err
}

// Close releases the copy.
func (b *wbuf) Close() error {
	b.mem = nil
	if b.release != nil {
		b.release()
		b.release = nil
	}
	if b.file != nil {
		return b.file.Close()
	}
	return nil
}
