package main

// Shared by the tree verbs (ls, mkdir, cp, rm, mv, share): how a command
// line names a place in a tree, and opening the trees it names.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
)

// treePrefix starts every grid argument: "sphere:/photos/a.jpg" is a path in
// the user's drive, "sphere:dir-rw:…/photos" a path below a cap.
const treePrefix = "sphere:"

// treeRef names a node in a tree: a path below the user's root directory
// (capStr empty) or below the directory a cap names.
type treeRef struct {
	capStr string // "" means the user's root directory
	path   string // slash-separated, relative, no "." or ".."; "" is the top
}

// String gives the ref back in the form the user writes it.
func (r treeRef) String() string {
	if r.capStr == "" {
		return treePrefix + "/" + r.path
	}
	if r.path == "" {
		return r.capStr
	}
	return r.capStr + "/" + r.path
}

// base is the last path element ("" at the top).
func (r treeRef) base() string {
	if i := strings.LastIndexByte(r.path, '/'); i >= 0 {
		return r.path[i+1:]
	}
	return r.path
}

// join appends name to the ref's path.
func (r treeRef) join(name string) treeRef {
	if r.path == "" {
		r.path = name
	} else {
		r.path += "/" + name
	}
	return r
}

// parseTreeArg reads a grid argument. With plainIsTree, an argument without
// the sphere: prefix is a path in the user's drive ("/photos" or "photos");
// without it, such an argument is not a grid argument (isTree false), as in
// cp where plain paths are local. A cap that does not parse is errBadCap; a
// path with ".." is a usage error.
func parseTreeArg(s string, plainIsTree bool) (ref treeRef, isTree bool, err error) {
	rest, hasPrefix := strings.CutPrefix(s, treePrefix)
	switch {
	case !hasPrefix && !plainIsTree:
		return treeRef{}, false, nil
	case !hasPrefix:
		ref.path = s
	case rest == "" || strings.HasPrefix(rest, "/"):
		ref.path = rest
	default:
		capPart, p, _ := strings.Cut(rest, "/")
		ref.capStr = treePrefix + capPart
		if _, err := parseCap(ref.capStr); err != nil {
			return treeRef{}, true, err
		}
		ref.path = p
	}
	clean, err := cleanTreePath(ref.path)
	if err != nil {
		return treeRef{}, true, usageError{fmt.Errorf("%q: %w", s, err)}
	}
	ref.path = clean
	return ref, true, nil
}

// cleanTreePath drops empty and "." elements and refuses "..": a tree has
// no way above the directory a cap names, and pretending otherwise would
// hide mistakes.
func cleanTreePath(p string) (string, error) {
	var out []string
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".":
		case "..":
			return "", errors.New(`path must not contain ".."`)
		default:
			if strings.IndexByte(el, 0) >= 0 {
				return "", errors.New("path must not contain NUL")
			}
			out = append(out, el)
		}
	}
	return strings.Join(out, "/"), nil
}

// trees opens each distinct tree a command names once, and closes them all
// (saving every change) at the end.
type trees struct {
	ctx     context.Context
	g       *globals
	session *treeSession
	open    map[string]*fs.FS // by capStr ("" = user's root)
}

func newTrees(ctx context.Context, g *globals) *trees {
	return &trees{ctx: ctx, g: g, open: map[string]*fs.FS{}}
}

// get returns the tree ref lives in, opening it on first use.
func (ts *trees) get(ref treeRef) (*fs.FS, error) {
	if t, ok := ts.open[ref.capStr]; ok {
		return t, nil
	}
	if ts.session == nil {
		s, err := openTreeSession(ts.ctx)
		if err != nil {
			return nil, err
		}
		ts.session = s
	}
	var root caps.Cap
	if ref.capStr == "" {
		c, err := ts.session.userRoot(ts.ctx)
		if err != nil {
			return nil, err
		}
		root = c
	} else {
		c, err := parseCap(ref.capStr)
		if err != nil {
			return nil, err
		}
		if !ts.session.grid.IsDir(c) {
			return nil, fmt.Errorf("%s: a %s cap names a file, not a directory (use `sphere get CAP`): %w",
				clipCap(ref.capStr), c.Kind(), fs.ErrNotDir)
		}
		root = c
	}
	t, err := fs.New(ts.ctx, ts.session.grid, root, fs.Options{FlushDelay: -1})
	if err != nil {
		return nil, err
	}
	ts.open[ref.capStr] = t
	return t, nil
}

// close saves and closes every tree, then the grid; the first error wins,
// and a failed save is never silent.
func (ts *trees) close() error {
	var errs []error
	for _, t := range ts.open {
		if err := t.Close(context.WithoutCancel(ts.ctx)); err != nil {
			errs = append(errs, err)
		}
	}
	ts.open = map[string]*fs.FS{}
	if ts.session != nil {
		ts.session.close()
		ts.session = nil
	}
	return errors.Join(errs...)
}

// clipCap shortens a cap for messages, so errors do not spill whole keys.
func clipCap(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// treeSession is the grid the tree verbs work on, opened once per command.
type treeSession struct {
	grid     fs.Grid
	userRoot func(ctx context.Context) (caps.Cap, error)
	close    func()
}

// openTreeSession opens the home and its grid client.
func openTreeSession(ctx context.Context) (*treeSession, error) {
	h, err := openHome()
	if err != nil {
		return nil, err
	}
	cl, closeFn, err := openClient(ctx, h)
	if err != nil {
		return nil, err
	}
	g := fs.FromClient(cl)
	return &treeSession{
		grid:     g,
		userRoot: func(ctx context.Context) (caps.Cap, error) { return userRootCap(ctx, h, g) },
		close:    closeFn,
	}, nil
}
