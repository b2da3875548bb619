// Package journal is the write-back journal of a writable tree: a local,
// crash-safe record of directory edits and of file contents not yet on the
// grid, so that close(2) and fsync(2) return without waiting for the grid,
// and whatever they covered is uploaded after a crash, on the next start.
//
// Layout of a journal directory (docs/spec/journal.md):
//
//	lock             flock(2)ed by the one process using the journal
//	log-<gen>        edit records, one JSON object per line, appended
//	blob-<id>        file contents referenced by records
//
// A generation's log is dropped (with the blobs it references) once
// everything it recorded is on the grid; a new generation starts at each
// upload batch (Rotate). Records are replayed in generation, then line,
// order.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Version is the version of the record format (the "v" field).
const Version = 1

// MaxRecord bounds one log line; longer lines are refused when read.
const MaxRecord = 64 << 10

// ErrInUse means another process holds the journal.
var ErrInUse = errors.New("journal in use by another sphere process")

// ErrFormat wraps every error about malformed journal bytes.
var ErrFormat = errors.New("malformed journal")

// Entry is a directory entry as the journal stores it.
type Entry struct {
	Type   uint8  `json:"t"`
	Cap    string `json:"c,omitempty"`
	Size   int64  `json:"s,omitempty"`
	Mode   uint32 `json:"m,omitempty"`
	Mtime  int64  `json:"mt,omitempty"` // unix nanoseconds
	Target string `json:"l,omitempty"`
}

// Record is one directory edit: set Name in the directory Dir (a write cap
// string) to New (nil: delete), last seen as Prev. With Blob set, New is a
// file whose content is the blob (its Cap is filled in when it is
// uploaded). With Base also set, the blob is a delta: the content is blob
// Base with each extent of Ext (offset, length) replaced by the next bytes
// of blob Blob, then cut or zero-extended to New.Size.
type Record struct {
	V    int        `json:"v"`
	Dir  string     `json:"d"`
	Name string     `json:"n"`
	New  *Entry     `json:"new,omitempty"`
	Prev *Entry     `json:"prev,omitempty"`
	Blob string     `json:"b,omitempty"`
	Base string     `json:"base,omitempty"`
	Ext  [][2]int64 `json:"x,omitempty"`
	// BaseCap, instead of Base: the delta is over the saved file this cap
	// names (the first change to a file already on the grid).
	BaseCap string `json:"bc,omitempty"`
}

// MaxExtents bounds the extents of one delta record.
const MaxExtents = 1024

// Journal is an open journal directory. Its methods are safe for
// concurrent use.
type Journal struct {
	dir  string
	lock *os.File

	mu       sync.Mutex
	gen      uint64
	log      *os.File
	w        *bufio.Writer
	nextID   uint64
	records  int             // in all live generations
	inflight map[string]bool // blobs stored but not yet named by a record: Drop keeps them
}

// Open opens (creating if needed) the journal in dir and takes its lock.
func Open(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open journal %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("open journal: lock: %w", err)
	}
	j := &Journal{dir: dir, lock: lock, inflight: map[string]bool{}}
	gens, blobs, err := j.list()
	if err != nil {
		j.Close()
		return nil, err
	}
	if len(gens) > 0 {
		j.gen = gens[len(gens)-1]
	}
	for _, b := range blobs {
		if id, err := strconv.ParseUint(b, 16, 64); err == nil && id >= j.nextID {
			j.nextID = id + 1
		}
	}
	if err := j.startGen(j.gen + 1); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// Dir returns the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// list returns the generations (ascending) and blob ids present.
func (j *Journal) list() (gens []uint64, blobs []string, err error) {
	des, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasPrefix(name, "log-"):
			g, err := strconv.ParseUint(strings.TrimPrefix(name, "log-"), 10, 64)
			if err == nil {
				gens = append(gens, g)
			}
		case strings.HasPrefix(name, "blob-"):
			blobs = append(blobs, strings.TrimPrefix(name, "blob-"))
		}
	}
	slices.Sort(gens)
	return gens, blobs, nil
}

