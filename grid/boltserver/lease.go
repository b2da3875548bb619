package boltserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// Leases are kept per storage index (they cover every share held for it):
// bLeases maps si || renew secret to cancel secret || expiry, and bExpiry
// holds one key per storage index, its latest expiry || si, so a sweep
// walks only the expired front of that bucket.

// maxExpiry returns the latest expiry among si's leases.
func maxExpiry(tx *bolt.Tx, si caps.StorageIndex) (exp uint64, ok bool, err error) {
	c := tx.Bucket(bLeases).Cursor()
	for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
		if len(v) != leaseValLen {
			return 0, false, fmt.Errorf("lease entry %x: %w", k, grid.ErrCorrupt)
		}
		exp, ok = max(exp, binary.BigEndian.Uint64(v[32:])), true
	}
	return exp, ok, nil
}

// putLease adds l to si, or renews the lease with l's renew secret (the
// first cancel secret stays): either way it then expires the lease term
// from now (l.Expires is ignored, see grid.Lease). A new lease is refused
// with grid.ErrLeaseLimit if si holds grid.MaxLeases unexpired ones, and
// with grid.ErrNoSpace if its charge does not fit the quota, unless
// reserved says the caller has already reserved it. It returns whether a
// lease was added (the caller adds grid.LeaseCharge to s.used after the
// commit). Its cost is a lookup plus a walk of si's leases, at most
// grid.MaxLeases (+ expired ones it prunes).
func (s *Server) putLease(tx *bolt.Tx, si caps.StorageIndex, l grid.Lease, reserved bool) (added bool, err error) {
	before, had, err := maxExpiry(tx, si)
	if err != nil {
		return false, err
	}
	leases := tx.Bucket(bLeases)
	key := leaseKey(si, l.RenewSecret)
	now := s.now()
	exp := timeKey(now.Add(s.term))
	v := make([]byte, leaseValLen)
	copy(v, l.CancelSecret[:])
	if old := leases.Get(key); old != nil {
		if len(old) != leaseValLen {
			return false, fmt.Errorf("lease entry: %w", grid.ErrCorrupt)
		}
		copy(v, old[:32])
		exp = max(exp, binary.BigEndian.Uint64(old[32:])) // a clock stepping back never shortens
	} else {
		pruned, err := s.makeRoom(tx, si, timeKey(now))
		if err != nil {
			return false, err
		}
		if !reserved && pruned == 0 {
			s.mu.Lock()
			full := s.quota > 0 && s.used+s.reserved+grid.LeaseCharge > s.quota
			s.mu.Unlock()
			if full {
				return false, fmt.Errorf("lease: %w", grid.ErrNoSpace)
			}
		}
		added = pruned == 0 // a pruned lease's charge pays for this one
	}
	binary.BigEndian.PutUint64(v[32:], exp)
	if err := leases.Put(key, v); err != nil {
		return false, err
	}
	return added, fixExpiry(tx, si, before, had)
}

// leaseRoom returns grid.ErrLeaseLimit if lease would be refused by the
// limit (checked before a write reads its data; the commit checks again).
func (s *Server) leaseRoom(si caps.StorageIndex, lease grid.Lease) error {
	now := timeKey(s.now())
	return s.db.View(func(tx *bolt.Tx) error {
		leases := tx.Bucket(bLeases)
		if leases.Get(leaseKey(si, lease.RenewSecret)) != nil {
			return nil
		}
		n := 0
		c := leases.Cursor()
		for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
			if len(v) == leaseValLen && binary.BigEndian.Uint64(v[32:]) < now {
				return nil // an expired one makes room
			}
			n++
		}
		if n >= grid.MaxLeases {
			return grid.ErrLeaseLimit
		}
		return nil
	})
}

// makeRoom gets si ready for one more lease: below grid.MaxLeases it does
// nothing; at the limit it deletes one lease that has already expired
// (returning 1), or refuses with grid.ErrLeaseLimit.
func (s *Server) makeRoom(tx *bolt.Tx, si caps.StorageIndex, now uint64) (pruned int, err error) {
	n := 0
	var dead []byte
	c := tx.Bucket(bLeases).Cursor()
	for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
		n++
		if dead == nil && len(v) == leaseValLen && binary.BigEndian.Uint64(v[32:]) < now {
			dead = bytes.Clone(k)
		}
	}
	if n < grid.MaxLeases {
		return 0, nil
	}
	if dead == nil {
		return 0, grid.ErrLeaseLimit
	}
	return 1, tx.Bucket(bLeases).Delete(dead)
}

