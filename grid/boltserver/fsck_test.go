package boltserver_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// fsckStore is a closed store holding file shares, inline shares and a
// slot, each under lease "owner".
type fsckStore struct {
	dir              string
	fileSI, inlineSI caps.StorageIndex
	slotSI           caps.StorageIndex
	big, small       []byte
}

func newFsckStore(t *testing.T) *fsckStore {
	t.Helper()
	f := &fsckStore{dir: t.TempDir(), fileSI: gridtest.SI(), inlineSI: gridtest.SI(), slotSI: gridtest.SI(),
		big: gridtest.Data(1, 100_000), small: gridtest.Data(2, 500)}
	s, err := boltserver.Open(f.dir, boltserver.Options{ID: "fsck-srv"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lease := gridtest.NewLease("owner", time.Time{})
	for shnum := range 3 {
		if err := s.WriteShare(ctx, f.fileSI, shnum, int64(len(f.big)), bytes.NewReader(f.big), lease); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteShare(ctx, f.inlineSI, 0, int64(len(f.small)), bytes.NewReader(f.small), lease); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSlot(ctx, f.slotSI, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 1, Seq: 3, Data: f.small}}, lease); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return f
}

func TestFsckHealthy(t *testing.T) {
	f := newFsckStore(t)
	rep, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{Rebuild: true})
	if err != nil || !rep.Healthy || rep.Rebuilt || len(rep.Problems) != 0 {
		t.Fatalf("Fsck of a healthy store = %+v, %v", rep, err)
	}
}

func TestFsckInUse(t *testing.T) {
	f := newFsckStore(t)
	s := open(t, f.dir, boltserver.Options{})
	_ = s
	if _, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{Rebuild: true}); !errors.Is(err, boltserver.ErrInUse) {
		t.Fatalf("Fsck of an open store: %v, want ErrInUse", err)
	}
}

// An index whose keys disagree with the files: Open refuses it; a rebuild
// keeps every share, the slot and the owner's lease.
func TestFsckRebuildsDamagedIndex(t *testing.T) {
	f := newFsckStore(t)
	db, err := bolt.Open(filepath.Join(f.dir, "store.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { // what a changed key byte does
		b := tx.Bucket([]byte("shares"))
		k := append(f.fileSI[:], 1)
		v := bytes.Clone(b.Get(k))
		if err := b.Delete(k); err != nil {
			return err
		}
		bad := bytes.Clone(k)
		bad[3] ^= 0x40
		return b.Put(bad, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boltserver.Open(f.dir, boltserver.Options{}); !errors.Is(err, grid.ErrFailed) {
		t.Fatalf("Open of the damaged store: %v, want grid.ErrFailed", err)
	}
	check, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{})
	if err != nil || check.Healthy || check.Rebuilt || len(check.Problems) == 0 {
		t.Fatalf("Fsck without rebuild = %+v, %v; want problems and no rebuild", check, err)
	}
	rep, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{Rebuild: true})
	if err != nil || !rep.Healthy || !rep.Rebuilt {
		t.Fatalf("Fsck --rebuild = %+v, %v", rep, err)
	}
	if rep.FileShares != 3 || rep.InlineShares != 1 || rep.SlotShares != 1 || rep.NewLeases != 0 {
		t.Errorf("rebuild report %+v, want 3 file shares, 1 inline, 1 slot share, all leases salvaged", rep)
	}
	if _, err := os.Stat(rep.OldIndex); err != nil {
		t.Errorf("old index not kept: %v", err)
	}
	s := open(t, f.dir, boltserver.Options{})
	for shnum := range 3 {
		mustRead(t, s, f.fileSI, shnum, f.big)
	}
	mustRead(t, s, f.inlineSI, 0, f.small)
	if got, err := s.ReadSlot(t.Context(), f.slotSI); err != nil || len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("slot after rebuild: %+v, %v", got, err)
	}
	// The owner's lease survived: cancelling it deletes the share.
	if err := s.CancelLease(t.Context(), f.fileSI, gridtest.NewLease("owner", time.Time{}).CancelSecret); err != nil {
		t.Fatalf("owner's lease after rebuild: %v", err)
	}
	if err := s.WriteSlot(t.Context(), f.slotSI, gridtest.Enabler("other"), []grid.SlotShare{{Shnum: 1, Seq: 9}}, gridtest.NewLease("x", time.Time{})); !errors.Is(err, grid.ErrBadWriteEnabler) {
		t.Fatalf("write enabler after rebuild: %v", err)
	}
}

// An index destroyed beyond reading (both meta pages overwritten), or gone:
// a rebuild indexes the share files and gives them fresh leases; what lived
// only in the index (small shares, slots) is lost and reported.
func TestFsckRebuildsUnreadableIndex(t *testing.T) {
	for _, how := range []string{"garbled", "deleted"} {
		t.Run(how, func(t *testing.T) {
			f := newFsckStore(t)
			p := filepath.Join(f.dir, "store.db")
			if how == "deleted" {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			} else {
				fh, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fh.WriteAt(bytes.Repeat([]byte{0x5a}, 8192), 0); err != nil {
					t.Fatal(err)
				}
				fh.Close()
				if _, err := boltserver.Open(f.dir, boltserver.Options{}); !errors.Is(err, grid.ErrFailed) {
					t.Fatalf("Open with both meta pages garbled: %v, want grid.ErrFailed", err)
				}
			}
			if _, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{Rebuild: true}); err == nil {
				t.Fatal("rebuild without knowing the server id: nil error")
			}
			rep, err := boltserver.Fsck(t.Context(), f.dir, boltserver.FsckOptions{Rebuild: true, ID: "fsck-srv"})
			if err != nil || !rep.Healthy || !rep.Rebuilt || rep.FileShares != 3 || rep.NewLeases != 1 {
				t.Fatalf("Fsck --rebuild = %+v, %v; want 3 file shares under 1 fresh lease", rep, err)
			}
			s := open(t, f.dir, boltserver.Options{})
			for shnum := range 3 {
				mustRead(t, s, f.fileSI, shnum, f.big)
			}
			// The owner renews: their lease is added.
			if err := s.AddLease(t.Context(), f.fileSI, gridtest.NewLease("owner", time.Time{})); err != nil {
				t.Fatal(err)
			}
		})
	}
}
