// Package boltserver is the on-disk grid.Server: metadata (share index,
// leases, write enablers, mutable slot data) in one bbolt file, immutable
// share data as plain files written once with large sequential writes and
// read with pread. Small immutable shares (Options.InlineMax) live in the
// bbolt file too: one commit instead of a file create, fsync, rename and
// directory fsync. The byte layout is in docs/spec/disk-store.md.
//
// A share is acknowledged only once durable: its data goes to a temp file
// that is fsynced, renamed into place, its directory fsynced, and only then
// indexed in bbolt (an inline share: data and index in one commit).
// Concurrent inline writes share commits (group commit). A crash before the
// index commit leaves a file the index does not know; Open removes such
// files and every leftover temp file.
//
// Leases expire: Sweep deletes what no live lease covers (after Grace), Run
// sweeps periodically, CancelLease drops one client's lease. Verify checks
// the store's invariants without reading share data.
package boltserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

var (
	_ grid.Server         = (*Server)(nil)
	_ grid.Statter        = (*Server)(nil)
	_ grid.LeaseCanceller = (*Server)(nil)
	_ grid.Failer         = (*Server)(nil)
)

// ErrInUse is returned by Open when another process has the store open.
var ErrInUse = errors.New("store is in use by another process")

// MaxShnum is the highest share number accepted; share numbers take one
// byte in keys.
const MaxShnum = 255

// Options configures Open.
type Options struct {
	// ID is the server's identity. Empty: the id recorded in the store.
	// A store remembers the id it was created with and refuses another.
	ID grid.ServerID
	// Quota is the most bytes held, share data plus metadata charges
	// (grid.ShareCharge, grid.SlotCharge, grid.LeaseCharge); 0 means no
	// limit.
	Quota int64
	// Now replaces time.Now for lease expiry (tests).
	Now func() time.Time
	// LeaseTerm is how long an added or renewed lease lasts (zero:
	// grid.DefaultLeaseTerm).
	LeaseTerm time.Duration
	// Grace is how long after its last lease expires a share is kept
	// (zero: grid.DefaultLeaseGrace; negative: not at all).
	Grace time.Duration
	// SweepEvery is how often Run sweeps (zero: one hour).
	SweepEvery time.Duration
	// OpenFiles bounds the share files kept open for reads (zero: 128;
	// negative: open and close on every read).
	OpenFiles int
	// LockTimeout is how long Open waits for another process to release
	// the store (zero: one second).
	LockTimeout time.Duration
	// Logger receives sweeps and repairs done on open (nil: slog.Default()).
	Logger *slog.Logger
	// InlineMax is the largest immutable share kept inside the bbolt file
	// instead of a file of its own (zero: DefaultInlineMax; negative: every
	// share is a file). Changing it never moves shares already stored.
	InlineMax int64
}

// DefaultInlineMax is the default Options.InlineMax. Below it, a share's
// file create, fsync, rename and directory fsync cost far more than its
// bytes in a bbolt commit; well above it, bbolt's copy-on-write pages cost
// more (docs/spec/disk-store.md, "Discussion").
const DefaultInlineMax = 64 << 10

// Server is a grid.Server backed by a directory. It is safe for concurrent
// use; one process at a time may open a directory.
type Server struct {
	dir    string
	id     grid.ServerID
	quota  int64
	now    func() time.Time
	term   time.Duration
	grace  time.Duration
	failed atomic.Pointer[grid.FailedError]
	every  time.Duration
	log    *slog.Logger
	db     *bolt.DB
	fds    *fdCache
	seed   maphash.Seed
	// inlineMax is Options.InlineMax resolved: -1 means no inline shares.
	inlineMax int64
	gc        groupCommit

	// delMu orders deleting shares against writing them: a writer holds it
	// shared from its index re-check to its index commit, a deleter holds
	// it exclusively from its commit to removing the files, so a deleter
	// never removes a file a writer has just indexed.
	delMu sync.RWMutex
	// shareMu serializes writers of the same (si, shnum), striped.
	shareMu [64]sync.Mutex

	mu       sync.Mutex
	used     int64 // bytes of share data indexed, plus metadata charges
	reserved int64 // bytes promised to writes in progress
	count    int   // immutable shares plus slot shares
	closed   bool
	// expiring caches Stat.ExpiringSoon for a minute: counting walks the
	// expiry index and Stat is asked before every upload.
	expiring   int
	expiringAt time.Time
}

