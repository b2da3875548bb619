package home

import (
	"fmt"
	"os"
	"path/filepath"
)

// syncFile flushes f (a file, or a directory whose entries changed) to the
// disk; name is what it stands for. Tests replace it to see what is synced.
var syncFile = func(f *os.File, name string) error { return f.Sync() }

// writeFileDurable writes data to path so that after it returns, a crash
// leaves either the old file or the whole new one: it writes a temporary
// file beside path, fsyncs it, renames it over path and fsyncs the
// directory (else the rename itself may be lost).
func writeFileDurable(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := syncFile(f, path); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// syncDir fsyncs a directory, making entries created or renamed in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := syncFile(d, dir); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
