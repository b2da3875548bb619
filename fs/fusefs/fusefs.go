// Package fusefs shows an fs tree as a folder through go-fuse v2: one node
// type implementing go-fuse's one-method interfaces over fs.FS, and errno
// translation (fs.ToErrno) at this edge only.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sphere-grid/sphere/fs"
)

// Extended attributes every file and directory carries, for sharing from
// the mount: the node's cap and its read cap.
const (
	XattrCap     = "user.sphere.cap"
	XattrReadCap = "user.sphere.readcap"
)

// CacheTime is how long the kernel trusts names and attributes it got from
// us. A read-cap mount sees the owner's fsynced change within CacheTime
// plus the tree's DirTTL (1 s each by default: about 2 s).
const CacheTime = time.Second

// Options configure Mount.
type Options struct {
	// CacheTime overrides the kernel's entry and attribute timeout
	// (zero: CacheTime).
	CacheTime time.Duration
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Mount mounts t at dir with DirectMount (falling back to fusermount) and
// returns the server; call Unmount on it (or `fusermount -u dir`), then
// t.Close to save everything.
func Mount(dir string, t *fs.FS, opts Options) (*fuse.Server, error) {
	ct := opts.CacheTime
	if ct == 0 {
		ct = CacheTime
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	root := &Node{t: t, log: log.With("component", "fusefs")}
	var noNeg time.Duration
	srv, err := gofs.Mount(dir, root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:  true,
			FsName:       "sphere",
			Name:         "sphere",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			Debug:        opts.Debug,
		},
		EntryTimeout:    &ct,
		AttrTimeout:     &ct,
		NegativeTimeout: &noNeg,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return srv, nil
}

// Node is one file, directory or symlink of the mounted tree. It keeps no
// state but the tree: it is found by its path in go-fuse's inode tree.
type Node struct {
	gofs.Inode
	t   *fs.FS
	log *slog.Logger
}

var (
	_ gofs.NodeLookuper    = (*Node)(nil)
	_ gofs.NodeGetattrer   = (*Node)(nil)
	_ gofs.NodeSetattrer   = (*Node)(nil)
	_ gofs.NodeReaddirer   = (*Node)(nil)
	_ gofs.NodeMkdirer     = (*Node)(nil)
	_ gofs.NodeCreater     = (*Node)(nil)
	_ gofs.NodeOpener      = (*Node)(nil)
	_ gofs.NodeUnlinker    = (*Node)(nil)
	_ gofs.NodeRmdirer     = (*Node)(nil)
	_ gofs.NodeRenamer     = (*Node)(nil)
	_ gofs.NodeSymlinker   = (*Node)(nil)
	_ gofs.NodeReadlinker  = (*Node)(nil)
	_ gofs.NodeStatfser    = (*Node)(nil)
	_ gofs.NodeGetxattrer  = (*Node)(nil)
	_ gofs.NodeListxattrer = (*Node)(nil)
	_ gofs.NodeFsyncer     = (*Node)(nil)
	_ gofs.FileReader      = (*handle)(nil)
	_ gofs.FileWriter      = (*handle)(nil)
	_ gofs.FileFlusher     = (*handle)(nil)
	_ gofs.FileFsyncer     = (*handle)(nil)
	_ gofs.FileReleaser    = (*handle)(nil)
	_ gofs.NodeOnForgetter = (*Node)(nil)
	_ gofs.InodeEmbedder   = (*Node)(nil)
)

// path returns the node's path in the tree. An orphaned node (its name
// was removed or replaced) gives ok=false: it must not be resolved by a
// partial path, which could name another node.
func (n *Node) path() (p string, ok bool) {
	var segs []string
	root := n.Root()
	for in := &n.Inode; in != root; {
		name, parent := in.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		in = parent
	}
	slices.Reverse(segs)
	return strings.Join(segs, "/"), true
}

// orphan is the path of no node: every lookup of it fails with ENOENT.
const orphan = "\x00orphan"

// p returns the node's path, or orphan.
func (n *Node) p() string {
	if p, ok := n.path(); ok {
		return p
	}
	return orphan
}

func (n *Node) child(name string) string { return path.Join(n.p(), name) }

// sameType reports whether in has the type this node was created with; a
// path that now names something else means the node is stale.
func (n *Node) sameType(in fs.Info) bool {
	return n.IsRoot() || typeBits(in.Type) == n.StableAttr().Mode
}

// errno translates err, logging unexpected ones (I/O failures) once here.
func (n *Node) errno(op string, err error) syscall.Errno {
	e := fs.ToErrno(err)
	if e == syscall.EIO {
		n.log.Warn("Operation failed", "op", op, "err", err)
	}
	return e
}

func typeBits(t fs.Type) uint32 {
	switch t {
	case fs.TypeDir:
		return syscall.S_IFDIR
	case fs.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

func fillAttr(in fs.Info, out *fuse.Attr) {
	out.Mode = typeBits(in.Type) | in.Mode&0o7777
	out.Size = uint64(in.Size)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 1 << 17
	out.Nlink = 1
	if in.Type == fs.TypeDir {
		out.Nlink = 2
	}
	mt := in.Mtime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	out.SetTimes(&mt, &mt, &mt)
	out.Uid, out.Gid = owner.uid, owner.gid
}

// owner is the mounting user, who owns every node.
var owner = struct{ uid, gid uint32 }{uint32(os.Getuid()), uint32(os.Getgid())}

// newChild returns the inode for name, reusing the known one when its type
// is unchanged so inode numbers stay stable.
func (n *Node) newChild(ctx context.Context, name string, in fs.Info) *gofs.Inode {
	mode := typeBits(in.Type)
	if ch := n.GetChild(name); ch != nil && ch.StableAttr().Mode == mode {
		return ch
	}
	return n.NewInode(ctx, &Node{t: n.t, log: n.log}, gofs.StableAttr{Mode: mode})
}

// Lookup finds name in this directory.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, err := n.t.Stat(ctx, n.child(name))
	if err != nil {
		return nil, n.errno("lookup", err)
	}
	fillAttr(in, &out.Attr)
	return n.newChild(ctx, name, in), 0
}

// Getattr reports the node's attributes; through an open handle it works
// also after the file was unlinked.
func (n *Node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if _, ok := f.(refused); ok {
		fillAttr(fs.Info{Type: fs.TypeFile, Mode: 0o644}, &out.Attr)
		out.Nlink = 0
		return 0
	}
	if h, ok := f.(*handle); ok {
		fillAttr(h.h.Stat(), &out.Attr)
		if h.h.Unlinked() {
			out.Nlink = 0
		}
		return 0
	}
	in, err := n.t.Stat(ctx, n.p())
	if err != nil {
		return n.errno("getattr", err)
	}
	if !n.sameType(in) {
		return syscall.ENOENT
	}
	fillAttr(in, &out.Attr)
	return 0
}

// Setattr handles truncate, chmod and utimens; ownership changes are
// accepted and ignored (every node belongs to the mounting user).
func (n *Node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := f.(refused); ok || n.t.ReadOnly() && n.StableAttr().Mode == syscall.S_IFREG && n.isRefused(ctx) {
		// O_TRUNC of a refused create: let the open succeed, the write fails.
		if size, ok := in.GetSize(); ok && size == 0 {
			fillAttr(fs.Info{Type: fs.TypeFile, Mode: 0o644}, &out.Attr)
			return 0
		}
		return syscall.EROFS
	}
	p := n.p()
	if size, ok := in.GetSize(); ok {
		var err error
		if h, ok := f.(*handle); ok {
			err = h.h.Truncate(ctx, int64(size))
		} else {
			sctx, cancel := saveCtx(ctx) // truncate by path saves the file
			err = n.t.Truncate(sctx, p, int64(size))
			cancel()
		}
		if err != nil {
			return n.errno("truncate", err)
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := n.t.Chmod(ctx, p, mode&0o7777); err != nil {
			return n.errno("chmod", err)
		}
	}
	if mt, ok := in.GetMTime(); ok {
		if err := n.t.Utimens(ctx, p, mt); err != nil {
			return n.errno("utimens", err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// Readdir lists the directory.
func (n *Node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	infos, err := n.t.ReadDir(ctx, n.p())
	if err != nil {
		return nil, n.errno("readdir", err)
	}
	ents := make([]fuse.DirEntry, len(infos))
	for i, in := range infos {
		ents[i] = fuse.DirEntry{Name: in.Name, Mode: typeBits(in.Type)}
	}
	return gofs.NewListDirStream(ents), 0
}

// Mkdir creates a directory.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := n.child(name)
	sctx, cancel := saveCtx(ctx) // creating the directory on the grid must not half-happen
	defer cancel()
	if err := n.t.Mkdir(sctx, p, mode&0o7777); err != nil {
		return nil, n.errno("mkdir", err)
	}
	return n.Lookup(ctx, name, out)
}

// Create creates and opens a file.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.t.ReadOnly() {
		return n.refuseCreate(ctx, name, mode, out)
	}
	h, err := n.t.OpenFile(ctx, n.child(name), int(flags)|os.O_CREATE, mode&0o7777)
	if err != nil {
		return nil, nil, 0, n.errno("create", err)
	}
	in := h.Stat()
	in.Type = fs.TypeFile
	fillAttr(in, &out.Attr)
	return n.newChild(ctx, name, in), &handle{h: h, n: n}, 0, 0
}

// Open opens the file. The kernel's page cache is dropped on open (no
// FOPEN_KEEP_CACHE), so a reopened file shows its current content.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.t.ReadOnly() && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		if _, err := n.t.Stat(ctx, n.p()); err != nil {
			// The kernel still holds the name of a refused create.
			name, parent := n.Parent()
			var pn *Node
			if parent != nil {
				pn, _ = parent.Operations().(*Node)
			}
			return refused{parent: pn, name: name}, fuse.FOPEN_DIRECT_IO, 0
		}
		return nil, 0, syscall.EROFS
	}
	h, err := n.t.OpenFile(ctx, n.p(), int(flags)&^(os.O_CREATE|os.O_EXCL), 0)
	if errors.Is(err, fs.ErrIsDir) || errors.Is(err, fs.ErrNotSupported) {
		return nil, 0, syscall.ENOENT // the path now names another node: this one is gone
	}
	if err != nil {
		return nil, 0, n.errno("open", err)
	}
	return &handle{h: h, n: n}, 0, 0
}

// Unlink removes a file or symlink.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.errno("unlink", n.t.Unlink(ctx, n.child(name)))
}

// Rmdir removes an empty directory.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.errno("rmdir", n.t.Rmdir(ctx, n.child(name)))
}

