package boltserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// FsckOptions configures Fsck.
type FsckOptions struct {
	// Rebuild replaces the bbolt index with one rebuilt from the share
	// files and whatever of the old index still reads (see Fsck).
	Rebuild bool
	// ID is the store's server id, needed to rebuild a store whose old
	// index no longer says it (empty: the id recorded in the store).
	ID grid.ServerID
	// Now and LeaseTerm date the leases a rebuild gives shares whose
	// leases were lost (zero: time.Now and grid.DefaultLeaseTerm).
	Now       func() time.Time
	LeaseTerm time.Duration
	Logger    *slog.Logger
}

// FsckReport is what Fsck found and did. It marshals to JSON as is.
type FsckReport struct {
	Dir      string   `json:"dir"`
	Healthy  bool     `json:"healthy"`            // after the rebuild, if one ran
	Problems []string `json:"problems,omitempty"` // what the check found (before any rebuild)
	Rebuilt  bool     `json:"rebuilt"`
	// OldIndex is where a rebuild kept the damaged index, for forensics.
	OldIndex string `json:"oldIndex,omitempty"`
	// What a rebuild put in the new index.
	FileShares   int `json:"fileShares,omitempty"`   // share files indexed
	InlineShares int `json:"inlineShares,omitempty"` // small shares salvaged from the old index
	SlotShares   int `json:"slotShares,omitempty"`   // mutable slot shares salvaged
	Leases       int `json:"leases,omitempty"`       // leases salvaged
	NewLeases    int `json:"newLeases,omitempty"`    // storage indexes that got a fresh lease (theirs were lost)
	Dropped      int `json:"dropped,omitempty"`      // old index entries that could not be kept
}

