package boltserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func lease(name string) grid.Lease { return gridtest.NewLease(name, time.Now().Add(time.Hour)) }

func write(t *testing.T, s grid.Server, si caps.StorageIndex, shnum int, data []byte) {
	t.Helper()
	if err := s.WriteShare(t.Context(), si, shnum, int64(len(data)), bytes.NewReader(data), lease("a")); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, s grid.Server, si caps.StorageIndex, shnum int, want []byte) {
	t.Helper()
	got, err := s.ReadShare(t.Context(), si, shnum, 0, int64(len(want))+1)
	if err != nil {
		t.Fatalf("ReadShare(%d): %v", shnum, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadShare(%d): %d bytes differ from the %d written", shnum, len(got), len(want))
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s, err := boltserver.Open(dir, boltserver.Options{ID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	si, slot := gridtest.SI(), gridtest.SI()
	a, b := gridtest.Data(1, 300_000), gridtest.Data(2, 17)
	write(t, s, si, 0, a)
	write(t, s, si, 9, b)
	sw := []grid.SlotShare{{Shnum: 1, Seq: 4, Data: gridtest.Data(3, 99)}}
	if err := s.WriteSlot(t.Context(), slot, gridtest.Enabler("w"), sw, lease("a")); err != nil {
		t.Fatal(err)
	}
	st1, _ := s.Stat(t.Context())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, boltserver.Options{}) // id from the store
	if s.ID() != "srv" {
		t.Fatalf("ID after reopen = %q, want srv", s.ID())
	}
	mustRead(t, s, si, 0, a)
	mustRead(t, s, si, 9, b)
	got, err := s.ReadSlot(t.Context(), slot)
	if err != nil || len(got) != 1 || got[0].Seq != 4 || !bytes.Equal(got[0].Data, sw[0].Data) {
		t.Fatalf("ReadSlot after reopen = %+v, %v", got, err)
	}
	// The enabler and sequence number survived too.
	err = s.WriteSlot(t.Context(), slot, gridtest.Enabler("other"), []grid.SlotShare{{Shnum: 1, Seq: 5}}, lease("a"))
	if !errors.Is(err, grid.ErrBadWriteEnabler) {
		t.Fatalf("wrong enabler after reopen: %v", err)
	}
	err = s.WriteSlot(t.Context(), slot, gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 1, Seq: 4}}, lease("a"))
	if !errors.Is(err, grid.ErrStale) {
		t.Fatalf("stale seq after reopen: %v", err)
	}
	st2, _ := s.Stat(t.Context())
	if st1 != st2 || st2.Shares != 3 || st2.Used != 300_000+17+99+3*grid.ShareCharge+grid.SlotCharge+2*grid.LeaseCharge {
		t.Fatalf("Stat before close %+v, after reopen %+v", st1, st2)
	}
	// A lease cancel after reopen still finds the lease.
	if err := s.CancelLease(t.Context(), si, lease("a").CancelSecret); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadShare(t.Context(), si, 0, 0, 1); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("after cancel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shares", si.String()[:2], si.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("share directory still there after its shares were deleted: %v", err)
	}
}

func TestInUse(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, boltserver.Options{ID: "srv"})
	_, err := boltserver.Open(dir, boltserver.Options{ID: "srv", LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, boltserver.ErrInUse) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of a store in use: %v, want an error saying it is in use", err)
	}
}