// fixExpiry moves si's bExpiry key from before (if had) to its current
// latest lease expiry, or drops it if si has no lease left.
func fixExpiry(tx *bolt.Tx, si caps.StorageIndex, before uint64, had bool) error {
	after, has, err := maxExpiry(tx, si)
	if err != nil {
		return err
	}
	if had == has && before == after {
		return nil
	}
	idx := tx.Bucket(bExpiry)
	if had {
		if err := idx.Delete(expiryKey(before, si)); err != nil {
			return err
		}
	}
	if has {
		return idx.Put(expiryKey(after, si), nil)
	}
	return nil
}

// held reports whether anything is stored for si.
func held(tx *bolt.Tx, si caps.StorageIndex) bool {
	if tx.Bucket(bSlots).Get(si[:]) != nil {
		return true
	}
	k, _ := tx.Bucket(bShares).Cursor().Seek(si[:])
	return k != nil && bytes.HasPrefix(k, si[:])
}

// AddLease implements grid.Server.
func (s *Server) AddLease(ctx context.Context, si caps.StorageIndex, lease grid.Lease) (err error) {
	old, err := s.enter()
	if err != nil {
		return err
	}
	defer s.contain(&err, old)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	if err := s.addLease(si, lease); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	return nil
}

// addLease adds lease to si if anything is held for it, else ErrNotFound.
func (s *Server) addLease(si caps.StorageIndex, lease grid.Lease) error {
	var added bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		if !held(tx, si) {
			return grid.ErrNotFound
		}
		var err error
		added, err = s.putLease(tx, si, lease, false)
		return err
	})
	if err == nil && added {
		s.mu.Lock()
		s.used += grid.LeaseCharge
		s.mu.Unlock()
	}
	return err
}

// deleted is what a transaction removed, to finish after it commits.
type deleted struct {
	files  []string
	bytes  int64 // share bytes plus metadata charges
	shares int
}

// deleteSI removes everything held for si from the index and records the
// share files to remove once the transaction has committed.
func deleteSI(tx *bolt.Tx, si caps.StorageIndex, d *deleted) error {
	exp, had, err := maxExpiry(tx, si)
	if err != nil {
		return err
	}
	if had {
		if err := tx.Bucket(bExpiry).Delete(expiryKey(exp, si)); err != nil {
			return err
		}
	}
	if tx.Bucket(bSlots).Get(si[:]) != nil {
		d.bytes += grid.SlotCharge
	}
	del := func(b []byte, each func(k, v []byte)) error {
		bk := tx.Bucket(b)
		var keys [][]byte
		c := bk.Cursor()
		for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
			if each != nil {
				each(k, v)
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}
	inline := tx.Bucket(bInline)
	err = del(bShares, func(k, v []byte) {
		if len(k) == shareKeyLen && len(v) == 8 {
			if inline.Get(k) == nil {
				d.files = append(d.files, sharePath(si, int(k[siLen])))
			}
			d.bytes += int64(binary.BigEndian.Uint64(v)) + grid.ShareCharge
			d.shares++
		}
	})
	if err != nil {
		return err
	}
	if err := del(bInline, nil); err != nil {
		return err
	}
	err = del(bSlotShares, func(k, v []byte) {
		if len(v) >= 8 {
			d.bytes += int64(len(v)-8) + grid.ShareCharge
			d.shares++
		}
	})
	if err != nil {
		return err
	}
	if err := tx.Bucket(bSlots).Delete(si[:]); err != nil {
		return err
	}
	return del(bLeases, func(_, _ []byte) { d.bytes += grid.LeaseCharge })
}

// finish removes the files of a committed deletion and updates the counts.
// A file that cannot be removed is only logged: Open removes unindexed
// files. Callers hold delMu exclusively.
func (s *Server) finish(d *deleted) {
	for _, rel := range d.files {
		p := filepath.Join(s.dir, rel)
		s.fds.forget(p)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("Cannot remove deleted share file", "file", rel, "err", err)
		}
		os.Remove(filepath.Dir(p)) // the si directory, once empty
	}
	s.mu.Lock()
	s.used -= d.bytes
	s.count -= d.shares
	s.mu.Unlock()
}

