package boltserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// Verify checks the store's invariants (docs/spec/disk-store.md): every
// indexed share has a file or inline data of its size, all inline data is
// indexed, every si with data has a lease,
// the expiry index holds exactly each si's latest expiry, and the usage
// counters match. It reads metadata and file sizes, never share data, and
// returns all problems found joined, each wrapping grid.ErrCorrupt.
func (s *Server) Verify(ctx context.Context) (err error) {
	old, err := s.enter()
	if err != nil {
		return err
	}
	defer s.contain(&err, old)
	var problems []error
	bad := func(format string, args ...any) {
		if len(problems) < 100 {
			problems = append(problems, fmt.Errorf(format+": %w", append(args, grid.ErrCorrupt)...))
		}
	}
	s.mu.Lock()
	used, count := s.used, s.count
	s.mu.Unlock()
	err = s.db.View(func(tx *bolt.Tx) error {
		var sumUsed int64
		var sumCount int
		withData := map[caps.StorageIndex]bool{}
		err := tx.Bucket(bShares).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(k) != shareKeyLen || len(v) != 8 {
				bad("share entry %x", k)
				return nil
			}
			var si caps.StorageIndex
			copy(si[:], k)
			withData[si] = true
			size := int64(binary.BigEndian.Uint64(v))
			sumUsed += size + grid.ShareCharge
			sumCount++
			if d := tx.Bucket(bInline).Get(k); d != nil {
				if int64(len(d)) != size {
					bad("share %d of %v: inline data has %d bytes, index says %d", k[siLen], si, len(d), size)
				}
				return nil
			}
			st, err := os.Stat(filepath.Join(s.dir, sharePath(si, int(k[siLen]))))
			switch {
			case errors.Is(err, os.ErrNotExist):
				bad("share %d of %v: file missing", k[siLen], si)
			case err != nil:
				return err
			case st.Size() != size:
				bad("share %d of %v: file has %d bytes, index says %d", k[siLen], si, st.Size(), size)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bInline).ForEach(func(k, _ []byte) error {
			if tx.Bucket(bShares).Get(k) == nil {
				bad("inline share data %x without an index entry", k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bSlotShares).ForEach(func(k, v []byte) error {
			if len(k) != shareKeyLen || len(v) < 8 {
				bad("slot share entry %x", k)
				return nil
			}
			var si caps.StorageIndex
			copy(si[:], k)
			if tx.Bucket(bSlots).Get(si[:]) == nil {
				bad("slot share %d of %v without a write enabler", k[siLen], si)
			}
			withData[si] = true
			sumUsed += int64(len(v)-8) + grid.ShareCharge
			sumCount++
			return nil
		})
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for si := range withData {
			exp, ok, err := maxExpiry(tx, si)
			if err != nil {
				return err
			}
			if !ok {
				bad("%v holds data but no lease", si)
				continue
			}
			want[string(expiryKey(exp, si))] = true
		}
		err = tx.Bucket(bExpiry).ForEach(func(k, _ []byte) error {
			if !want[string(k)] {
				bad("expiry entry %x matches no si's latest lease", k)
			}
			delete(want, string(k))
			return nil
		})
		if err != nil {
			return err
		}
		for k := range want {
			bad("expiry entry %x missing", k)
		}
		err = tx.Bucket(bLeases).ForEach(func(k, v []byte) error {
			var si caps.StorageIndex
			copy(si[:], k)
			sumUsed += grid.LeaseCharge
			if len(k) != leaseKeyLen || len(v) != leaseValLen {
				bad("lease entry %x", k)
			} else if !withData[si] {
				bad("lease on %v, which holds nothing", si)
			}
			return nil
		})
		if err != nil {
			return err
		}
		sumUsed += int64(tx.Bucket(bSlots).Stats().KeyN) * grid.SlotCharge
		if sumUsed != used || sumCount != count {
			bad("counters say %d bytes in %d shares, index has %d in %d", used, count, sumUsed, sumCount)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify store %s: %w", s.dir, err)
	}
	return errors.Join(problems...)
}