// Fsck checks the store in dir, which no process may have open: it opens
// it as a node would (which already refuses a damaged index and cleans up
// after crashes) and checks every invariant (Verify). With opts.Rebuild it
// then, if anything was wrong, builds a new index:
//
//   - every share file under shares/ is indexed with its size;
//   - from the old index, as far as it still reads: the server id, small
//     shares kept inline, mutable slots with their write enablers, and
//     leases of storage indexes still held;
//   - a storage index left without a lease gets a fresh one with secrets
//     nobody knows, ending a lease term from now, so the owner has a full
//     term to renew it (adding their own lease) before it is collected.
//
// The old index is kept beside the new one as store.db.damaged-<unix
// time>. Shares whose bytes were damaged stay as they are: clients detect
// them by their hashes and repair them (sphere check --repair).
func Fsck(ctx context.Context, dir string, opts FsckOptions) (*FsckReport, error) {
	rep := &FsckReport{Dir: dir}
	log := defaultLogger(opts.Logger).With("store", dir)
	_, err := os.Stat(filepath.Join(dir, dbName))
	if _, serr := os.Stat(filepath.Join(dir, sharesDir)); err != nil && serr != nil {
		return nil, fmt.Errorf("fsck %s: not a store: %w", dir, err)
	}
	if errors.Is(err, os.ErrNotExist) { // shares without an index: only a rebuild helps
		rep.Problems = []string{"index file " + dbName + " missing"}
		if !opts.Rebuild {
			return rep, nil
		}
		if err := rebuild(ctx, dir, opts, rep, log); err != nil {
			return rep, fmt.Errorf("fsck %s: rebuild: %w", dir, err)
		}
		rep.Healthy = true
		return rep, nil
	}
	check := func() []string {
		s, err := Open(dir, Options{Logger: log, LockTimeout: time.Second, ID: opts.ID})
		if errors.Is(err, ErrInUse) {
			return []string{"in use"}
		}
		if err != nil {
			return []string{err.Error()}
		}
		defer s.Close()
		var out []string
		if err := s.Verify(ctx); err != nil {
			for _, e := range unjoin(err) {
				out = append(out, e.Error())
			}
		}
		return out
	}
	rep.Problems = check()
	if len(rep.Problems) == 1 && rep.Problems[0] == "in use" {
		return nil, fmt.Errorf("fsck %s: %w (stop the node first)", dir, ErrInUse)
	}
	rep.Healthy = len(rep.Problems) == 0
	if !opts.Rebuild || rep.Healthy {
		return rep, nil
	}
	if err := rebuild(ctx, dir, opts, rep, log); err != nil {
		return rep, fmt.Errorf("fsck %s: rebuild: %w", dir, err)
	}
	after := check()
	rep.Healthy = len(after) == 0
	if !rep.Healthy {
		return rep, fmt.Errorf("fsck %s: still damaged after the rebuild: %s", dir, after[0])
	}
	return rep, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// salvage is what could be read from an old index.
type salvage struct {
	id         []byte
	shares     map[string]uint64 // share key -> size
	inline     map[string][]byte
	slots      map[string][]byte // si -> write enabler
	slotShares map[string][]byte
	leases     map[string][]byte
}

// readOld copies what still reads from the bbolt file at path. Each bucket
// is walked under containment: a panic stops that bucket, keeping what was
// read. A file that fails the page check is not walked at all (bbolt
// could loop on it).
func readOld(path string, log *slog.Logger) (*salvage, error) {
	sv := &salvage{shares: map[string]uint64{}, inline: map[string][]byte{}, slots: map[string][]byte{},
		slotShares: map[string][]byte{}, leases: map[string][]byte{}}
	if err := checkPages(path); err != nil {
		log.Warn("Old index unreadable; salvaging nothing from it", "err", err)
		return sv, nil
	}
	db, err := openDB(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (lock not released)", ErrInUse)
	}
	if err != nil {
		log.Warn("Old index does not open; salvaging nothing from it", "err", err)
		return sv, nil
	}
	defer closeDB(db)
	walk := func(name []byte, fn func(k, v []byte)) {
		old := debug.SetPanicOnFault(true)
		defer func() {
			debug.SetPanicOnFault(old)
			if r := recover(); r != nil {
				log.Warn("Old index bucket damaged; kept what was read", "bucket", string(name), "panic", fmt.Sprint(r))
			}
		}()
		_ = db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				fn(bytes.Clone(k), bytes.Clone(v))
				return nil
			})
		})
	}
	walk(bMeta, func(k, v []byte) {
		if bytes.Equal(k, kID) && len(v) > 0 {
			sv.id = v
		}
	})
	walk(bShares, func(k, v []byte) {
		if len(k) == shareKeyLen && len(v) == 8 {
			sv.shares[string(k)] = binary.BigEndian.Uint64(v)
		}
	})
	walk(bInline, func(k, v []byte) {
		if len(k) == shareKeyLen && int64(len(v)) <= 1<<20 {
			sv.inline[string(k)] = v
		}
	})
	walk(bSlots, func(k, v []byte) {
		if len(k) == siLen && len(v) == 32 {
			sv.slots[string(k)] = v
		}
	})
	walk(bSlotShares, func(k, v []byte) {
		if len(k) == shareKeyLen && len(v) >= 8 {
			sv.slotShares[string(k)] = v
		}
	})
	walk(bLeases, func(k, v []byte) {
		if len(k) == leaseKeyLen && len(v) == leaseValLen {
			sv.leases[string(k)] = v
		}
	})
	return sv, nil
}