// writeBufSize is the buffer for copying share data to its file: few large
// writes keep the file contiguous and the syscall count low.
const writeBufSize = 1 << 20

var writeBufs = sync.Pool{New: func() any { b := make([]byte, writeBufSize); return &b }}

// Open opens (creating if needed) the store in dir. If another process has
// it open, Open fails after opts.LockTimeout with an error saying the store
// is in use.
//
// A store whose bbolt file is damaged (it fails the page check,
// makes bbolt panic, or its index disagrees with the share files in a way
// no crash explains) is not opened: the error is a *grid.FailedError
// (errors.Is grid.ErrFailed). NewFailed makes a stand-in that reports it;
// Fsck rebuilds the index.
func Open(dir string, opts Options) (s *Server, err error) {
	s = &Server{
		dir: dir, id: opts.ID, quota: opts.Quota, now: opts.Now, grace: opts.Grace,
		term: opts.LeaseTerm, every: opts.SweepEvery, log: opts.Logger, seed: maphash.MakeSeed(),
		inlineMax: opts.InlineMax,
	}
	switch {
	case s.grace == 0:
		s.grace = grid.DefaultLeaseGrace
	case s.grace < 0:
		s.grace = 0
	}
	if s.term <= 0 {
		s.term = grid.DefaultLeaseTerm
	}
	switch {
	case s.inlineMax == 0:
		s.inlineMax = DefaultInlineMax
	case s.inlineMax < 0:
		s.inlineMax = -1
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.every <= 0 {
		s.every = time.Hour
	}
	s.log = defaultLogger(s.log)
	switch {
	case opts.OpenFiles == 0:
		s.fds = newFDCache(128)
	case opts.OpenFiles < 0:
		s.fds = newFDCache(0)
	default:
		s.fds = newFDCache(opts.OpenFiles)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	for _, d := range []string{dir, filepath.Join(dir, sharesDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	s.log = s.log.With("store", dir)
	// Check the pages before bbolt maps them: bbolt panics on some damage
	// while opening, after taking its lock, and then the lock is lost with
	// the half-open DB.
	if err := precheck(filepath.Join(dir, dbName), timeout); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db, err := openDB(filepath.Join(dir, dbName), &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (lock not released within %v)", dir, ErrInUse, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.db = db
	s.gc.db = db
	defer func() {
		if err != nil {
			closeDB(db)
			s = nil
		}
	}()
	for _, step := range []func() error{s.init, s.repair} {
		if err := s.guarded(step); err != nil {
			if errors.Is(err, grid.ErrCorrupt) {
				err = damaged(dir, err)
			}
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	return s, nil
}

// precheck runs checkPages on an existing bbolt file at path while holding
// its lock (waiting up to timeout for another process to let go), so the
// check sees no write in progress. A missing file is fine (Open creates
// it).
func precheck(path string, timeout time.Duration) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	deadline := time.Now().Add(timeout)
	for { // bounded by timeout
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (lock not released within %v)", ErrInUse, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		return nil // bbolt initializes an empty file
	}
	if err := checkPages(path); err != nil {
		return damaged(filepath.Dir(path), err)
	}
	return nil
}

// guarded runs fn with panics and faults contained: a panic becomes a
// *grid.FailedError (fn's own errors pass through).
func (s *Server) guarded(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = damaged(s.dir, &panicError{r})
		}
	}()
	return fn()
}

// openDB is bolt.Open with panics and faults contained: a damaged file is
// an error wrapping grid.ErrFailed, never a panic. Errors that are not
// about the file's content (a held lock, permissions) pass through as is.
func openDB(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			db, err = nil, damaged(filepath.Dir(path), &panicError{r})
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping) {
		err = damaged(filepath.Dir(path), err)
	}
	return db, err
}

// closeDB closes db, containing what a damaged file can make it do.
func closeDB(db *bolt.DB) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		_ = recover()
	}()
	db.Close()
}

func defaultLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// init creates the buckets, checks the version and id, and counts usage.
func (s *Server) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		switch v := meta.Get(kVersion); {
		case v == nil:
			if err := meta.Put(kVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
				return err
			}
		case len(v) != 4 || binary.BigEndian.Uint32(v) < minVersion || binary.BigEndian.Uint32(v) > Version:
			return fmt.Errorf("unsupported store version %x, want %d..%d", v, minVersion, Version)
		case binary.BigEndian.Uint32(v) < Version:
			// Older formats are subsets of this one (their buckets were
			// created above): recording the new version is the upgrade.
			s.log.Info("Upgrading store format", "from", binary.BigEndian.Uint32(v), "to", Version)
			if err := meta.Put(kVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
				return err
			}
		}
		switch id := meta.Get(kID); {
		case id == nil && s.id == "":
			return errors.New("no server id given and none recorded")
		case id == nil:
			if err := meta.Put(kID, []byte(s.id)); err != nil {
				return err
			}
		case s.id == "":
			s.id = grid.ServerID(id)
		case string(id) != string(s.id):
			return fmt.Errorf("store belongs to server %v, not %v", grid.ServerID(id), s.id)
		}
		s.used, s.count = 0, 0
		err := tx.Bucket(bShares).ForEach(func(k, v []byte) error {
			if len(k) != shareKeyLen || len(v) != 8 || binary.BigEndian.Uint64(v) > 1<<62 {
				return fmt.Errorf("share index entry %x: %w", k, grid.ErrCorrupt)
			}
			s.used += int64(binary.BigEndian.Uint64(v)) + grid.ShareCharge
			s.count++
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bSlotShares).ForEach(func(k, v []byte) error {
			if len(k) != shareKeyLen || len(v) < 8 {
				return fmt.Errorf("slot share entry %x: %w", k, grid.ErrCorrupt)
			}
			s.used += int64(len(v)-8) + grid.ShareCharge
			s.count++
			return nil
		})
		if err != nil {
			return err
		}
		s.used += int64(tx.Bucket(bSlots).Stats().KeyN) * grid.SlotCharge
		s.used += int64(tx.Bucket(bLeases).Stats().KeyN) * grid.LeaseCharge
		return nil
	})
}

