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
type wbuf struct {
	dir  string
	mem  []byte
	file *os.File
}

func newWbuf(dir string) *wbuf { return &wbuf{dir: dir} }

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
	if b.file != nil {
		return b.file.Close()
	}
	return nil
}