// Rename moves a node, also across directories. RENAME_NOREPLACE is
// honoured; RENAME_EXCHANGE is not supported.
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	const renameNoReplace, renameExchange = 1, 2
	if flags&renameExchange != 0 {
		return syscall.ENOTSUP
	}
	np := path.Join(newParent.(*Node).p(), newName)
	if flags&renameNoReplace != 0 {
		if _, err := n.t.Stat(ctx, np); err == nil {
			return syscall.EEXIST
		}
	}
	return n.errno("rename", n.t.Rename(ctx, n.child(name), np))
}

// Symlink creates a symbolic link.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if err := n.t.Symlink(ctx, target, n.child(name)); err != nil {
		return nil, n.errno("symlink", err)
	}
	return n.Lookup(ctx, name, out)
}

// Readlink returns a symlink's target.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.t.Readlink(ctx, n.p())
	if err != nil {
		return nil, n.errno("readlink", err)
	}
	return []byte(t), 0
}

// Statfs reports the grid's capacity.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s, err := n.t.Statfs(ctx)
	if err != nil {
		return n.errno("statfs", err)
	}
	const bs = 4096
	out.Bsize, out.Frsize, out.NameLen = bs, bs, 255
	out.Blocks, out.Bfree, out.Bavail = s.Total/bs, s.Free/bs, s.Free/bs
	out.Files, out.Ffree = 1<<32, 1<<31
	return 0
}

