package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/fs"
)

func newCpCmd(g *globals) *cobra.Command {
	var o cpOpts
	cmd := &cobra.Command{
		Use:   "cp [-r] [-p] SRC... DST",
		Short: "Copy files between this machine and your drive",
		Long: `cp copies without a mount. Grid paths are written with the sphere: prefix:
"sphere:/photos/a.jpg" is in your drive, "sphere:dir-rw:…/a.jpg" below a
directory cap; any other argument is a local path. Copies go local to grid,
grid to local, or grid to grid. When DST is an existing directory, each SRC
goes into it under its own name. -r copies directories and everything in
them (symlinks are copied as symlinks); -p keeps modification times. A
file is saved to the grid before cp moves on, and cp fails rather than
leave a file half-saved without saying so.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{errors.New("cp: want SRC... DST")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ts := newTrees(cmd.Context(), g)
			c := &copier{ts: ts, opts: o}
			err := c.run(args[:len(args)-1], args[len(args)-1])
			if err = errors.Join(err, ts.close()); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{
					"files": c.files, "dirs": c.dirs, "symlinks": c.links, "bytes": c.bytes})
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.recursive, "recursive", "r", false, "copy directories recursively")
	cmd.Flags().BoolVarP(&o.preserve, "preserve", "p", false, "keep modification times")
	return cmd
}

type cpOpts struct{ recursive, preserve bool }

// place is one end of a copy: a local path or a node in a tree.
type place struct {
	local string
	ref   treeRef
	tree  *fs.FS // nil for a local place
}

func (p place) String() string {
	if p.tree == nil {
		return p.local
	}
	return p.ref.String()
}

func (p place) join(name string) place {
	if p.tree == nil {
		p.local = filepath.Join(p.local, name)
	} else {
		p.ref = p.ref.join(name)
	}
	return p
}

func (p place) base() string {
	if p.tree == nil {
		return filepath.Base(p.local)
	}
	return p.ref.base()
}

// nodeInfo is what cp needs to know of a source or destination.
type nodeInfo struct {
	typ    fs.Type
	size   int64
	mode   uint32
	mtime  time.Time
	target string
}

type copier struct {
	ts                 *trees
	opts               cpOpts
	files, dirs, links int
	bytes              int64
}

// maxCopyDepth bounds recursion (a tree of caps can contain cycles).
const maxCopyDepth = 256

func (c *copier) place(arg string) (place, error) {
	ref, isTree, err := parseTreeArg(arg, false)
	if err != nil {
		return place{}, err
	}
	if !isTree {
		return place{local: arg}, nil
	}
	t, err := c.ts.get(ref)
	if err != nil {
		return place{}, fmt.Errorf("cp %s: %w", ref, err)
	}
	return place{ref: ref, tree: t}, nil
}

func (c *copier) run(srcArgs []string, dstArg string) error {
	dst, err := c.place(dstArg)
	if err != nil {
		return err
	}
	srcs := make([]place, 0, len(srcArgs))
	anyTree := dst.tree != nil
	for _, a := range srcArgs {
		p, err := c.place(a)
		if err != nil {
			return err
		}
		anyTree = anyTree || p.tree != nil
		srcs = append(srcs, p)
	}
	if !anyTree {
		return usageError{errors.New("cp: no grid path among the arguments (write them as sphere:/path or CAP/path)")}
	}
	dstInfo, dstErr := c.stat(dst, false)
	dstIsDir := dstErr == nil && dstInfo.typ == fs.TypeDir
	if dstErr != nil && !errors.Is(dstErr, iofs.ErrNotExist) {
		return fmt.Errorf("cp: %w", dstErr)
	}
	if len(srcs) > 1 && !dstIsDir {
		return fmt.Errorf("cp: copying several sources: target %s is not a directory", dst)
	}
	for _, src := range srcs {
		info, err := c.stat(src, true)
		if err != nil {
			return fmt.Errorf("cp: %w", err)
		}
		to := dst
		if dstIsDir {
			name := src.base()
			if name == "" || name == "." || name == "/" {
				name = ""
			}
			if name != "" {
				to = dst.join(name)
			}
		}
		if info.typ == fs.TypeDir && !c.opts.recursive {
			return fmt.Errorf("cp: %s is a directory (use -r)", src)
		}
		if err := c.copy(src, to, info, 0); err != nil {
			return err
		}
	}
	return nil
}

// stat describes p; follow resolves a symlink (for top-level sources).
func (c *copier) stat(p place, follow bool) (nodeInfo, error) {
	if p.tree == nil {
		st := os.Lstat
		if follow {
			st = os.Stat
		}
		fi, err := st(p.local)
		if err != nil {
			return nodeInfo{}, err
		}
		in := nodeInfo{size: fi.Size(), mode: uint32(fi.Mode().Perm()), mtime: fi.ModTime(), typ: fs.TypeFile}
		switch {
		case fi.IsDir():
			in.typ = fs.TypeDir
		case fi.Mode()&iofs.ModeSymlink != 0:
			in.typ = fs.TypeSymlink
			if in.target, err = os.Readlink(p.local); err != nil {
				return nodeInfo{}, err
			}
		case !fi.Mode().IsRegular():
			return nodeInfo{}, fmt.Errorf("%s: not a regular file, directory or symlink", p.local)
		}
		return in, nil
	}
	fi, err := p.tree.Stat(c.ts.ctx, p.ref.path)
	if err != nil {
		return nodeInfo{}, err
	}
	return nodeInfo{typ: fi.Type, size: fi.Size, mode: fi.Mode, mtime: fi.Mtime, target: fi.Target}, nil
}

func (c *copier) copy(src, dst place, in nodeInfo, depth int) error {
	if depth > maxCopyDepth {
		return fmt.Errorf("cp %s: deeper than %d levels", src, maxCopyDepth)
	}
	if err := c.ts.ctx.Err(); err != nil {
		return err
	}
	switch in.typ {
	case fs.TypeSymlink:
		if err := c.symlink(in.target, dst); err != nil {
			return fmt.Errorf("cp %s: %w", src, err)
		}
		c.links++
		return nil
	case fs.TypeFile:
		n, err := c.copyFile(src, dst, in)
		c.bytes += n
		if err != nil {
			return fmt.Errorf("cp %s to %s: %w", src, dst, err)
		}
		c.files++
		return nil
	}
	if err := c.mkdir(dst, in.mode); err != nil {
		return fmt.Errorf("cp %s: %w", src, err)
	}
	c.dirs++
	names, err := c.list(src)
	if err != nil {
		return fmt.Errorf("cp %s: %w", src, err)
	}
	for _, name := range names {
		child := src.join(name)
		cin, err := c.stat(child, false)
		if err != nil {
			return fmt.Errorf("cp: %w", err)
		}
		if err := c.copy(child, dst.join(name), cin, depth+1); err != nil {
			return err
		}
	}
	if c.opts.preserve {
		return c.setMtime(dst, in.mtime)
	}
	return nil
}

func (c *copier) list(p place) ([]string, error) {
	var names []string
	if p.tree == nil {
		ents, err := os.ReadDir(p.local)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names, nil
	}
	ents, err := p.tree.ReadDir(c.ts.ctx, p.ref.path)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names, nil
}

// mkdir makes dst; an existing directory is fine (cp -r into a tree that
// is already partly there).
func (c *copier) mkdir(dst place, mode uint32) error {
	if mode == 0 {
		mode = 0o755
	}
	var err error
	if dst.tree == nil {
		err = os.Mkdir(dst.local, iofs.FileMode(mode&0o777))
	} else {
		err = dst.tree.Mkdir(c.ts.ctx, dst.ref.path, mode&0o777)
	}
	if errors.Is(err, iofs.ErrExist) {
		if in, serr := c.stat(dst, false); serr == nil && in.typ == fs.TypeDir {
			return nil
		}
	}
	return err
}

func (c *copier) symlink(target string, dst place) error {
	if dst.tree == nil {
		return os.Symlink(target, dst.local)
	}
	return dst.tree.Symlink(c.ts.ctx, target, dst.ref.path)
}

func (c *copier) setMtime(dst place, t time.Time) error {
	if dst.tree == nil {
		return os.Chtimes(dst.local, time.Time{}, t)
	}
	return dst.tree.Utimens(c.ts.ctx, dst.ref.path, t)
}

// copyFile streams one file and returns the bytes copied. A grid
// destination is saved (uploaded) by its Close, whose error is returned.
// A local destination is written beside the target and renamed into place.
func (c *copier) copyFile(src, dst place, in nodeInfo) (int64, error) {
	ctx := c.ts.ctx
	var r io.Reader
	if src.tree == nil {
		f, err := os.Open(src.local)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		r = f
	} else {
		h, err := src.tree.Open(ctx, src.ref.path)
		if err != nil {
			return 0, err
		}
		defer h.Close(context.WithoutCancel(ctx))
		r = io.NewSectionReader(ctxReaderAt{ctx, h}, 0, in.size)
	}
	mode := in.mode & 0o777
	if mode == 0 {
		mode = 0o644
	}
	if dst.tree == nil {
		tmp, err := os.CreateTemp(filepath.Dir(dst.local), "."+filepath.Base(dst.local)+".sphere-*")
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(tmp, r)
		if err == nil {
			err = tmp.Chmod(iofs.FileMode(mode))
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil && c.opts.preserve {
			err = os.Chtimes(tmp.Name(), time.Time{}, in.mtime)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), dst.local)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
		return n, err
	}
	h, err := dst.tree.Create(ctx, dst.ref.path, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(&ctxWriter{ctx: ctx, h: h}, r)
	if cerr := h.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	if err == nil && c.opts.preserve {
		err = dst.tree.Utimens(ctx, dst.ref.path, in.mtime)
	}
	return n, err
}

// ctxReaderAt adapts a tree handle to io.ReaderAt.
type ctxReaderAt struct {
	ctx context.Context
	h   *fs.Handle
}

func (r ctxReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.h.ReadAt(r.ctx, p, off) }

// ctxWriter appends to a tree handle.
type ctxWriter struct {
	ctx context.Context
	h   *fs.Handle
	off int64
}

func (w *ctxWriter) Write(p []byte) (int, error) {
	n, err := w.h.WriteAt(w.ctx, p, w.off)
	w.off += int64(n)
	return n, err
}
