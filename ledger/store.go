package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store keeps the node's own log and the verified copies of peers' logs in
// one bbolt file, with the fork proofs it holds.
//
// Layout: bucket "logs" holds one bucket per author (key: the 32-byte peer
// id) mapping index (8 bytes, big endian) to the encoded entry; bucket
// "heads" maps author to length(8) || hash(32) || time ms(8); bucket "forks"
// maps author to an encoded ForkProof.
type Store struct {
	db   *bolt.DB
	key  ed25519.PrivateKey
	self PeerID
	now  func() time.Time
	mu   sync.Mutex // serialises Append so indexes and links stay in order
	// maxForks bounds the fork proofs AddForkProof keeps.
	maxForks int
}

// Options tune a Store.
type Options struct {
	Now func() time.Time // the clock; time.Now if nil
	// MaxSkew bounds how far in the future an imported entry may be dated.
	MaxSkew time.Duration
	// MaxForkProofs bounds the fork proofs taken from peers (AddForkProof);
	// 0: DefaultMaxForkProofs.
	MaxForkProofs int
}

// DefaultMaxForkProofs bounds the fork proofs a store takes from peers:
// each costs a peer nothing but a throwaway identity that signs two
// entries, so without a bound a hostile peer fills the disk with them.
const DefaultMaxForkProofs = 4096

// ErrTooManyForkProofs is AddForkProof's error once the store holds
// its bound of proofs.
var ErrTooManyForkProofs = errors.New("ledger: fork proof store full")

var (
	bLogs  = []byte("logs")
	bHeads = []byte("heads")
	bForks = []byte("forks")
)

// Head summarises a log: its length and last entry.
type Head struct {
	Author PeerID
	Length uint64 // number of entries; the next index
	Hash   Hash   // hash of entry Length-1; zero when empty
	Time   time.Time
}

// Open opens (creating if needed) the store at path, signing with key.
func Open(path string, key ed25519.PrivateKey, opt Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	return newStore(db, key, opt)
}

// OpenDB uses an already open bbolt database (the node's home may share one).
func OpenDB(db *bolt.DB, key ed25519.PrivateKey, opt Options) (*Store, error) {
	return newStore(db, key, opt)
}

func newStore(db *bolt.DB, key ed25519.PrivateKey, opt Options) (*Store, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger key: want %d bytes, have %d", ed25519.PrivateKeySize, len(key))
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bLogs, bHeads, bForks} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger buckets: %w", err)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	maxForks := opt.MaxForkProofs
	if maxForks <= 0 {
		maxForks = DefaultMaxForkProofs
	}
	return &Store{db: db, key: key, self: PeerIDOf(key.Public().(ed25519.PublicKey)), now: now, maxForks: maxForks}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Self returns the id the store signs as.
func (s *Store) Self() PeerID { return s.self }

// Key returns the signing key (to countersign lease terms and receipts).
func (s *Store) Key() ed25519.PrivateKey { return s.key }

func encodeHead(h Head) []byte {
	b := binary.BigEndian.AppendUint64(nil, h.Length)
	b = append(b, h.Hash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.Time.UnixMilli()))
}

func headIn(tx *bolt.Tx, author PeerID) Head {
	h := Head{Author: author}
	v := tx.Bucket(bHeads).Get(author[:])
	if len(v) == 48 {
		h.Length = binary.BigEndian.Uint64(v[:8])
		copy(h.Hash[:], v[8:40])
		h.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(v[40:]))).UTC()
	}
	return h
}

// Head returns the head of author's log as stored here.
func (s *Store) Head(author PeerID) (Head, error) {
	var h Head
	err := s.db.View(func(tx *bolt.Tx) error { h = headIn(tx, author); return nil })
	return h, err
}

// Heads returns the heads of every log held, the node's own first.
func (s *Store) Heads() ([]Head, error) {
	var hs []Head
	err := s.db.View(func(tx *bolt.Tx) error {
		hs = append(hs, headIn(tx, s.self))
		return tx.Bucket(bHeads).ForEach(func(k, _ []byte) error {
			if a := PeerID(k); a != s.self {
				hs = append(hs, headIn(tx, a))
			}
			return nil
		})
	})
	return hs, err
}

func idxKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// Append signs body as the next entry of the node's own log and stores it.
func (s *Store) Append(body Body) (*Entry, error) {
	// A countersignature that does not verify would make the node's own
	// log fail verification everywhere: refuse it here.
	for _, c := range countersigsOf(body) {
		if !verifyOne(c) {
			return nil, fmt.Errorf("append to ledger: %v's countersignature does not verify: %w", c.key.Short(), ErrFormat)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *Entry
	err := s.db.Update(func(tx *bolt.Tx) error {
		h := headIn(tx, s.self)
		var prev *Entry
		if h.Length > 0 {
			raw := tx.Bucket(bLogs).Bucket(s.self[:]).Get(idxKey(h.Length - 1))
			p, err := DecodeEntry(raw)
			if err != nil {
				return fmt.Errorf("own entry %d: %w", h.Length-1, err)
			}
			prev = p
		}
		var err error
		if e, err = NewEntry(s.key, prev, s.now(), body); err != nil {
			return err
		}
		return putEntries(tx, s.self, e.Index, [][]byte{e.Encode()}, Head{Author: s.self, Length: e.Index + 1, Hash: e.Hash(), Time: e.Time})
	})
	if err != nil {
		return nil, fmt.Errorf("append to ledger: %w", err)
	}
	return e, nil
}

func countersigsOf(b Body) []sigCheck {
	if b == nil {
		return nil // NewEntry says what is wrong
	}
	return b.countersigs(nil)
}

func putEntries(tx *bolt.Tx, author PeerID, start uint64, raw [][]byte, h Head) error {
	lb, err := tx.Bucket(bLogs).CreateBucketIfNotExists(author[:])
	if err != nil {
		return err
	}
	for i, r := range raw {
		if err := lb.Put(idxKey(start+uint64(i)), r); err != nil {
			return err
		}
	}
	return tx.Bucket(bHeads).Put(author[:], encodeHead(h))
}

// Raw returns up to n encoded entries of author's log from index from.
func (s *Store) Raw(author PeerID, from uint64, n int) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bLogs).Bucket(author[:])
		if lb == nil {
			return nil
		}
		c := lb.Cursor()
		for k, v := c.Seek(idxKey(from)); k != nil && len(out) < n; k, v = c.Next() {
			out = append(out, bytes.Clone(v))
		}
		return nil
	})
	return out, err
}

// Entries returns up to n decoded entries of author's log from index from.
func (s *Store) Entries(author PeerID, from uint64, n int) ([]*Entry, error) {
	raw, err := s.Raw(author, from, n)
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(raw))
	for i, r := range raw {
		e, err := DecodeEntry(r)
		if err != nil {
			return nil, fmt.Errorf("stored entry %d of %v: %w", from+uint64(i), author.Short(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Import verifies entries of author's log starting at index start and adds
// those past the stored head. Entries overlapping what is stored must match
// it: a validly signed different entry yields a stored ForkProof and an error
// wrapping ErrFork. A convicted author's entries are not imported. When an
// entry fails, the verified ones before it are kept and the error (a
// *VerifyError) names the failing index.
func (s *Store) Import(author PeerID, start uint64, raw [][]byte) (added int, err error) {
	if author == s.self {
		return 0, fmt.Errorf("import: refusing to import our own log: %w", ErrChain)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var result error // what went wrong with the entries; the transaction still commits
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bForks).Get(author[:]) != nil {
			result = fmt.Errorf("import %v: %w (proof held)", author.Short(), ErrFork)
			return nil
		}
		h := headIn(tx, author)
		if start > h.Length {
			result = fmt.Errorf("import %v from %d: we hold only %d entries: %w", author.Short(), start, h.Length, ErrChain)
			return nil
		}
		lb := tx.Bucket(bLogs).Bucket(author[:])
		for start < h.Length && len(raw) > 0 { // overlap: must match what we hold
			held := lb.Get(idxKey(start))
			if !sameSigned(held, raw[0]) {
				p, perr := NewForkProof(held, raw[0])
				if perr != nil {
					result = &VerifyError{Author: author, Index: start, Err: fmt.Errorf("differs from the entry held: %w", perr)}
					return nil
				}
				result = &VerifyError{Author: author, Index: start, Err: ErrFork}
				return tx.Bucket(bForks).Put(author[:], p.Encode())
			}
			start++
			raw = raw[1:]
		}
		if len(raw) == 0 {
			return nil
		}
		es, verr := VerifyChain(author, h.Length, h.Hash, h.Time, raw, ChainOptions{Now: s.now(), MaxSkew: 10 * time.Minute})
		result = verr
		if len(es) == 0 {
			return nil
		}
		last := es[len(es)-1]
		added = len(es)
		return putEntries(tx, author, h.Length, raw[:len(es)], Head{Author: author, Length: last.Index + 1, Hash: last.Hash(), Time: last.Time})
	})
	if err != nil {
		return 0, fmt.Errorf("import %v: %w", author.Short(), err)
	}
	return added, result
}

// sameSigned reports whether two encoded entries have the same signed bytes.
func sameSigned(a, b []byte) bool {
	if len(a) < SigSize || len(b) < SigSize {
		return false
	}
	return bytes.Equal(a[:len(a)-SigSize], b[:len(b)-SigSize])
}

// AddForkProof verifies and stores a proof received from a peer. It reports
// whether the proof was new.
func (s *Store) AddForkProof(p *ForkProof) (bool, error) {
	author, _, err := p.Verify()
	if err != nil {
		return false, err
	}
	isNew := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bForks)
		if b.Get(author[:]) != nil {
			return nil
		}
		if b.Stats().KeyN >= s.maxForks {
			return fmt.Errorf("fork proof of %v: %w (%d held)", author.Short(), ErrTooManyForkProofs, s.maxForks)
		}
		isNew = true
		return b.Put(author[:], p.Encode())
	})
	return isNew, err
}

// ForkProofs returns every proof held.
func (s *Store) ForkProofs() ([]*ForkProof, error) {
	var out []*ForkProof
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bForks).ForEach(func(k, v []byte) error {
			p, err := DecodeForkProof(v)
			if err != nil {
				return fmt.Errorf("stored fork proof of %v: %w", PeerID(k).Short(), err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Convicted reports whether a fork proof against p is held.
func (s *Store) Convicted(p PeerID) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error { found = tx.Bucket(bForks).Get(p[:]) != nil; return nil })
	return found
}