// Getxattr answers user.sphere.cap and user.sphere.readcap.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != XattrCap && attr != XattrReadCap {
		return 0, syscall.ENODATA
	}
	c, rc, err := n.t.Caps(ctx, n.p())
	if errors.Is(err, fs.ErrNotSupported) {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, n.errno("getxattr", err)
	}
	v := rc.String()
	if attr == XattrCap {
		v = c.String()
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr lists the two sharing attributes (none on symlinks).
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	in, err := n.t.Stat(ctx, n.p())
	if err != nil {
		return 0, n.errno("listxattr", err)
	}
	var v []byte
	if in.Type != fs.TypeSymlink {
		v = []byte(XattrCap + "\x00" + XattrReadCap + "\x00")
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Fsync without a handle (a directory, or fsync on an O_PATH fd) makes
// everything pending in the tree durable: on this machine's disk when the
// tree has a write-back journal, else on the grid.
func (n *Node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	if n.t.ReadOnly() {
		return 0 // nothing can be pending
	}
	ctx, cancel := saveCtx(ctx)
	defer cancel()
	return n.errno("fsync", n.t.SyncLocal(ctx))
}

// Setxattr refuses: only the two sharing attributes exist, and they are
// derived. ENOTSUP lets cp -a and rsync -X carry on.
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.noXattrChange(attr)
}

// Removexattr refuses like Setxattr.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.noXattrChange(attr)
}

