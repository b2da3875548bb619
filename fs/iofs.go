package fs

import (
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"time"
)

// IOFS returns a read-only io/fs.FS view of the tree, for http.FileServerFS,
// http.ServeContent and fstest.TestFS. Every call uses ctx. Names follow
// io/fs rules (unrooted, "." is the root); symlinks are shown as such by
// ReadDir and Stat but not followed by Open.
func (f *FS) IOFS(ctx context.Context) iofs.FS { return ioFS{ctx: ctx, t: f} }

type ioFS struct {
	ctx context.Context
	t   *FS
}

var (
	_ iofs.StatFS    = ioFS{}
	_ iofs.ReadDirFS = ioFS{}
)

func (v ioFS) name(op, name string) (string, error) {
	if !iofs.ValidPath(name) {
		return "", &iofs.PathError{Op: op, Path: name, Err: iofs.ErrInvalid}
	}
	if name == "." {
		return "", nil
	}
	return name, nil
}

// Open opens a file for reading or a directory for ReadDir.
func (v ioFS) Open(name string) (iofs.File, error) {
	p, err := v.name("open", name)
	if err != nil {
		return nil, err
	}
	in, err := v.t.Stat(v.ctx, p)
	if err != nil {
		return nil, &iofs.PathError{Op: "open", Path: name, Err: unwrapPathErr(err)}
	}
	in.Name = baseName(name)
	switch in.Type {
	case TypeDir:
		return &ioDir{v: v, p: p, info: in}, nil
	case TypeSymlink:
		return nil, &iofs.PathError{Op: "open", Path: name, Err: ErrNotSupported}
	}
	h, err := v.t.Open(v.ctx, p)
	if err != nil {
		return nil, &iofs.PathError{Op: "open", Path: name, Err: unwrapPathErr(err)}
	}
	return &ioFile{ctx: v.ctx, h: h, info: in}, nil
}

// Stat returns the FileInfo of name.
func (v ioFS) Stat(name string) (iofs.FileInfo, error) {
	p, err := v.name("stat", name)
	if err != nil {
		return nil, err
	}
	in, err := v.t.Stat(v.ctx, p)
	if err != nil {
		return nil, &iofs.PathError{Op: "stat", Path: name, Err: unwrapPathErr(err)}
	}
	in.Name = baseName(name)
	return fileInfo{in}, nil
}

// ReadDir lists the directory name, sorted.
func (v ioFS) ReadDir(name string) ([]iofs.DirEntry, error) {
	p, err := v.name("readdir", name)
	if err != nil {
		return nil, err
	}
	infos, err := v.t.ReadDir(v.ctx, p)
	if err != nil {
		return nil, &iofs.PathError{Op: "readdir", Path: name, Err: unwrapPathErr(err)}
	}
	out := make([]iofs.DirEntry, len(infos))
	for i, in := range infos {
		out[i] = iofs.FileInfoToDirEntry(fileInfo{in})
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	var pe *iofs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func baseName(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[i+1:]
		}
	}
	return name
}

// fileInfo adapts Info to io/fs.FileInfo.
type fileInfo struct{ in Info }

func (i fileInfo) Name() string        { return i.in.Name }
func (i fileInfo) Size() int64         { return i.in.Size }
func (i fileInfo) Mode() iofs.FileMode { return i.in.FileMode() }
func (i fileInfo) ModTime() time.Time  { return i.in.Mtime }
func (i fileInfo) IsDir() bool         { return i.in.Type == TypeDir }
func (i fileInfo) Sys() any            { return i.in }
func (i fileInfo) String() string      { return iofs.FormatFileInfo(i) }

// ioFile is an open regular file: io.Reader, io.Seeker and io.ReaderAt.
type ioFile struct {
	ctx  context.Context
	h    *Handle
	info Info
	off  int64
}

func (f *ioFile) Stat() (iofs.FileInfo, error) { return fileInfo{f.info}, nil }
func (f *ioFile) Close() error                 { return f.h.Close(f.ctx) }

func (f *ioFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.h.ReadAt(f.ctx, p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *ioFile) ReadAt(p []byte, off int64) (int, error) { return f.h.ReadAt(f.ctx, p, off) }

func (f *ioFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.h.Stat().Size
	}
	if offset < 0 {
		return 0, &iofs.PathError{Op: "seek", Path: f.info.Name, Err: ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

// ioDir is an open directory: iofs.ReadDirFile.
type ioDir struct {
	v       ioFS
	p       string
	info    Info
	entries []iofs.DirEntry
	read    bool
	pos     int
}

func (d *ioDir) Stat() (iofs.FileInfo, error) { return fileInfo{d.info}, nil }
func (d *ioDir) Close() error                 { return nil }
func (d *ioDir) Read([]byte) (int, error) {
	return 0, &iofs.PathError{Op: "read", Path: d.info.Name, Err: ErrIsDir}
}

func (d *ioDir) ReadDir(n int) ([]iofs.DirEntry, error) {
	if !d.read {
		infos, err := d.v.t.ReadDir(d.v.ctx, d.p)
		if err != nil {
			return nil, err
		}
		for _, in := range infos {
			d.entries = append(d.entries, iofs.FileInfoToDirEntry(fileInfo{in}))
		}
		d.read = true
	}
	rest := d.entries[d.pos:]
	if n <= 0 {
		d.pos = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.pos += len(rest)
	return rest, nil
}