func (j *Journal) logPath(gen uint64) string { return filepath.Join(j.dir, fmt.Sprintf("log-%d", gen)) }

// BlobPath returns the file of blob id.
func (j *Journal) BlobPath(id string) string { return filepath.Join(j.dir, "blob-"+id) }

func (j *Journal) startGen(gen uint64) error {
	f, err := os.OpenFile(j.logPath(gen), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: new log: %w", err)
	}
	j.gen, j.log, j.w = gen, f, bufio.NewWriterSize(f, 64<<10)
	return nil
}

// Append adds r to the current generation. It reaches the file (so it
// survives the process being killed) before Append returns; Sync makes it
// survive a crash of the machine.
func (j *Journal) Append(r Record) error {
	r.V = Version
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if len(b)+1 > MaxRecord {
		return fmt.Errorf("journal: record of %d bytes, want at most %d", len(b)+1, MaxRecord)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		return errors.New("journal: closed")
	}
	delete(j.inflight, r.Blob)
	j.w.Write(b)
	j.w.WriteByte('\n')
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	j.records++
	return nil
}

// PutBlob stores size bytes of r as a new blob and returns its id. Like
// Append, it survives the process being killed at once, a machine crash
// after Sync.
func (j *Journal) PutBlob(r io.ReaderAt, size int64) (string, error) {
	return j.putBlob(io.NewSectionReader(r, 0, size))
}

func (j *Journal) putBlob(src io.Reader) (string, error) {
	j.mu.Lock()
	id := strconv.FormatUint(j.nextID, 16)
	j.nextID++
	j.inflight[id] = true // until a record names it (Append) or Release
	j.mu.Unlock()
	f, err := os.OpenFile(j.BlobPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("journal: new blob: %w", err)
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(j.BlobPath(id))
		j.Release(id)
		return "", fmt.Errorf("journal: write blob: %w", err)
	}
	return id, nil
}

// PutBlobParts stores the extents ext (offset, length) of r, one after
// the other, as a new blob (the data of a delta record).
func (j *Journal) PutBlobParts(r io.ReaderAt, ext [][2]int64) (string, error) {
	readers := make([]io.Reader, 0, len(ext))
	for _, x := range ext {
		readers = append(readers, io.NewSectionReader(r, x[0], x[1]))
	}
	return j.putBlob(io.MultiReader(readers...))
}

// Release gives up a blob no record will name; Drop may remove it.
func (j *Journal) Release(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.inflight, id)
}

// Sync makes everything appended or stored so far survive a crash of the
// machine: one syncfs(2) of the journal's file system (cheaper than an
// fsync per blob when many were written).
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		return errors.New("journal: closed")
	}
	if err := syncfs(j.log); err != nil {
		return fmt.Errorf("journal: sync: %w", err)
	}
	return nil
}

func syncfs(f *os.File) error { return unix.Syncfs(int(f.Fd())) }

// Rotate starts a new generation and returns the last one, so that the
// caller can drop it (Drop) once everything recorded so far is on the grid.
func (j *Journal) Rotate() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		return 0, errors.New("journal: closed")
	}
	old := j.gen
	if err := j.log.Close(); err != nil {
		return 0, fmt.Errorf("journal: rotate: %w", err)
	}
	if err := j.startGen(old + 1); err != nil {
		j.log = nil
		return 0, err
	}
	return old, nil
}