func (n *Node) noXattrChange(attr string) syscall.Errno {
	switch {
	case n.t.ReadOnly():
		return syscall.EROFS
	case attr == XattrCap || attr == XattrReadCap:
		return syscall.EPERM
	}
	return syscall.ENOTSUP
}

// Allocate supports plain preallocation (it extends the file like
// truncate) and FALLOC_FL_KEEP_SIZE (a no-op: there are no blocks to
// reserve locally that the upload would keep).
func (n *Node) Allocate(ctx context.Context, f gofs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	const keepSize = 1
	h, ok := f.(*handle)
	switch {
	case n.t.ReadOnly():
		return syscall.EROFS
	case !ok:
		return syscall.EBADF
	case mode == keepSize:
		return 0
	case mode != 0:
		return syscall.EOPNOTSUPP
	}
	if end := int64(off + size); end > h.h.Stat().Size {
		return n.errno("allocate", h.h.Truncate(ctx, end))
	}
	return 0
}

// OnForget is a no-op: nodes keep no state of their own.
func (n *Node) OnForget() {}

// refuseCreate answers a create on a read-only tree. The open succeeds but
// the file is never added: every write, flush (close) and fsync fails with
// EROFS, and the kernel is told not to cache the name. Failing at open
// would be more usual, but shells report an error of "echo x > f 2>err" in
// err only when the open succeeds, and scripts rely on seeing
// "Read-only file system" there; either way nothing is written and the
// caller gets EROFS.
func (n *Node) refuseCreate(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if _, err := n.t.Stat(ctx, n.child(name)); err == nil {
		return nil, nil, 0, syscall.EROFS // exists: O_TRUNC or O_EXCL on it fails now
	}
	fillAttr(fs.Info{Type: fs.TypeFile, Mode: mode & 0o7777}, &out.Attr)
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	ch := n.NewInode(ctx, &Node{t: n.t, log: n.log}, gofs.StableAttr{Mode: syscall.S_IFREG})
	return ch, refused{parent: n, name: name}, fuse.FOPEN_DIRECT_IO, 0
}

// isRefused reports whether this file node no longer exists in a
// read-only tree (the kernel may still hold a refused create's name).
func (n *Node) isRefused(ctx context.Context) bool {
	_, err := n.t.Stat(ctx, n.p())
	return errors.Is(err, fs.ErrNotExist)
}

// refused is the handle of a create refused on a read-only tree.
type refused struct {
	parent *Node
	name   string
}

func (refused) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(nil), 0
}
func (refused) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
func (refused) Flush(ctx context.Context) syscall.Errno               { return syscall.EROFS }
func (refused) Fsync(ctx context.Context, flags uint32) syscall.Errno { return syscall.EROFS }

// handle is an open file.
type handle struct {
	h *fs.Handle
	n *Node
}

// Read reads from the write-back copy or, for a file not being written,
// segment by segment from the grid.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got, err := h.h.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, h.n.errno("read", err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write writes into the local write-back copy.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	w, err := h.h.WriteAt(ctx, data, off)
	if err != nil {
		return uint32(w), h.n.errno("write", err)
	}
	return uint32(w), 0
}

// saveTimeout bounds a save that a signal must not abort (see saveCtx).
const saveTimeout = 10 * time.Minute

// saveCtx detaches a save from the kernel's interrupt: close(2) and
// fsync(2) failing with EINTR would be taken as data loss by callers (Go's
// os.File.Close does not retry it, and any signal to the caller, even Go's
// own preemption SIGURG, interrupts the request).
func saveCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
}

// Flush runs on every close(2): the file is uploaded and close reports
// an upload failure.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	ctx, cancel := saveCtx(ctx)
	defer cancel()
	return h.n.errno("flush", h.h.Flush(ctx))
}

// Fsync uploads the file and writes the directory chain up to the root.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx, cancel := saveCtx(ctx)
	defer cancel()
	return h.n.errno("fsync", h.h.Fsync(ctx))
}

// Release drops the handle. Its error cannot reach anyone (close already
// returned); unsaved data stays in the tree for Sync and unmount.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	ctx, cancel := saveCtx(ctx)
	defer cancel()
	if err := h.h.Close(ctx); err != nil {
		h.n.log.Warn("Release: file not saved; kept for retry at sync/unmount", "err", err)
	}
	return 0
}