func TestWrongID(t *testing.T) {
	dir := t.TempDir()
	s, err := boltserver.Open(dir, boltserver.Options{ID: "one"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := boltserver.Open(dir, boltserver.Options{ID: "two"}); err == nil {
		t.Fatal("Open with another server id: nil error")
	}
	if _, err := boltserver.Open(t.TempDir(), boltserver.Options{}); err == nil {
		t.Fatal("Open of a new store without an id: nil error")
	}
}

// A crash can leave temp files and share files renamed but never indexed;
// disk trouble can lose indexed files. Open cleans up after each alone. Both
// kinds of disagreement at once are what a damaged index looks like, and
// then Open deletes nothing and reports the store failed.
func TestOpenRepairsCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	s, err := boltserver.Open(dir, boltserver.Options{ID: "srv", InlineMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	kept, lost := gridtest.SI(), gridtest.SI()
	data := gridtest.Data(1, 1000)
	write(t, s, kept, 0, data)
	write(t, s, lost, 0, data)
	s.Close()
	reopen := func() *boltserver.Server {
		t.Helper()
		s, err := boltserver.Open(dir, boltserver.Options{InlineMax: -1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tmp := filepath.Join(dir, "tmp", "share-123456")
	if err := os.WriteFile(tmp, []byte("half a share"), 0o600); err != nil {
		t.Fatal(err)
	}
	orphanSI := gridtest.SI()
	orphan := filepath.Join(dir, "shares", orphanSI.String()[:2], orphanSI.String(), "3")
	makeOrphan := func() {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(orphan), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(orphan, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	makeOrphan()
	s = reopen()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file survived Open: %v", err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unindexed share file survived Open: %v", err)
	}
	if l, err := s.ListShares(t.Context(), orphanSI); err != nil || len(l) != 0 {
		t.Errorf("orphan listed: %v, %v", l, err)
	}
	s.Close()

	if err := os.Remove(filepath.Join(dir, "shares", lost.String()[:2], lost.String(), "0")); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	mustRead(t, s, kept, 0, data)
	if l, err := s.ListShares(t.Context(), lost); err != nil || len(l) != 0 {
		t.Errorf("share whose file is gone still listed: %v, %v", l, err)
	}
	st, _ := s.Stat(t.Context())
	if want := int64(1000 + grid.ShareCharge + grid.LeaseCharge); st.Shares != 1 || st.Used != want {
		t.Errorf("Stat after repair = %+v, want 1 share, %d bytes used", st, want)
	}
	if err := s.Verify(t.Context()); err != nil {
		t.Errorf("store after repair: %v", err)
	}
	// The lost share can be stored again.
	write(t, s, lost, 0, data)
	mustRead(t, s, lost, 0, data)
	s.Close()

	// Both at once: refuse, delete nothing.
	makeOrphan()
	if err := os.Remove(filepath.Join(dir, "shares", lost.String()[:2], lost.String(), "0")); err != nil {
		t.Fatal(err)
	}
	s, err = boltserver.Open(dir, boltserver.Options{})
	if !errors.Is(err, grid.ErrFailed) || s != nil {
		t.Fatalf("Open of a store whose index disagrees both ways: %v, want grid.ErrFailed", err)
	}
	if !strings.Contains(err.Error(), "fsck --rebuild") {
		t.Errorf("the error does not say how to repair: %v", err)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("Open of a damaged store removed a share file: %v", err)
	}
}

func TestTruncatedFileIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, boltserver.Options{ID: "srv", OpenFiles: -1, InlineMax: -1})
	si := gridtest.SI()
	write(t, s, si, 0, gridtest.Data(1, 1000))
	if err := os.Truncate(filepath.Join(dir, "shares", si.String()[:2], si.String(), "0"), 500); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadShare(t.Context(), si, 0, 400, 200); !errors.Is(err, grid.ErrCorrupt) {
		t.Fatalf("read past a truncated file's end: %v, want ErrCorrupt", err)
	}
	if b, err := s.ReadShare(t.Context(), si, 0, 0, 500); err != nil || len(b) != 500 {
		t.Fatalf("read of the intact part: %d bytes, %v", len(b), err)
	}
	if err := s.Verify(t.Context()); !errors.Is(err, grid.ErrCorrupt) {
		t.Fatalf("Verify of a store with a truncated share: %v, want ErrCorrupt", err)
	}
	if err := s.CancelLease(t.Context(), si, lease("a").CancelSecret); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseExpiryAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := gridtest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	opts := boltserver.Options{ID: "srv", Now: clk.Now, Grace: time.Hour, LeaseTerm: 24 * time.Hour}
	s, err := boltserver.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	short, renewed := gridtest.SI(), gridtest.SI()
	data := gridtest.Data(1, 100)
	for _, si := range []caps.StorageIndex{short, renewed} {
		if err := s.WriteShare(ctx, si, 0, 100, bytes.NewReader(data), gridtest.NewLease("x", clk.Now().Add(24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(12 * time.Hour)
	if err := s.AddLease(ctx, renewed, gridtest.NewLease("y", clk.Now())); err != nil { // now ends at 36 h
		t.Fatal(err)
	}
	s.Close()
	clk.Advance(14 * time.Hour)
	s = open(t, dir, opts)
	// Cancelling without the secret is refused and changes nothing.
	if err := s.CancelLease(ctx, short, gridtest.NewLease("y", time.Time{}).CancelSecret); !errors.Is(err, grid.ErrUnauthorized) {
		t.Fatalf("CancelLease with another client's secret: %v", err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep after expiry+grace = %d, %v; want 1", n, err)
	}
	if _, err := s.ReadShare(ctx, short, 0, 0, 1); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("unrenewed share: %v, want ErrNotFound", err)
	}
	mustRead(t, s, renewed, 0, data)
	if _, err := os.Stat(filepath.Join(dir, "shares", short.String()[:2], short.String(), "0")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("swept share's file still on disk: %v", err)
	}
}

// More expired storage indexes than one sweep batch holds.
func TestSweepManyBatches(t *testing.T) {
	clk := gridtest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	s := open(t, t.TempDir(), boltserver.Options{Now: clk.Now, LeaseTerm: time.Hour, Grace: -1})
	ctx := t.Context()
	const n = 600
	for i := range n {
		if i == n-n/3 {
			clk.Advance(50 * time.Minute) // the rest are leased later
		}
		if err := s.WriteSlot(ctx, gridtest.SI(), gridtest.Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: []byte{byte(i)}}}, gridtest.NewLease("x", clk.Now())); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(30 * time.Minute)
	got, err := s.Sweep(ctx)
	if err != nil || got != n-n/3 {
		t.Fatalf("Sweep = %d, %v; want %d", got, err, n-n/3)
	}
	st, _ := s.Stat(ctx)
	if st.Shares != n/3 {
		t.Fatalf("Stat.Shares after sweep = %d, want %d", st.Shares, n/3)
	}
}

func TestRunSweeps(t *testing.T) {
	clk := gridtest.NewClock(time.Now())
	s := open(t, t.TempDir(), boltserver.Options{Now: clk.Now, SweepEvery: time.Millisecond, LeaseTerm: time.Hour, Grace: -1})
	si := gridtest.SI()
	if err := s.WriteShare(t.Context(), si, 0, 1, bytes.NewReader([]byte{1}), gridtest.NewLease("x", clk.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for ctx.Err() == nil { // bounded by ctx
		l, err := s.ListShares(ctx, si)
		if err == nil && len(l) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatal("Run did not sweep the expired share")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A full disk (not the quota) also reads as grid.ErrNoSpace, and leaves
// nothing behind. Needs root to mount a tiny tmpfs; skipped otherwise.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	s, err := boltserver.Open(dir, boltserver.Options{ID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	si := gridtest.SI()
	err = s.WriteShare(t.Context(), si, 0, 2<<20, bytes.NewReader(gridtest.Data(1, 2<<20)), lease("a"))
	if !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("WriteShare larger than the disk: %v, want ErrNoSpace", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
	if l, err := s.ListShares(t.Context(), si); err != nil || len(l) != 0 {
		t.Fatalf("after a failed write: %v, %v", l, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 0 {
		t.Fatalf("temp files left after a failed write: %d (%v)", len(ents), ents[0].Name())
	}
	// Space is back: a small share fits.
	write(t, s, si, 0, gridtest.Data(2, 1000))
	if err := s.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Inline shares (at most InlineMax bytes, kept in bbolt) survive a reopen,
// leave no file, and are deleted by a sweep or a lease cancel like file
// shares, next to file shares of the same storage index.
func TestInlineSharesReopenAndSweep(t *testing.T) {
	dir := t.TempDir()
	clk := gridtest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	opts := boltserver.Options{ID: "srv", Now: clk.Now, Grace: time.Hour, InlineMax: 4096, LeaseTerm: 24 * time.Hour}
	s, err := boltserver.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	short, long, cancelled := gridtest.SI(), gridtest.SI(), gridtest.SI()
	small, edge, big := gridtest.Data(1, 1000), gridtest.Data(2, 4096), gridtest.Data(3, 4097)
	for _, si := range []caps.StorageIndex{short, long, cancelled} {
		for shnum, data := range [][]byte{small, edge, big} {
			if err := s.WriteShare(ctx, si, shnum, int64(len(data)), bytes.NewReader(data), gridtest.NewLease("x", clk.Now().Add(24*time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.Advance(12 * time.Hour)
	if err := s.AddLease(ctx, long, gridtest.NewLease("y", clk.Now())); err != nil { // ends at 36 h
		t.Fatal(err)
	}
	shareFile := func(si caps.StorageIndex, shnum int) string {
		return filepath.Join(dir, "shares", si.String()[:2], si.String(), fmt.Sprint(shnum))
	}
	for shnum, wantFile := range []bool{false, false, true} {
		if _, err := os.Stat(shareFile(short, shnum)); (err == nil) != wantFile {
			t.Errorf("share %d: file exists = %v, want %v", shnum, err == nil, wantFile)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, opts)
	for _, si := range []caps.StorageIndex{short, long, cancelled} {
		mustRead(t, s, si, 0, small)
		mustRead(t, s, si, 1, edge)
		mustRead(t, s, si, 2, big)
		if got, err := s.ReadShare(ctx, si, 1, 4000, 500); err != nil || !bytes.Equal(got, edge[4000:]) {
			t.Fatalf("read past the end of an inline share: %d bytes, %v", len(got), err)
		}
		if _, err := s.ReadShare(ctx, si, 0, 1000, 1); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read at the end of an inline share: %v, want io.ErrUnexpectedEOF", err)
		}
	}
	if st, _ := s.Stat(ctx); st.Shares != 9 || st.Used != 3*(1000+4096+4097+3*grid.ShareCharge)+4*grid.LeaseCharge {
		t.Fatalf("Stat after reopen = %+v", st)
	}
	// Same size again adds a lease; another size is refused.
	if err := s.WriteShare(ctx, long, 0, 1000, bytes.NewReader(small), gridtest.NewLease("z", clk.Now().Add(time.Hour))); err != nil {
		t.Fatalf("rewrite of an inline share: %v", err)
	}
	if err := s.WriteShare(ctx, long, 0, 999, bytes.NewReader(small[:999]), gridtest.NewLease("z", clk.Now().Add(time.Hour))); err == nil {
		t.Fatal("rewrite of an inline share with another size: nil error")
	}

	if err := s.CancelLease(ctx, cancelled, gridtest.NewLease("x", time.Time{}).CancelSecret); err != nil {
		t.Fatal(err)
	}
	clk.Advance(14 * time.Hour)
	n, err := s.Sweep(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Sweep after expiry+grace = %d, %v; want 3", n, err)
	}
	for _, si := range []caps.StorageIndex{short, cancelled} {
		for shnum := range 3 {
			if _, err := s.ReadShare(ctx, si, shnum, 0, 1); !errors.Is(err, grid.ErrNotFound) {
				t.Fatalf("share %d of a deleted si: %v, want ErrNotFound", shnum, err)
			}
		}
		if _, err := os.Stat(filepath.Dir(shareFile(si, 2))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted si's directory still on disk: %v", err)
		}
	}
	mustRead(t, s, long, 0, small)
	mustRead(t, s, long, 2, big)
	if st, _ := s.Stat(ctx); st.Shares != 3 || st.Used != 1000+4096+4097+3*grid.ShareCharge+3*grid.LeaseCharge {
		t.Fatalf("Stat after sweep = %+v", st)
	}
}

// Many concurrent small writes to one server (they share commits) all
// land intact.
func TestInlineConcurrent(t *testing.T) {
	s := open(t, t.TempDir(), boltserver.Options{})
	const writers = 64
	sis := make([]caps.StorageIndex, writers)
	for i := range sis {
		sis[i] = gridtest.SI()
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := gridtest.Data(uint64(i), 100+i)
			errs[i] = s.WriteShare(t.Context(), sis[i], i%4, int64(len(data)), bytes.NewReader(data), lease("a"))
		}()
	}
	wg.Wait()
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		mustRead(t, s, sis[i], i%4, gridtest.Data(uint64(i), 100+i))
	}
}

// A version 1 store (no inline bucket) opens and is upgraded; a version
// from the future is refused.
func TestStoreVersions(t *testing.T) {
	dir := t.TempDir()
	s, err := boltserver.Open(dir, boltserver.Options{ID: "srv", InlineMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	si := gridtest.SI()
	write(t, s, si, 0, gridtest.Data(1, 500))
	s.Close()
	setVersion := func(v uint32, dropInline bool) {
		db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			if dropInline {
				if err := tx.DeleteBucket([]byte("inline")); err != nil {
					return err
				}
			}
			return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint32(nil, v))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setVersion(1, true) // exactly what version 1 wrote
	s, err = boltserver.Open(dir, boltserver.Options{})
	if err != nil {
		t.Fatalf("Open of a version 1 store: %v", err)
	}
	mustRead(t, s, si, 0, gridtest.Data(1, 500))
	write(t, s, si, 1, gridtest.Data(2, 50)) // inline, in the bucket the upgrade made
	mustRead(t, s, si, 1, gridtest.Data(2, 50))
	if err := s.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("version")); !bytes.Equal(v, []byte{0, 0, 0, boltserver.Version}) {
			t.Errorf("version after upgrade = %x, want %d", v, boltserver.Version)
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	setVersion(boltserver.Version+1, false)
	if _, err := boltserver.Open(dir, boltserver.Options{}); err == nil || !strings.Contains(err.Error(), "unsupported store version") {
		t.Fatalf("Open of a store from a later version: %v, want unsupported store version", err)
	}
}