// repair removes what a crash can leave: temp files, share files never
// indexed (crash between rename and commit) and index entries whose file is
// gone. It reads directory entries only, never share data.
func (s *Server) repair() error {
	tmp := filepath.Join(s.dir, tmpDir)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
	}
	if len(ents) > 0 {
		s.log.Info("Removed temp files left by a crash", "count", len(ents))
	}
	onDisk := make(map[string]bool)
	root := filepath.Join(s.dir, sharesDir)
	prefixes, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	orphans := 0
	for _, p := range prefixes {
		sis, err := os.ReadDir(filepath.Join(root, p.Name()))
		if err != nil {
			return err
		}
		for _, d := range sis {
			files, err := os.ReadDir(filepath.Join(root, p.Name(), d.Name()))
			if err != nil {
				return err
			}
			for _, f := range files {
				si, shnum, perr := parseShareFile(d.Name(), f.Name())
				if perr == nil {
					onDisk[string(shareKey(si, shnum))] = true
					continue
				}
				s.log.Warn("Unexpected file in share directory", "file", filepath.Join(p.Name(), d.Name(), f.Name()))
			}
		}
	}
	var missing [][]byte
	err = s.db.View(func(tx *bolt.Tx) error {
		inline := tx.Bucket(bInline)
		return tx.Bucket(bShares).ForEach(func(k, _ []byte) error {
			if inline.Get(k) != nil {
				return nil // held inline; a file by the same name is an orphan
			}
			if onDisk[string(k)] {
				delete(onDisk, string(k))
			} else {
				missing = append(missing, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 && len(onDisk) > 0 {
		// Both ways at once is what a damaged index looks like (a changed
		// key loses one file and invents another), not a crash: removing
		// the "orphans" would destroy good shares. Rebuild from the files.
		return fmt.Errorf("index disagrees with the share files (%d indexed shares without a file, %d share files not indexed): %w",
			len(missing), len(onDisk), grid.ErrCorrupt)
	}
	for k := range onDisk { // on disk, not indexed: a crash before the index commit
		var si caps.StorageIndex
		copy(si[:], k)
		if err := os.Remove(filepath.Join(s.dir, sharePath(si, int(k[siLen])))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		orphans++
	}
	if orphans > 0 {
		s.log.Info("Removed share files never indexed", "count", orphans)
	}
	if len(missing) > 0 {
		// Only disk trouble or a person removes an indexed file (a crash
		// cannot): drop the entries, and the client repairs the shares.
		s.log.Warn("Share files missing; dropping them from the index", "count", len(missing))
		var d deleted
		err := s.db.Update(func(tx *bolt.Tx) error {
			d = deleted{}
			b := tx.Bucket(bShares)
			for _, k := range missing {
				if v := b.Get(k); len(v) == 8 {
					d.bytes += int64(binary.BigEndian.Uint64(v)) + grid.ShareCharge
					d.shares++
				}
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			// A storage index left with nothing loses its leases too.
			for _, k := range missing {
				var si caps.StorageIndex
				copy(si[:], k)
				if !held(tx, si) {
					if err := deleteSI(tx, si, &d); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err == nil {
			s.used -= d.bytes
			s.count -= d.shares
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Close closes the store. Calls in progress may fail.
func (s *Server) Close() (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = s.fail(&panicError{r}) // a damaged file: closed all the same
		}
	}()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.fds.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

// Dir returns the store directory.
func (s *Server) Dir() string { return s.dir }

// ID returns the server's identity.
func (s *Server) ID() grid.ServerID { return s.id }

func (s *Server) shareLock(si caps.StorageIndex, shnum int) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.Write(si[:])
	h.WriteByte(byte(shnum))
	return &s.shareMu[h.Sum64()%uint64(len(s.shareMu))]
}

// indexedSize returns the size of an indexed share, or ok=false.
func (s *Server) indexedSize(si caps.StorageIndex, shnum int) (size int64, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bShares).Get(shareKey(si, shnum))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("share index value of %d bytes: %w", len(v), grid.ErrCorrupt)
		}
		size, ok = int64(binary.BigEndian.Uint64(v)), true
		return nil
	})
	return size, ok, err
}

// WriteShare implements grid.Server.
func (s *Server) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) (err error) {
	old, err := s.enter()
	if err != nil {
		return err
	}
	defer s.contain(&err, old)
	defer wrap(&err, "write share %d of %v", shnum, si)
	if shnum < 0 || shnum > MaxShnum {
		return fmt.Errorf("share number out of range 0..%d", MaxShnum)
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	held, ok, err := s.indexedSize(si, shnum)
	if err != nil {
		return err
	}
	if ok {
		err := s.rewrite(si, shnum, held, size, r, lease)
		if !errors.Is(err, grid.ErrNotFound) {
			return err
		}
		// Deleted since the lookup, before r was touched: store it anew.
	}
	if err := s.leaseRoom(si, lease); err != nil {
		return err
	}
	// Reserve the share and its metadata (and a lease, in case it is new).
	charge := size + grid.ShareCharge + grid.LeaseCharge
	s.mu.Lock()
	if s.quota > 0 && s.used+s.reserved+charge > s.quota {
		s.mu.Unlock()
		return fmt.Errorf("%d bytes: %w", size, grid.ErrNoSpace)
	}
	s.reserved += charge
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.reserved -= charge
		s.mu.Unlock()
	}()

	if size <= s.inlineMax {
		data, err := readExactly(ctx, r, size)
		if err != nil {
			return err
		}
		return s.commitInline(ctx, si, shnum, data, lease)
	}
	tmp, err := s.writeTemp(ctx, r, size)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op once renamed
	return s.commitShare(ctx, si, shnum, size, tmp, lease)
}

// rewrite handles WriteShare of a share already held: same size adds the
// lease and drains r, another size is refused.
func (s *Server) rewrite(si caps.StorageIndex, shnum int, old, size int64, r io.Reader, lease grid.Lease) error {
	if old != size {
		return fmt.Errorf("held with size %d, not %d", old, size)
	}
	if err := s.addLease(si, lease); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(r, size+1)); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// writeTemp copies exactly size bytes of r to a new fsynced temp file and
// returns its path.
func (s *Server) writeTemp(ctx context.Context, r io.Reader, size int64) (path string, err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "share-*")
	if err != nil {
		return "", err
	}
	name := f.Name() // not path: a failing return sets path to ""
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(name)
		}
	}()
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(&ctxReader{ctx: ctx, r: r}, size+1), *bp)
	if err != nil {
		return "", fmt.Errorf("copy data: %w", err)
	}
	if n < size {
		return "", fmt.Errorf("data ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if n > size {
		return "", fmt.Errorf("data longer than declared size %d", size)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, nil
}

// readExactly reads exactly size bytes of r into memory (size is at most
// the inline limit).
func readExactly(ctx context.Context, r io.Reader, size int64) ([]byte, error) {
	data := make([]byte, size+1) // one spare byte detects overlong data
	n, err := io.ReadFull(&ctxReader{ctx: ctx, r: r}, data)
	switch {
	case err == nil:
		return nil, fmt.Errorf("data longer than declared size %d", size)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if int64(n) < size {
			return nil, fmt.Errorf("data ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
		}
		return data[:size:size], nil
	default:
		return nil, fmt.Errorf("copy data: %w", err)
	}
}

// commitInline stores a share of at most InlineMax bytes in one bbolt
// transaction: index entry, data and lease together, so it is durable once
// committed with no file involved.
func (s *Server) commitInline(ctx context.Context, si caps.StorageIndex, shnum int, data []byte, lease grid.Lease) error {
	lk := s.shareLock(si, shnum)
	lk.Lock()
	defer lk.Unlock()
	s.delMu.RLock()
	defer s.delMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	size := int64(len(data))
	key := shareKey(si, shnum)
	var added, leaseAdded bool
	err := s.gc.update(func(tx *bolt.Tx) error {
		added, leaseAdded = false, false // fn may run more than once
		shares := tx.Bucket(bShares)
		if v := shares.Get(key); v != nil { // a concurrent writer of the same share won
			if len(v) != 8 {
				return fmt.Errorf("share index value of %d bytes: %w", len(v), grid.ErrCorrupt)
			}
			if old := int64(binary.BigEndian.Uint64(v)); old != size {
				return fmt.Errorf("held with size %d, not %d", old, size)
			}
			var err error
			leaseAdded, err = s.putLease(tx, si, lease, true)
			return err
		}
		var err error
		if leaseAdded, err = s.putLease(tx, si, lease, true); err != nil {
			return err
		}
		if err := shares.Put(key, u64(uint64(size))); err != nil {
			return err
		}
		if err := tx.Bucket(bInline).Put(key, data); err != nil {
			return err
		}
		added = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	s.account(added, size, leaseAdded)
	return nil
}

// account adds a committed share (if added) and lease (if leaseAdded) to
// the usage counters.
func (s *Server) account(added bool, size int64, leaseAdded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if added {
		s.used += size + grid.ShareCharge
		s.count++
	}
	if leaseAdded {
		s.used += grid.LeaseCharge
	}
}

// onlyWriter hides os.File's ReadFrom, so io.CopyBuffer uses our large
// buffer instead of copy_file_range/splice probing with small reads.
type onlyWriter struct{ io.Writer }

// commitShare moves a durable temp file into place and indexes it.
func (s *Server) commitShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, tmp string, lease grid.Lease) error {
	lk := s.shareLock(si, shnum)
	lk.Lock()
	defer lk.Unlock()
	s.delMu.RLock()
	defer s.delMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	old, ok, err := s.indexedSize(si, shnum)
	if err != nil {
		return err
	}
	if ok { // a concurrent writer of the same share won
		if old != size {
			return fmt.Errorf("held with size %d, not %d", old, size)
		}
		return s.addLease(si, lease)
	}

	final := filepath.Join(s.dir, sharePath(si, shnum))
	if err := mkdirSynced(filepath.Dir(final), 2); err != nil {
		return err
	}
	s.fds.forget(final) // an orphan's stale fd, if any
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		os.Remove(final)
		return err
	}
	var leaseAdded bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if leaseAdded, err = s.putLease(tx, si, lease, true); err != nil {
			return err
		}
		return tx.Bucket(bShares).Put(shareKey(si, shnum), u64(uint64(size)))
	})
	if err != nil {
		os.Remove(final)
		return fmt.Errorf("index: %w", err)
	}
	s.account(true, size, leaseAdded)
	return nil
}

// mkdirSynced creates dir and up to levels missing parents, fsyncing each
// parent that gained an entry so the new directories survive a crash.
func mkdirSynced(dir string, levels int) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if levels > 0 {
		if err := mkdirSynced(parent, levels-1); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// ReadShare implements grid.Server.
func (s *Server) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) (_ []byte, err error) {
	old, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer s.contain(&err, old)
	defer wrap(&err, "read share %d of %v", shnum, si)
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("negative offset %d or length %d", off, length)
	}
	if shnum < 0 || shnum > MaxShnum {
		return nil, grid.ErrNotFound
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var size int64
	var ok, isInline bool
	var inlineData []byte
	err = s.db.View(func(tx *bolt.Tx) error {
		key := shareKey(si, shnum)
		v := tx.Bucket(bShares).Get(key)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("share index value of %d bytes: %w", len(v), grid.ErrCorrupt)
		}
		size, ok = int64(binary.BigEndian.Uint64(v)), true
		d := tx.Bucket(bInline).Get(key)
		if d == nil {
			return nil
		}
		if int64(len(d)) != size {
			return fmt.Errorf("inline share of %d bytes, index says %d: %w", len(d), size, grid.ErrCorrupt)
		}
		isInline = true
		if off < size {
			inlineData = bytes.Clone(d[off : off+min(length, size-off)]) // d is only valid inside the tx
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, grid.ErrNotFound
	}
	if off >= size {
		return nil, fmt.Errorf("offset %d, size %d: %w", off, size, io.ErrUnexpectedEOF)
	}
	if isInline {
		if inlineData == nil {
			inlineData = []byte{}
		}
		return inlineData, nil
	}
	n := min(length, size-off)
	e, err := s.fds.get(filepath.Join(s.dir, sharePath(si, shnum)))
	if errors.Is(err, os.ErrNotExist) { // deleted since the index lookup
		return nil, grid.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer s.fds.put(e)
	buf := make([]byte, n)
	got, err := e.f.ReadAt(buf, off)
	if got < len(buf) {
		if err == io.EOF {
			return nil, fmt.Errorf("file shorter than indexed size %d: %w", size, grid.ErrCorrupt)
		}
		return nil, err
	}
	return buf, nil
}

// ListShares implements grid.Server.
func (s *Server) ListShares(ctx context.Context, si caps.StorageIndex) (_ []grid.ShareInfo, err error) {
	old, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer s.contain(&err, old)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list shares of %v: %w", si, err)
	}
	out := []grid.ShareInfo{}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bShares).Cursor()
		for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
			if len(k) != shareKeyLen || len(v) != 8 {
				return fmt.Errorf("share index entry %x: %w", k, grid.ErrCorrupt)
			}
			out = append(out, grid.ShareInfo{Shnum: int(k[siLen]), Size: int64(binary.BigEndian.Uint64(v))})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list shares of %v: %w", si, err)
	}
	return out, nil // keys sort by shnum
}

// ReadSlot implements grid.Server.
func (s *Server) ReadSlot(ctx context.Context, si caps.StorageIndex) (_ []grid.SlotShare, err error) {
	old, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer s.contain(&err, old)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read slot %v: %w", si, err)
	}
	out := []grid.SlotShare{}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bSlotShares).Cursor()
		for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
			if len(k) != shareKeyLen || len(v) < 8 {
				return fmt.Errorf("slot share entry %x: %w", k, grid.ErrCorrupt)
			}
			out = append(out, grid.SlotShare{Shnum: int(k[siLen]), Seq: binary.BigEndian.Uint64(v), Data: bytes.Clone(v[8:])})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read slot %v: %w", si, err)
	}
	for i := range out {
		if out[i].Data == nil {
			out[i].Data = []byte{}
		}
	}
	return out, nil
}

