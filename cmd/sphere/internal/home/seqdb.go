package home

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// StateFile is the home's bbolt file of client state that must outlive a
// process: today the highest sequence number seen per mutable file, which
// rollback protection needs (docs/spec/mutable.md).
const StateFile = "state.db"

var seqBucket = []byte("mutableSeq")

// seqFlushDelay batches the writes of a burst of publishes (a cp of many
// files into the drive) into one transaction.
const seqFlushDelay = 100 * time.Millisecond

// seqLockTimeout bounds waiting for another process that has the file open.
const seqLockTimeout = 5 * time.Second

// SeqDB is a grid.SeqStore persisted in <home>/state.db. The file is opened
// only to load it and to write, never held, so a mount and CLI commands of
// the same home share it: each loads every record when it starts, and
// raises records (never lowers them) in batched transactions shortly after
// Observe and on Close. A crash loses at most the last batch.
type SeqDB struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	seen   map[caps.StorageIndex]uint64
	dirty  map[caps.StorageIndex]uint64
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed bool
	err    error // last flush failure, reported by Close
}

var _ grid.SeqStore = (*SeqDB)(nil)

// OpenSeqDB loads the sequence numbers in <home>/state.db, creating it.
func (h *Home) OpenSeqDB(log *slog.Logger) (*SeqDB, error) {
	return OpenSeqDB(h.Path(StateFile), log)
}

// OpenSeqDB loads the sequence numbers in the bbolt file at path.
func OpenSeqDB(path string, log *slog.Logger) (*SeqDB, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &SeqDB{
		path: path, log: log,
		seen:  make(map[caps.StorageIndex]uint64),
		dirty: make(map[caps.StorageIndex]uint64),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	err := s.withDB(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(seqBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var si caps.StorageIndex
			if len(k) != len(si) || len(v) != 8 {
				return fmt.Errorf("record of %d+%d bytes, want %d+8", len(k), len(v), len(si))
			}
			copy(si[:], k)
			s.seen[si] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	go s.flusher()
	return s, nil
}

// withDB opens the file, runs fn in one read-write transaction and closes
// it. bbolt panics on some damaged pages; that becomes an error here.
func (s *SeqDB) withDB(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged file (%v); move it aside to start afresh, losing rollback protection for files seen so far", r)
		}
	}()
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: seqLockTimeout})
	if err != nil {
		return err
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Seen implements grid.SeqStore.
func (s *SeqDB) Seen(si caps.StorageIndex) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[si]
}

// Observe implements grid.SeqStore.
func (s *SeqDB) Observe(si caps.StorageIndex, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.seen[si] {
		return
	}
	s.seen[si] = seq
	s.dirty[si] = seq
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *SeqDB) flusher() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			return
		}
		select {
		case <-time.After(seqFlushDelay):
		case <-s.stop:
			return // Close flushes
		}
		if err := s.flush(); err != nil {
			s.log.Warn("Saving mutable sequence numbers failed; will retry", "file", s.path, "err", err)
			select {
			case <-time.After(time.Second):
			case <-s.stop:
				return
			}
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
}

// flush writes the dirty records, keeping the higher of ours and the file's
// (another process may have written a higher one).
func (s *SeqDB) flush() error {
	s.mu.Lock()
	batch := s.dirty
	s.dirty = make(map[caps.StorageIndex]uint64)
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	higher := make(map[caps.StorageIndex]uint64)
	err := s.withDB(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(seqBucket)
		if err != nil {
			return err
		}
		for si, seq := range batch {
			if old := b.Get(si[:]); len(old) == 8 && binary.BigEndian.Uint64(old) >= seq {
				higher[si] = binary.BigEndian.Uint64(old)
				continue
			}
			// bbolt keeps key and value until commit: fresh slices each.
			if err := b.Put(bytes.Clone(si[:]), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		for si, seq := range batch { // try again with the next batch
			if seq > s.dirty[si] {
				s.dirty[si] = seq
			}
		}
		s.err = err
		return err
	}
	for si, seq := range higher {
		if seq > s.seen[si] {
			s.seen[si] = seq
		}
	}
	s.err = nil
	return nil
}

// Close writes what is not yet written. The SeqDB must not be used after.
func (s *SeqDB) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	if err := s.flush(); err != nil {
		return fmt.Errorf("save %s: %w", s.path, err)
	}
	return nil
}