func rebuild(ctx context.Context, dir string, opts FsckOptions, rep *FsckReport, log *slog.Logger) error {
	path := filepath.Join(dir, dbName)
	_, statErr := os.Stat(path)
	hadIndex := statErr == nil
	sv := &salvage{}
	if hadIndex {
		var err error
		if sv, err = readOld(path, log); err != nil { // under bbolt's shared lock
			return err
		}
		// Then hold the store's lock for the rest, as bbolt would.
		lf, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer lf.Close()
		if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return fmt.Errorf("%w: %v", ErrInUse, err)
		}
	}
	id := opts.ID
	if id == "" {
		id = grid.ServerID(sv.id)
	} else if len(sv.id) > 0 && string(sv.id) != string(id) {
		log.Warn("The old index names another server id; using the one given", "old", grid.ServerID(sv.id), "given", id)
	}
	if id == "" {
		return errors.New("the old index does not say the store's server id; give it")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	term := opts.LeaseTerm
	if term <= 0 {
		term = grid.DefaultLeaseTerm
	}
	// Share files on disk are the truth for file shares.
	files := map[string]int64{}
	root := filepath.Join(dir, sharesDir)
	prefixes, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, p := range prefixes {
		sis, err := os.ReadDir(filepath.Join(root, p.Name()))
		if err != nil {
			continue
		}
		for _, d := range sis {
			ents, err := os.ReadDir(filepath.Join(root, p.Name(), d.Name()))
			if err != nil {
				continue
			}
			for _, f := range ents {
				si, shnum, err := parseShareFile(d.Name(), f.Name())
				if err != nil || p.Name() != si.String()[:2] {
					log.Warn("Leaving an unexpected file alone", "file", filepath.Join(p.Name(), d.Name(), f.Name()))
					continue
				}
				info, err := f.Info()
				if err != nil || !info.Mode().IsRegular() {
					continue
				}
				files[string(shareKey(si, shnum))] = info.Size()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	tmp := path + ".rebuild"
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	held := map[caps.StorageIndex]bool{}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if err := meta.Put(kVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
			return err
		}
		if err := meta.Put(kID, []byte(id)); err != nil {
			return err
		}
		mark := func(k string) {
			var si caps.StorageIndex
			copy(si[:], k)
			held[si] = true
		}
		for k, size := range files {
			if err := tx.Bucket(bShares).Put([]byte(k), u64(uint64(size))); err != nil {
				return err
			}
			mark(k)
			rep.FileShares++
		}
		for k, data := range sv.inline {
			if _, ok := files[k]; ok {
				rep.Dropped++ // a file is the better copy
				continue
			}
			if size, ok := sv.shares[k]; ok && size != uint64(len(data)) {
				rep.Dropped++ // index and data disagree: neither can be trusted
				continue
			}
			if err := tx.Bucket(bShares).Put([]byte(k), u64(uint64(len(data)))); err != nil {
				return err
			}
			if err := tx.Bucket(bInline).Put([]byte(k), data); err != nil {
				return err
			}
			mark(k)
			rep.InlineShares++
		}
		for k, v := range sv.slotShares {
			we, ok := sv.slots[k[:siLen]]
			if !ok {
				rep.Dropped++ // nobody could ever write it again
				continue
			}
			if err := tx.Bucket(bSlots).Put([]byte(k[:siLen]), we); err != nil {
				return err
			}
			if err := tx.Bucket(bSlotShares).Put([]byte(k), v); err != nil {
				return err
			}
			mark(k)
			rep.SlotShares++
		}
		latest := map[caps.StorageIndex]uint64{}
		for k, v := range sv.leases {
			var si caps.StorageIndex
			copy(si[:], k)
			if !held[si] {
				continue
			}
			if err := tx.Bucket(bLeases).Put([]byte(k), v); err != nil {
				return err
			}
			latest[si] = max(latest[si], binary.BigEndian.Uint64(v[32:]))
			rep.Leases++
		}
		exp := timeKey(now().Add(term))
		for si := range held {
			if _, ok := latest[si]; ok {
				continue
			}
			var secrets [64]byte
			if _, err := rand.Read(secrets[:]); err != nil {
				return err
			}
			var renew [32]byte
			copy(renew[:], secrets[:32])
			v := make([]byte, leaseValLen)
			copy(v, secrets[32:])
			binary.BigEndian.PutUint64(v[32:], exp)
			if err := tx.Bucket(bLeases).Put(leaseKey(si, renew), v); err != nil {
				return err
			}
			latest[si] = exp
			rep.NewLeases++
		}
		for si, e := range latest {
			if err := tx.Bucket(bExpiry).Put(expiryKey(e, si), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if hadIndex {
		rep.OldIndex = path + ".damaged-" + strconv.FormatInt(time.Now().Unix(), 10)
		if err := os.Rename(path, rep.OldIndex); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	rep.Rebuilt = true
	log.Info("Rebuilt store index", "fileShares", rep.FileShares, "inlineShares", rep.InlineShares,
		"slotShares", rep.SlotShares, "leases", rep.Leases, "newLeases", rep.NewLeases, "dropped", rep.Dropped)
	return nil
}