// CancelLease implements grid.LeaseCanceller: it drops the lease of si
// whose cancel secret matches, deleting si's shares if no lease is left.
// Nothing held for si is ErrNotFound; no matching lease is ErrUnauthorized.
func (s *Server) CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) (err error) {
	old, err := s.enter()
	if err != nil {
		return err
	}
	defer s.contain(&err, old)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cancel lease on %v: %w", si, err)
	}
	s.delMu.Lock()
	defer s.delMu.Unlock()
	var d deleted
	err = s.db.Update(func(tx *bolt.Tx) error {
		d = deleted{}
		if !held(tx, si) {
			return grid.ErrNotFound
		}
		before, had, err := maxExpiry(tx, si)
		if err != nil {
			return err
		}
		leases := tx.Bucket(bLeases)
		var match [][]byte
		left := 0
		c := leases.Cursor()
		for k, v := c.Seek(si[:]); k != nil && bytes.HasPrefix(k, si[:]); k, v = c.Next() {
			if len(v) == leaseValLen && subtle.ConstantTimeCompare(v[:32], cancelSecret[:]) == 1 {
				match = append(match, bytes.Clone(k))
			} else {
				left++
			}
		}
		if len(match) == 0 {
			return grid.ErrUnauthorized
		}
		if left == 0 { // deleteSI finds the expiry key from the leases: keep them until then
			return deleteSI(tx, si, &d)
		}
		for _, k := range match {
			if err := leases.Delete(k); err != nil {
				return err
			}
			d.bytes += grid.LeaseCharge
		}
		return fixExpiry(tx, si, before, had)
	})
	if err != nil {
		return fmt.Errorf("cancel lease on %v: %w", si, err)
	}
	s.finish(&d)
	return nil
}

// sweepBatch bounds the storage indexes deleted in one transaction, so a
// sweep after a long downtime does not hold the store for long.
const sweepBatch = 256

// Sweep deletes every storage index whose leases all expired more than
// Grace ago and returns how many shares (immutable and slot shares) it
// deleted. It reads only the expired front of the expiry index.
func (s *Server) Sweep(ctx context.Context) (_ int, err error) {
	old, err := s.enter()
	if err != nil {
		return 0, err
	}
	defer s.contain(&err, old)
	cutoff := timeKey(s.now().Add(-s.grace))
	total := 0
	// Each batch deletes up to sweepBatch expiry keys, so the loop ends once
	// the expired front is gone; ctx bounds it in time.
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		n, more, err := s.sweepOnce(cutoff)
		total += n
		if err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

func (s *Server) sweepOnce(cutoff uint64) (n int, more bool, err error) {
	s.delMu.Lock()
	defer s.delMu.Unlock()
	var d deleted
	err = s.db.Update(func(tx *bolt.Tx) error {
		d, more = deleted{}, false
		type ent struct {
			exp uint64
			si  caps.StorageIndex
		}
		var ents []ent
		c := tx.Bucket(bExpiry).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != expiryKeyLen {
				return fmt.Errorf("expiry entry %x: %w", k, grid.ErrCorrupt)
			}
			e := ent{exp: binary.BigEndian.Uint64(k)}
			if e.exp >= cutoff {
				break
			}
			if len(ents) == sweepBatch {
				more = true
				break
			}
			copy(e.si[:], k[8:])
			ents = append(ents, e)
		}
		for _, e := range ents {
			// Trust the leases, not the index: a key that disagrees with
			// them (which the invariant forbids) is replaced, not obeyed.
			exp, has, err := maxExpiry(tx, e.si)
			if err != nil {
				return err
			}
			if has && exp >= cutoff {
				s.log.Warn("Expiry index disagreed with leases; fixed", "si", e.si)
				if err := tx.Bucket(bExpiry).Delete(expiryKey(e.exp, e.si)); err != nil {
					return err
				}
				if err := tx.Bucket(bExpiry).Put(expiryKey(exp, e.si), nil); err != nil {
					return err
				}
				continue
			}
			if err := tx.Bucket(bExpiry).Delete(expiryKey(e.exp, e.si)); err != nil {
				return err
			}
			if err := deleteSI(tx, e.si, &d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	s.finish(&d)
	return d.shares, more, nil
}

// Run sweeps every Options.SweepEvery until ctx ends, logging what each
// sweep deleted. It returns nil when ctx ends, and the failure if the
// store fails (a failed store is not swept).
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		if f := s.Failure(); f != nil {
			return f
		}
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("Sweep failed", "deleted", n, "err", err)
		case n > 0:
			s.log.Info("Swept expired shares", "deleted", n)
		}
	}
}