// Drop removes the logs of generations up to gen, then the blobs given
// (uploaded ones) and any blob no remaining log references.
func (j *Journal) Drop(gen uint64, blobs []string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	gens, present, err := j.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if g <= gen && g != j.gen {
			if err := os.Remove(j.logPath(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	// Count what is left, and keep blobs the remaining logs name.
	live := map[string]bool{}
	j.records = 0
	for _, g := range gens {
		if g > gen || g == j.gen {
			recs, err := readLog(j.logPath(g))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			j.records += len(recs)
			for _, r := range recs {
				if r.Blob != "" {
					live[r.Blob] = true
				}
				if r.Base != "" {
					live[r.Base] = true
				}
			}
		}
	}
	for _, b := range append(slices.Clone(blobs), present...) {
		if !live[b] && !j.inflight[b] {
			if err := os.Remove(j.BlobPath(b)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: drop: %w", err)
	}
	return nil
}

// Records returns every record of every generation, oldest first, and the
// newest generation they came from.
func (j *Journal) Records() ([]Record, uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	gens, _, err := j.list()
	if err != nil {
		return nil, 0, err
	}
	var out []Record
	for _, g := range gens {
		recs, err := readLog(j.logPath(g))
		if err != nil {
			return nil, 0, err
		}
		out = append(out, recs...)
	}
	return out, j.gen, nil
}

// Pending reports how many records are in the journal (not yet known to be
// on the grid).
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.records
}

// Close releases the journal; what it holds stays for the next Open.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.log != nil {
		err = j.log.Close()
		j.log = nil
	}
	if j.lock != nil {
		j.lock.Close() // releases the flock
		j.lock = nil
	}
	return err
}

func readLog(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	recs, err := ParseLog(b)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", filepath.Base(path), err)
	}
	return recs, nil
}

// ParseLog parses the bytes of one log. A last line without its newline
// is a write cut short by a crash and is ignored (its caller never got a
// reply); any other malformed line is an error.
func ParseLog(b []byte) ([]Record, error) {
	var out []Record
	for line := 1; len(b) > 0; line++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // torn last write
		}
		l := b[:i]
		b = b[i+1:]
		if len(l) > MaxRecord {
			return nil, fmt.Errorf("line %d: %d bytes, want at most %d: %w", line, len(l), MaxRecord, ErrFormat)
		}
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			return nil, fmt.Errorf("line %d: %v: %w", line, err, ErrFormat)
		}
		switch {
		case r.V > Version:
			return nil, fmt.Errorf("line %d: record version %d, this sphere reads up to %d (newer format): %w", line, r.V, Version, ErrFormat)
		case r.V < 1:
			return nil, fmt.Errorf("line %d: record version %d: %w", line, r.V, ErrFormat)
		case r.Dir == "" || r.Name == "":
			return nil, fmt.Errorf("line %d: want a directory and a name: %w", line, ErrFormat)
		case r.Blob != "" && (r.New == nil || !validBlobID(r.Blob)):
			return nil, fmt.Errorf("line %d: bad blob reference: %w", line, ErrFormat)
		case r.Base != "" && r.BaseCap != "":
			return nil, fmt.Errorf("line %d: delta over both a blob and a cap: %w", line, ErrFormat)
		case r.Base != "" && (r.Blob == "" || r.Base == r.Blob || !validBlobID(r.Base) || len(r.Ext) == 0 || len(r.Ext) > MaxExtents):
			return nil, fmt.Errorf("line %d: bad delta (base %q, %d extents): %w", line, r.Base, len(r.Ext), ErrFormat)
		case r.BaseCap != "" && (r.Blob == "" || len(r.Ext) == 0 || len(r.Ext) > MaxExtents):
			return nil, fmt.Errorf("line %d: bad delta over a cap (%d extents): %w", line, len(r.Ext), ErrFormat)
		case r.Base == "" && r.BaseCap == "" && len(r.Ext) > 0:
			return nil, fmt.Errorf("line %d: extents without a base: %w", line, ErrFormat)
		}
		for _, x := range r.Ext {
			if x[0] < 0 || x[1] <= 0 || x[0] > r.New.Size || x[1] > r.New.Size-x[0] {
				return nil, fmt.Errorf("line %d: extent %v outside size %d: %w", line, x, r.New.Size, ErrFormat)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func validBlobID(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	_, err := strconv.ParseUint(s, 16, 64)
	return err == nil && strings.ToLower(s) == s
}

// Stat reports, without taking the lock, how many records and blob bytes a
// journal directory holds: what is not yet known to be on the grid.
func Stat(dir string) (records int, blobBytes int64, err error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasPrefix(name, "log-"):
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				records += bytes.Count(b, []byte{'\n'})
			}
		case strings.HasPrefix(name, "blob-"):
			if fi, err := de.Info(); err == nil {
				blobBytes += fi.Size()
			}
		}
	}
	return records, blobBytes, nil
}