// WriteSlot implements grid.Server. All shares go in one bbolt transaction,
// which is what makes the write atomic and durable.
func (s *Server) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) (err error) {
	old, err := s.enter()
	if err != nil {
		return err
	}
	defer s.contain(&err, old)
	defer wrap(&err, "write slot %v", si)
	if err := checkSlotWrites(writes); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var grow int64
	var added int
	var leaseAdded, leaseCounted bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		grow, added, leaseAdded = 0, 0, false
		slots, shares := tx.Bucket(bSlots), tx.Bucket(bSlotShares)
		if old := slots.Get(si[:]); old != nil {
			if subtle.ConstantTimeCompare(old, we[:]) != 1 {
				return grid.ErrBadWriteEnabler
			}
		} else {
			grow += grid.SlotCharge
		}
		leaseCounted = tx.Bucket(bLeases).Get(leaseKey(si, lease.RenewSecret)) == nil
		if leaseCounted {
			grow += grid.LeaseCharge
		}
		for _, w := range writes {
			v := shares.Get(shareKey(si, w.Shnum))
			if v == nil {
				added++
				grow += int64(len(w.Data)) + grid.ShareCharge
				continue
			}
			if len(v) < 8 {
				return fmt.Errorf("slot share %d entry: %w", w.Shnum, grid.ErrCorrupt)
			}
			if have := binary.BigEndian.Uint64(v); have >= w.Seq {
				return &grid.StaleError{Shnum: w.Shnum, Have: have, Want: w.Seq}
			}
			grow += int64(len(w.Data)) - int64(len(v)-8)
		}
		s.mu.Lock()
		full := grow > 0 && s.quota > 0 && s.used+s.reserved+grow > s.quota
		s.mu.Unlock()
		if full {
			return fmt.Errorf("%d more bytes: %w", grow, grid.ErrNoSpace)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if leaseAdded, err = s.putLease(tx, si, lease, true); err != nil {
			return err
		}
		if leaseCounted && !leaseAdded {
			grow -= grid.LeaseCharge // it replaced an expired one
		}
		if err := slots.Put(si[:], we[:]); err != nil {
			return err
		}
		for _, w := range writes {
			v := make([]byte, 8+len(w.Data))
			binary.BigEndian.PutUint64(v, w.Seq)
			copy(v[8:], w.Data)
			if err := shares.Put(shareKey(si, w.Shnum), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.used += grow
	s.count += added
	s.mu.Unlock()
	return nil
}

// Stat implements grid.Statter. A failed store returns its failure.
func (s *Server) Stat(ctx context.Context) (_ grid.Stat, err error) {
	old, err := s.enter()
	if err != nil {
		return grid.Stat{}, err
	}
	defer s.contain(&err, old)
	if err := ctx.Err(); err != nil {
		return grid.Stat{}, fmt.Errorf("stat: %w", err)
	}
	soon, err := s.expiringSoon()
	if err != nil {
		return grid.Stat{}, fmt.Errorf("stat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return grid.Stat{Quota: s.quota, Used: s.used, Shares: s.count, ExpiringSoon: soon}, nil
}

// expiringCacheFor is how long a count of expiring shares is reused.
const expiringCacheFor = time.Minute

// expiringSoon counts the shares whose last lease ends within
// grid.ExpiringWindow (or has ended, within grace), walking only that
// front of the expiry index; the count is cached for a minute.
func (s *Server) expiringSoon() (int, error) {
	now := s.now()
	s.mu.Lock()
	if !s.expiringAt.IsZero() && now.Sub(s.expiringAt) < expiringCacheFor && !now.Before(s.expiringAt) {
		n := s.expiring
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	n, err := s.countBefore(context.Background(), now.Add(grid.ExpiringWindow))
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.expiring, s.expiringAt = n, now
	s.mu.Unlock()
	return n, nil
}

// ExpiringBefore counts the shares whose last lease ends before t.
func (s *Server) ExpiringBefore(ctx context.Context, t time.Time) (n int, err error) {
	old, err := s.enter()
	if err != nil {
		return 0, err
	}
	defer s.contain(&err, old)
	return s.countBefore(ctx, t)
}

// countBefore counts the shares whose last lease ends before t, walking
// only that front of the expiry index.
func (s *Server) countBefore(ctx context.Context, t time.Time) (n int, err error) {
	end := timeKey(t)
	err = s.db.View(func(tx *bolt.Tx) error {
		shares, slotShares := tx.Bucket(bShares).Cursor(), tx.Bucket(bSlotShares).Cursor()
		c := tx.Bucket(bExpiry).Cursor()
		for k, _ := c.First(); k != nil && ctx.Err() == nil; k, _ = c.Next() {
			if len(k) != expiryKeyLen || binary.BigEndian.Uint64(k) >= end {
				break
			}
			si := k[8:]
			for sk, _ := shares.Seek(si); sk != nil && bytes.HasPrefix(sk, si); sk, _ = shares.Next() {
				n++
			}
			for sk, _ := slotShares.Seek(si); sk != nil && bytes.HasPrefix(sk, si); sk, _ = slotShares.Next() {
				n++
			}
		}
		return ctx.Err()
	})
	return n, err
}

func checkSlotWrites(writes []grid.SlotShare) error {
	if len(writes) == 0 {
		return errors.New("no shares to write")
	}
	var seen [MaxShnum + 1]bool
	for _, w := range writes {
		if w.Shnum < 0 || w.Shnum > MaxShnum {
			return fmt.Errorf("share number %d out of range 0..%d", w.Shnum, MaxShnum)
		}
		if seen[w.Shnum] {
			return fmt.Errorf("share %d written twice", w.Shnum)
		}
		seen[w.Shnum] = true
	}
	return nil
}

// ctxReader fails reads once ctx has ended, so a cancelled upload stops at
// the next chunk.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// wrap prefixes a non-nil *err with the operation. A full disk becomes
// grid.ErrNoSpace, so callers place the share elsewhere instead of retrying.
func wrap(err *error, format string, args ...any) {
	if *err == nil {
		return
	}
	if errors.Is(*err, syscall.ENOSPC) && !errors.Is(*err, grid.ErrNoSpace) {
		*err = fmt.Errorf("%w: %w", grid.ErrNoSpace, *err)
	}
	*err = fmt.Errorf(format+": %w", append(args, *err)...)
}
