package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"syscall"
)

// Sentinels callers branch on. The io/fs ones are reused so that
// errors.Is(err, os.ErrNotExist) works on this package's errors.
var (
	ErrNotExist = iofs.ErrNotExist
	ErrExist    = iofs.ErrExist
	ErrInvalid  = iofs.ErrInvalid
	// ErrReadOnly: the tree (or the cap it was opened with) is read-only.
	ErrReadOnly = errors.New("read-only file system")
	// ErrNotEmpty: rmdir or rename over a directory that has entries.
	ErrNotEmpty = errors.New("directory not empty")
	// ErrNotDir: a path element is not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir: a file operation on a directory.
	ErrIsDir = errors.New("is a directory")
	// ErrClosed: the tree or handle was closed.
	ErrClosed = errors.New("closed")
	// ErrNotSupported: the operation is not supported on this node.
	ErrNotSupported = errors.New("operation not supported")
)

func pathErr(op, path string, err error) error {
	return &iofs.PathError{Op: op, Path: path, Err: err}
}

// ToErrno translates an error of this package (or one it wraps) into the
// errno a syscall should return. It is meant for the FUSE edge only; nil
// gives 0. Unknown errors, including grid failures, give EIO.
func ToErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ErrExist):
		return syscall.EEXIST
	case errors.Is(err, ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, ErrClosed):
		return syscall.EBADF
	case errors.Is(err, ErrNotSupported):
		return syscall.ENOTSUP
	case errors.As(err, &errno):
		return errno
	}
	return syscall.EIO
}
