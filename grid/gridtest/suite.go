package gridtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// TestServer runs the conformance suite for grid.Server: every contract
// written in grid/server.go, each as a named subtest. newServer is called
// once per subtest and must return an empty server (clean it up with
// t.Cleanup). Optional abilities (grid.Statter, grid.LeaseCanceller) are
// tested when the server has them.
func TestServer(t *testing.T, newServer func(t *testing.T) grid.Server) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s grid.Server)
	}{
		{"ID", testID},
		{"WriteReadShare", testWriteRead},
		{"ReadShareRanges", testReadRanges},
		{"ReadShareMissing", testReadMissing},
		{"ReadShareBadArgs", testReadBadArgs},
		{"ReadShareCallerOwnsSlice", testReadOwns},
		{"EmptyShare", testEmptyShare},
		{"ListSharesEmpty", testListEmpty},
		{"ListSharesSorted", testListSorted},
		{"WriteShareShortStoresNothing", testWriteShort},
		{"WriteShareLongStoresNothing", testWriteLong},
		{"WriteShareReaderErrorStoresNothing", testWriteReaderError},
		{"WriteShareCancelledStoresNothing", testWriteCancelled},
		{"WriteShareCancelledMidStreamStoresNothing", testWriteCancelMid},
		{"WriteShareBadArgs", testWriteBadArgs},
		{"WriteShareRewriteAddsLeaseAndDrains", testRewrite},
		{"WriteShareRewriteOtherSizeRefused", testRewriteOtherSize},
		{"WriteShareLarge", testWriteLarge},
		{"AddLeaseMissing", testAddLeaseMissing},
		{"AddLeaseExisting", testAddLeaseExisting},
		{"ReadSlotMissing", testReadSlotMissing},
		{"WriteReadSlot", testWriteReadSlot},
		{"SlotCallerOwnsData", testSlotOwns},
		{"SlotWriteEnablerRecordedAndEnforced", testSlotWE},
		{"SlotStaleSeq", testSlotStale},
		{"SlotMultiShareAtomic", testSlotAtomic},
		{"SlotBadWrites", testSlotBadWrites},
		{"SlotAndSharesSeparate", testSlotSeparate},
		{"ConcurrentShares", testConcurrentShares},
		{"ConcurrentSameShare", testConcurrentSameShare},
		{"ConcurrentSlot", testConcurrentSlot},
		{"Stat", testStat},
		{"CancelLease", testCancelLease},
		{"CancelLeaseSlot", testCancelLeaseSlot},
		{"LeaseLimit", testLeaseLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(t)
			if s == nil {
				t.Fatal("newServer returned nil")
			}
			c.fn(t, s)
		})
	}
}

func testID(t *testing.T, s grid.Server) {
	id := s.ID()
	if id == "" {
		t.Fatal("ID() is empty")
	}
	if s.ID() != id {
		t.Fatalf("ID() changed: %q then %q", id, s.ID())
	}
}

func testWriteRead(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(1, 100_000)
	writeShare(t, s, si, 3, data, farLease("a"))
	if got := readAll(t, s, si, 3, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatalf("ReadShare returned %d bytes that differ from the %d written", len(got), len(data))
	}
	l, err := s.ListShares(ctxT(t), si)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0] != (grid.ShareInfo{Shnum: 3, Size: int64(len(data))}) {
		t.Fatalf("ListShares = %+v, want [{3 %d}]", l, len(data))
	}
}

func testReadRanges(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(2, 1000)
	writeShare(t, s, si, 0, data, farLease("a"))
	ctx := ctxT(t)
	for _, c := range []struct {
		name        string
		off, length int64
		want        []byte // nil: want io.ErrUnexpectedEOF
	}{
		{"whole", 0, 1000, data},
		{"head", 0, 10, data[:10]},
		{"middle", 100, 250, data[100:350]},
		{"tail", 990, 10, data[990:]},
		{"runsPastEnd", 900, 500, data[900:]},
		{"hugeLength", 1, 1 << 40, data[1:]},
		{"lastByte", 999, 1, data[999:]},
		{"zeroLength", 5, 0, []byte{}},
		{"atEnd", 1000, 1, nil},
		{"pastEnd", 5000, 10, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.ReadShare(ctx, si, 0, c.off, c.length)
			if c.want == nil {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadShare(off=%d, len=%d) = %d bytes, %v; want io.ErrUnexpectedEOF", c.off, c.length, len(got), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadShare(off=%d, len=%d): %v", c.off, c.length, err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("ReadShare(off=%d, len=%d) = %d bytes, want %d (or content differs)", c.off, c.length, len(got), len(c.want))
			}
		})
	}
}

func testReadMissing(t *testing.T, s grid.Server) {
	ctx := ctxT(t)
	si := SI()
	if _, err := s.ReadShare(ctx, si, 0, 0, 10); !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("ReadShare on unknown si: %v, want ErrNotFound", err)
	}
	writeShare(t, s, si, 1, Data(3, 10), farLease("a"))
	_, err := s.ReadShare(ctx, si, 2, 0, 10)
	if !errors.Is(err, grid.ErrNotFound) {
		t.Errorf("ReadShare of a missing shnum of a known si: %v, want ErrNotFound", err)
	}
	if !grid.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false, want true", err)
	}
}

func testReadBadArgs(t *testing.T, s grid.Server) {
	ctx := ctxT(t)
	si := SI()
	writeShare(t, s, si, 0, Data(4, 100), farLease("a"))
	for _, c := range []struct{ off, length int64 }{{-1, 10}, {0, -1}, {-1 << 62, -1 << 62}} {
		if b, err := s.ReadShare(ctx, si, 0, c.off, c.length); err == nil {
			t.Errorf("ReadShare(off=%d, len=%d) = %d bytes, nil error; want an error", c.off, c.length, len(b))
		}
	}
	if _, err := s.ReadShare(ctx, si, -1, 0, 10); err == nil {
		t.Error("ReadShare(shnum=-1): nil error")
	}
}

func testReadOwns(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(5, 64)
	writeShare(t, s, si, 0, data, farLease("a"))
	got := readAll(t, s, si, 0, 64)
	for i := range got {
		got[i] ^= 0xff
	}
	if again := readAll(t, s, si, 0, 64); !bytes.Equal(again, data) {
		t.Fatal("changing a slice ReadShare returned changed the stored share")
	}
}

func testEmptyShare(t *testing.T, s grid.Server) {
	si := SI()
	writeShare(t, s, si, 0, nil, farLease("a"))
	l, err := s.ListShares(ctxT(t), si)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0] != (grid.ShareInfo{Shnum: 0, Size: 0}) {
		t.Fatalf("ListShares = %+v, want [{0 0}]", l)
	}
	if _, err := s.ReadShare(ctxT(t), si, 0, 0, 1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadShare at 0 of an empty share: %v, want io.ErrUnexpectedEOF", err)
	}
}

func testListEmpty(t *testing.T, s grid.Server) {
	l, err := s.ListShares(ctxT(t), SI())
	if err != nil || len(l) != 0 {
		t.Fatalf("ListShares of unknown si = %+v, %v; want empty, nil", l, err)
	}
}

func testListSorted(t *testing.T, s grid.Server) {
	si := SI()
	order := []int{7, 2, 9, 0, 5, 255, 1}
	var want []grid.ShareInfo
	for _, n := range order {
		size := 10 + n
		writeShare(t, s, si, n, Data(uint64(n), size), farLease("a"))
		want = append(want, grid.ShareInfo{Shnum: n, Size: int64(size)})
	}
	other := SI()
	writeShare(t, s, other, 3, Data(99, 5), farLease("a"))
	slicesSortInfo(want)
	got, err := s.ListShares(ctxT(t), si)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ListShares = %v, want %v", got, want)
	}
}

func slicesSortInfo(l []grid.ShareInfo) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].Shnum < l[j-1].Shnum; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

func testWriteShort(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(6, 1000)
	if err := s.WriteShare(ctxT(t), si, 0, 1001, bytes.NewReader(data), farLease("a")); err == nil {
		t.Fatal("WriteShare with fewer bytes than size: nil error")
	}
	wantNoShare(t, s, si, 0)
	// A retry with the right size must then work.
	writeShare(t, s, si, 0, data, farLease("a"))
	if got := readAll(t, s, si, 0, 1000); !bytes.Equal(got, data) {
		t.Fatal("share written after a failed short write differs")
	}
}

func testWriteLong(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(7, 1000)
	if err := s.WriteShare(ctxT(t), si, 0, 999, bytes.NewReader(data), farLease("a")); err == nil {
		t.Fatal("WriteShare with more bytes than size: nil error")
	}
	wantNoShare(t, s, si, 0)
}

type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func testWriteReaderError(t *testing.T, s grid.Server) {
	si := SI()
	boom := errors.New("source broke")
	r := &errReader{r: bytes.NewReader(Data(8, 500)), err: boom}
	if err := s.WriteShare(ctxT(t), si, 0, 1000, r, farLease("a")); err == nil {
		t.Fatal("WriteShare with a failing reader: nil error")
	}
	wantNoShare(t, s, si, 0)
}

func testWriteCancelled(t *testing.T, s grid.Server) {
	si := SI()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	data := Data(9, 100)
	if err := s.WriteShare(ctx, si, 0, 100, bytes.NewReader(data), farLease("a")); err == nil {
		t.Fatal("WriteShare with a cancelled context: nil error")
	}
	wantNoShare(t, s, si, 0)
}

func testWriteCancelMid(t *testing.T, s grid.Server) {
	si := SI()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := Data(10, 256<<10)
	r := &countingReader{r: bytes.NewReader(data), chunk: 4096}
	r.after = func(total int64) {
		if total >= 8192 {
			cancel()
		}
	}
	if err := s.WriteShare(ctx, si, 0, int64(len(data)), r, farLease("a")); err == nil {
		t.Fatal("WriteShare whose context ended mid-stream: nil error")
	}
	wantNoShare(t, s, si, 0)
}

func testWriteBadArgs(t *testing.T, s grid.Server) {
	ctx := ctxT(t)
	si := SI()
	if err := s.WriteShare(ctx, si, 0, -1, bytes.NewReader(nil), farLease("a")); err == nil {
		t.Error("WriteShare(size=-1): nil error")
	}
	if err := s.WriteShare(ctx, si, -1, 1, bytes.NewReader([]byte{1}), farLease("a")); err == nil {
		t.Error("WriteShare(shnum=-1): nil error")
	}
	if err := s.WriteShare(ctx, si, 256, 1, bytes.NewReader([]byte{1}), farLease("a")); err == nil {
		t.Error("WriteShare(shnum=256): nil error")
	}
	l, err := s.ListShares(ctx, si)
	if err != nil || len(l) != 0 {
		t.Errorf("after refused writes ListShares = %v, %v; want empty", l, err)
	}
}

func testRewrite(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(11, 5000)
	writeShare(t, s, si, 0, data, NewLease("first", time.Now().Add(time.Hour)))
	r := &countingReader{r: bytes.NewReader(data), chunk: 1000}
	if err := s.WriteShare(ctxT(t), si, 0, int64(len(data)), r, NewLease("second", time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("rewriting an existing share with the same size: %v", err)
	}
	if n := r.n.Load(); n != int64(len(data)) {
		t.Errorf("rewrite read %d of %d bytes; the reader must be drained", n, len(data))
	}
	if got := readAll(t, s, si, 0, 5000); !bytes.Equal(got, data) {
		t.Fatal("share changed after an idempotent rewrite")
	}
	lc, ok := s.(grid.LeaseCanceller)
	if !ok {
		return
	}
	// Both leases are held: dropping the first keeps the share.
	if err := lc.CancelLease(ctxT(t), si, NewLease("first", time.Time{}).CancelSecret); err != nil {
		t.Fatalf("CancelLease(first): %v", err)
	}
	if got := readAll(t, s, si, 0, 5000); !bytes.Equal(got, data) {
		t.Fatal("share gone after cancelling one of two leases: the rewrite did not add its lease")
	}
	if err := lc.CancelLease(ctxT(t), si, NewLease("second", time.Time{}).CancelSecret); err != nil {
		t.Fatalf("CancelLease(second): %v", err)
	}
	wantNoShare(t, s, si, 0)
}

func testRewriteOtherSize(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(12, 300)
	writeShare(t, s, si, 0, data, farLease("a"))
	other := Data(13, 400)
	if err := s.WriteShare(ctxT(t), si, 0, 400, bytes.NewReader(other), farLease("b")); err == nil {
		t.Fatal("rewriting a share with another size: nil error")
	}
	if got := readAll(t, s, si, 0, 1000); !bytes.Equal(got, data) {
		t.Fatalf("share changed by a refused rewrite: %d bytes", len(got))
	}
}

func testWriteLarge(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(14, 3<<20+17)
	r := &countingReader{r: bytes.NewReader(data), chunk: 100_000}
	if err := s.WriteShare(ctxT(t), si, 1, int64(len(data)), r, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, si, 1, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("large share read back differs")
	}
	// Read it back in odd-sized pieces.
	var got []byte
	for off := int64(0); off < int64(len(data)); off += 777_777 {
		b, err := s.ReadShare(ctxT(t), si, 1, off, 777_777)
		if err != nil {
			t.Fatalf("ReadShare(off=%d): %v", off, err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("large share read in pieces differs")
	}
}

func testAddLeaseMissing(t *testing.T, s grid.Server) {
	err := s.AddLease(ctxT(t), SI(), farLease("a"))
	if !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("AddLease on unknown si: %v, want ErrNotFound", err)
	}
}

func testAddLeaseExisting(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(15, 10)
	writeShare(t, s, si, 0, data, NewLease("a", time.Now().Add(time.Hour)))
	if err := s.AddLease(ctxT(t), si, NewLease("b", time.Now().Add(2*time.Hour))); err != nil {
		t.Fatalf("AddLease on a held share: %v", err)
	}
	// Renew with the same secret, earlier and later.
	if err := s.AddLease(ctxT(t), si, NewLease("a", time.Now().Add(time.Minute))); err != nil {
		t.Fatalf("AddLease renewing: %v", err)
	}
	slot := SI()
	if err := s.WriteSlot(ctxT(t), slot, Enabler("x"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: data}}, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLease(ctxT(t), slot, NewLease("b", time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("AddLease on a mutable slot: %v", err)
	}
	lc, ok := s.(grid.LeaseCanceller)
	if !ok {
		return
	}
	ctx := ctxT(t)
	if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).CancelSecret); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, si, 0, 10); !bytes.Equal(got, data) {
		t.Fatal("share gone after cancelling lease a although lease b was added")
	}
	if err := lc.CancelLease(ctx, slot, NewLease("a", time.Time{}).CancelSecret); err != nil {
		t.Fatal(err)
	}
	if got := readSlot(t, s, slot); len(got) != 1 {
		t.Fatal("slot gone after cancelling lease a although lease b was added")
	}
}

func testReadSlotMissing(t *testing.T, s grid.Server) {
	got, err := s.ReadSlot(ctxT(t), SI())
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadSlot of unknown si = %v, %v; want empty, nil", got, err)
	}
}

func testWriteReadSlot(t *testing.T, s grid.Server) {
	si := SI()
	writes := []grid.SlotShare{
		{Shnum: 4, Seq: 1, Data: Data(20, 100)},
		{Shnum: 0, Seq: 1, Data: Data(21, 200)},
		{Shnum: 2, Seq: 7, Data: nil},
	}
	if err := s.WriteSlot(ctxT(t), si, Enabler("w"), writes, farLease("a")); err != nil {
		t.Fatalf("WriteSlot: %v", err)
	}
	want := []grid.SlotShare{writes[1], {Shnum: 2, Seq: 7, Data: []byte{}}, writes[0]}
	got := readSlot(t, s, si)
	if !equalSlot(got, want) {
		t.Fatalf("ReadSlot = %s\nwant %s", fmtSlot(got), fmtSlot(want))
	}
	// Replace one share with a higher seq; the others stay.
	upd := grid.SlotShare{Shnum: 4, Seq: 2, Data: Data(22, 150)}
	if err := s.WriteSlot(ctxT(t), si, Enabler("w"), []grid.SlotShare{upd}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot with a higher seq: %v", err)
	}
	want[2] = upd
	if got := readSlot(t, s, si); !equalSlot(got, want) {
		t.Fatalf("ReadSlot after update = %s\nwant %s", fmtSlot(got), fmtSlot(want))
	}
	// Adding a new share number to the slot is allowed.
	add := grid.SlotShare{Shnum: 1, Seq: 1, Data: Data(23, 10)}
	if err := s.WriteSlot(ctxT(t), si, Enabler("w"), []grid.SlotShare{add}, farLease("a")); err != nil {
		t.Fatalf("WriteSlot adding a share: %v", err)
	}
	want = append(want[:1], append([]grid.SlotShare{add}, want[1:]...)...)
	if got := readSlot(t, s, si); !equalSlot(got, want) {
		t.Fatalf("ReadSlot after adding = %s\nwant %s", fmtSlot(got), fmtSlot(want))
	}
}

func testSlotOwns(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(24, 50)
	buf := bytes.Clone(data)
	if err := s.WriteSlot(ctxT(t), si, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: buf}}, farLease("a")); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0
	}
	got := readSlot(t, s, si)
	if len(got) != 1 || !bytes.Equal(got[0].Data, data) {
		t.Fatal("changing the caller's buffer after WriteSlot changed the stored share")
	}
	for i := range got[0].Data {
		got[0].Data[i] = 1
	}
	if again := readSlot(t, s, si); len(again) != 1 || !bytes.Equal(again[0].Data, data) {
		t.Fatal("changing the Data ReadSlot returned changed the stored share")
	}
}

func testSlotWE(t *testing.T, s grid.Server) {
	si := SI()
	ctx := ctxT(t)
	first := []grid.SlotShare{{Shnum: 0, Seq: 1, Data: Data(30, 40)}}
	if err := s.WriteSlot(ctx, si, Enabler("right"), first, farLease("a")); err != nil {
		t.Fatal(err)
	}
	err := s.WriteSlot(ctx, si, Enabler("wrong"), []grid.SlotShare{{Shnum: 0, Seq: 2, Data: Data(31, 40)}}, farLease("a"))
	if !errors.Is(err, grid.ErrBadWriteEnabler) {
		t.Fatalf("WriteSlot with another enabler: %v, want ErrBadWriteEnabler", err)
	}
	if !grid.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	// Also for a share number not yet in the slot.
	err = s.WriteSlot(ctx, si, Enabler("wrong"), []grid.SlotShare{{Shnum: 5, Seq: 9, Data: Data(32, 40)}}, farLease("a"))
	if !errors.Is(err, grid.ErrBadWriteEnabler) {
		t.Fatalf("WriteSlot of a new shnum with another enabler: %v, want ErrBadWriteEnabler", err)
	}
	if got := readSlot(t, s, si); !equalSlot(got, first) {
		t.Fatalf("slot changed by refused writes: %s", fmtSlot(got))
	}
	next := []grid.SlotShare{{Shnum: 0, Seq: 2, Data: Data(33, 41)}}
	if err := s.WriteSlot(ctx, si, Enabler("right"), next, farLease("a")); err != nil {
		t.Fatalf("WriteSlot with the recorded enabler: %v", err)
	}
	if got := readSlot(t, s, si); !equalSlot(got, next) {
		t.Fatalf("ReadSlot = %s, want %s", fmtSlot(got), fmtSlot(next))
	}
	// Another slot records its own enabler.
	if err := s.WriteSlot(ctx, SI(), Enabler("wrong"), first, farLease("a")); err != nil {
		t.Fatalf("first write to another slot: %v", err)
	}
}

func testSlotStale(t *testing.T, s grid.Server) {
	si := SI()
	ctx := ctxT(t)
	cur := []grid.SlotShare{{Shnum: 1, Seq: 5, Data: Data(40, 30)}}
	if err := s.WriteSlot(ctx, si, Enabler("w"), cur, farLease("a")); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{5, 4, 0} {
		err := s.WriteSlot(ctx, si, Enabler("w"), []grid.SlotShare{{Shnum: 1, Seq: seq, Data: Data(41, 30)}}, farLease("a"))
		if !errors.Is(err, grid.ErrStale) {
			t.Fatalf("WriteSlot seq %d over seq 5: %v, want ErrStale", seq, err)
		}
		var se *grid.StaleError
		if !errors.As(err, &se) {
			t.Fatalf("WriteSlot seq %d over seq 5: %T %v, want a *grid.StaleError", seq, err, err)
		}
		if se.Shnum != 1 || se.Have != 5 || se.Want != seq {
			t.Errorf("StaleError = %+v, want {Shnum:1 Have:5 Want:%d}", *se, seq)
		}
		if !grid.IsPermanent(err) {
			t.Errorf("IsPermanent(%v) = false", err)
		}
	}
	if got := readSlot(t, s, si); !equalSlot(got, cur) {
		t.Fatalf("slot changed by stale writes: %s", fmtSlot(got))
	}
}

func testSlotAtomic(t *testing.T, s grid.Server) {
	si := SI()
	ctx := ctxT(t)
	cur := []grid.SlotShare{
		{Shnum: 0, Seq: 3, Data: Data(50, 20)},
		{Shnum: 1, Seq: 9, Data: Data(51, 20)},
	}
	if err := s.WriteSlot(ctx, si, Enabler("w"), cur, farLease("a")); err != nil {
		t.Fatal(err)
	}
	// Share 0 and new share 2 would be fine; share 1 is stale: nothing lands.
	err := s.WriteSlot(ctx, si, Enabler("w"), []grid.SlotShare{
		{Shnum: 0, Seq: 4, Data: Data(52, 20)},
		{Shnum: 2, Seq: 4, Data: Data(53, 20)},
		{Shnum: 1, Seq: 4, Data: Data(54, 20)},
	}, farLease("a"))
	var se *grid.StaleError
	if !errors.As(err, &se) || se.Shnum != 1 {
		t.Fatalf("multi-share write with share 1 stale: %v, want *StaleError for share 1", err)
	}
	if got := readSlot(t, s, si); !equalSlot(got, cur) {
		t.Fatalf("a refused multi-share write changed the slot: %s\nwant %s", fmtSlot(got), fmtSlot(cur))
	}
	// A refused first write leaves no slot behind either.
	empty := SI()
	err = s.WriteSlot(ctx, empty, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1}, {Shnum: 0, Seq: 2}}, farLease("a"))
	if err == nil {
		t.Fatal("WriteSlot with a repeated shnum: nil error")
	}
	if got := readSlot(t, s, empty); len(got) != 0 {
		t.Fatalf("refused first write left %s", fmtSlot(got))
	}
	// The refused write recorded no enabler.
	if err := s.WriteSlot(ctx, empty, Enabler("other"), []grid.SlotShare{{Shnum: 0, Seq: 1}}, farLease("a")); err != nil {
		t.Fatalf("first real write after a refused one: %v", err)
	}
}

func testSlotBadWrites(t *testing.T, s grid.Server) {
	ctx := ctxT(t)
	si := SI()
	for name, w := range map[string][]grid.SlotShare{
		"none":        nil,
		"negShnum":    {{Shnum: -1, Seq: 1}},
		"bigShnum":    {{Shnum: 256, Seq: 1}},
		"repeatShnum": {{Shnum: 3, Seq: 1}, {Shnum: 3, Seq: 1}},
	} {
		if err := s.WriteSlot(ctx, si, Enabler("w"), w, farLease("a")); err == nil {
			t.Errorf("WriteSlot(%s): nil error", name)
		}
	}
	if got := readSlot(t, s, si); len(got) != 0 {
		t.Fatalf("refused writes left %s", fmtSlot(got))
	}
}

func testSlotSeparate(t *testing.T, s grid.Server) {
	si := SI()
	ctx := ctxT(t)
	if err := s.WriteSlot(ctx, si, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: []byte("slot")}}, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if l, err := s.ListShares(ctx, si); err != nil || len(l) != 0 {
		t.Fatalf("ListShares of a slot-only si = %v, %v; want empty (slots are not immutable shares)", l, err)
	}
	if _, err := s.ReadShare(ctx, si, 0, 0, 4); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("ReadShare of a slot share: %v, want ErrNotFound", err)
	}
	other := SI()
	writeShare(t, s, other, 0, []byte("immutable"), farLease("a"))
	if got := readSlot(t, s, other); len(got) != 0 {
		t.Fatalf("ReadSlot of an immutable-only si = %s, want empty", fmtSlot(got))
	}
}

func testConcurrentShares(t *testing.T, s grid.Server) {
	const workers, per = 8, 6
	sis := make([]caps.StorageIndex, workers)
	for i := range sis {
		sis[i] = SI()
	}
	errs := make(chan error, workers*per*3)
	concurrently(workers, func(w int) {
		ctx := ctxT(t)
		for n := range per {
			data := Data(uint64(1000+w*per+n), 1000+w*100+n)
			if err := s.WriteShare(ctx, sis[w], n, int64(len(data)), bytes.NewReader(data), farLease("a")); err != nil {
				errs <- fmt.Errorf("worker %d write %d: %w", w, n, err)
				return
			}
			// Read someone else's si too: either nothing yet or a whole share.
			o := sis[(w+1)%workers]
			if l, err := s.ListShares(ctx, o); err != nil {
				errs <- err
			} else {
				for _, sh := range l {
					b, err := s.ReadShare(ctx, o, sh.Shnum, 0, sh.Size)
					if err != nil || int64(len(b)) != sh.Size {
						errs <- fmt.Errorf("worker %d read listed share %d: %d bytes, %v", w, sh.Shnum, len(b), err)
					}
				}
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w, si := range sis {
		for n := range per {
			data := Data(uint64(1000+w*per+n), 1000+w*100+n)
			if got := readAll(t, s, si, n, int64(len(data))); !bytes.Equal(got, data) {
				t.Fatalf("share %d of worker %d differs after concurrent writes", n, w)
			}
		}
	}
}

func testConcurrentSameShare(t *testing.T, s grid.Server) {
	si := SI()
	data := Data(60, 50_000)
	const workers = 8
	errs := make(chan error, workers)
	concurrently(workers, func(w int) {
		r := &countingReader{r: bytes.NewReader(data), chunk: 5000}
		if err := s.WriteShare(ctxT(t), si, 0, int64(len(data)), r, NewLease(fmt.Sprint("w", w), time.Now().Add(time.Hour))); err != nil {
			errs <- fmt.Errorf("writer %d: %w", w, err)
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := readAll(t, s, si, 0, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("share written by concurrent identical writers differs")
	}
	if l, err := s.ListShares(ctxT(t), si); err != nil || len(l) != 1 {
		t.Fatalf("ListShares = %v, %v; want one share", l, err)
	}
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		// One share, eight leases (one per writer).
		want := int64(len(data)) + grid.ShareCharge + workers*grid.LeaseCharge
		if got.Used != want || got.Shares != 1 {
			t.Fatalf("Stat after concurrent identical writes = %+v, want Used %d Shares 1", got, want)
		}
	}
}

func testConcurrentSlot(t *testing.T, s grid.Server) {
	si := SI()
	const writers = 16
	var ok [writers]bool
	concurrently(writers, func(w int) {
		seq := uint64(w + 1)
		err := s.WriteSlot(ctxT(t), si, Enabler("w"), []grid.SlotShare{
			{Shnum: 0, Seq: seq, Data: Data(seq, 100)},
			{Shnum: 1, Seq: seq, Data: Data(seq+1000, 100)},
		}, farLease("a"))
		switch {
		case err == nil:
			ok[w] = true
		case !errors.Is(err, grid.ErrStale):
			t.Errorf("writer seq %d: %v, want nil or ErrStale", seq, err)
		}
	})
	got := readSlot(t, s, si)
	if len(got) != 2 {
		t.Fatalf("ReadSlot after concurrent writes = %s, want 2 shares", fmtSlot(got))
	}
	// The highest successful seq wins, and both shares are from one write.
	var max uint64
	for w, o := range ok {
		if o {
			max = uint64(w + 1)
		}
	}
	if max != writers {
		t.Errorf("the writer with the highest seq (%d) failed; highest success %d", writers, max)
	}
	want := []grid.SlotShare{{Shnum: 0, Seq: max, Data: Data(max, 100)}, {Shnum: 1, Seq: max, Data: Data(max+1000, 100)}}
	if !equalSlot(got, want) {
		t.Fatalf("ReadSlot = %s\nwant %s", fmtSlot(got), fmtSlot(want))
	}
}

func testStat(t *testing.T, s grid.Server) {
	st, ok := s.(grid.Statter)
	if !ok {
		t.Skip("server does not implement grid.Statter")
	}
	ctx := ctxT(t)
	before, err := st.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Used != 0 || before.Shares != 0 {
		t.Fatalf("Stat of a new server = %+v, want nothing used", before)
	}
	si := SI()
	writeShare(t, s, si, 0, Data(70, 1000), farLease("a"))
	writeShare(t, s, si, 1, Data(71, 500), farLease("a"))
	if err := s.WriteSlot(ctx, SI(), Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: Data(72, 300)}}, farLease("a")); err != nil {
		t.Fatal(err)
	}
	after, err := st.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Share data, and metadata: 3 shares, 1 slot, 2 leases (one per si).
	want := int64(1800 + 3*grid.ShareCharge + grid.SlotCharge + 2*grid.LeaseCharge)
	if after.Used != want || after.Shares != 3 {
		t.Fatalf("Stat = %+v, want Used %d (1800 bytes of data plus metadata), Shares 3", after, want)
	}
	// A renewal costs nothing; a second lease is charged.
	if err := s.AddLease(ctx, si, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLease(ctx, si, farLease("b")); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Stat(ctx); err != nil || got.Used != want+grid.LeaseCharge {
		t.Fatalf("Stat after a renewal and a new lease = %+v, %v; want Used %d", got, err, want+grid.LeaseCharge)
	}
	if after.Quota != before.Quota {
		t.Fatalf("Quota changed from %d to %d", before.Quota, after.Quota)
	}
}

func testCancelLease(t *testing.T, s grid.Server) {
	lc, ok := s.(grid.LeaseCanceller)
	if !ok {
		t.Skip("server does not implement grid.LeaseCanceller")
	}
	ctx := ctxT(t)
	si := SI()
	data := Data(80, 100)
	writeShare(t, s, si, 0, data, farLease("a"))
	writeShare(t, s, si, 1, data, farLease("a"))
	err := lc.CancelLease(ctx, si, NewLease("b", time.Time{}).CancelSecret)
	if !errors.Is(err, grid.ErrUnauthorized) {
		t.Fatalf("CancelLease with a wrong secret: %v, want ErrUnauthorized", err)
	}
	// The renew secret is not the cancel secret.
	if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).RenewSecret); !errors.Is(err, grid.ErrUnauthorized) {
		t.Fatalf("CancelLease with the renew secret: %v, want ErrUnauthorized", err)
	}
	if got := readAll(t, s, si, 0, 100); !bytes.Equal(got, data) {
		t.Fatal("share changed by a refused cancel")
	}
	if err := lc.CancelLease(ctx, SI(), NewLease("a", time.Time{}).CancelSecret); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("CancelLease on an unknown si: %v, want ErrNotFound", err)
	}
	if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).CancelSecret); err != nil {
		t.Fatalf("CancelLease with the right secret: %v", err)
	}
	wantNoShare(t, s, si, 0)
	wantNoShare(t, s, si, 1)
	if err := s.AddLease(ctx, si, farLease("a")); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("AddLease after the last lease was cancelled: %v, want ErrNotFound", err)
	}
	if st, ok := s.(grid.Statter); ok {
		got, err := st.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Used != 0 || got.Shares != 0 {
			t.Fatalf("Stat after deleting everything = %+v", got)
		}
	}
	// The space is free again: the same share can be stored anew.
	writeShare(t, s, si, 0, data, farLease("a"))
}

func testCancelLeaseSlot(t *testing.T, s grid.Server) {
	lc, ok := s.(grid.LeaseCanceller)
	if !ok {
		t.Skip("server does not implement grid.LeaseCanceller")
	}
	ctx := ctxT(t)
	si := SI()
	w := []grid.SlotShare{{Shnum: 0, Seq: 3, Data: Data(81, 10)}}
	if err := s.WriteSlot(ctx, si, Enabler("w"), w, farLease("a")); err != nil {
		t.Fatal(err)
	}
	if err := lc.CancelLease(ctx, si, NewLease("a", time.Time{}).CancelSecret); err != nil {
		t.Fatal(err)
	}
	if got := readSlot(t, s, si); len(got) != 0 {
		t.Fatalf("slot still held after its only lease was cancelled: %s", fmtSlot(got))
	}
	// A deleted slot forgets its enabler and sequence numbers.
	if err := s.WriteSlot(ctx, si, Enabler("new"), []grid.SlotShare{{Shnum: 0, Seq: 1}}, farLease("a")); err != nil {
		t.Fatalf("write to a deleted slot: %v", err)
	}
}

// testLeaseLimit: a storage index holds at most grid.MaxLeases leases; a
// further distinct one is refused (ErrNoSpace, permanent) by AddLease,
// WriteShare and WriteSlot, renewals still work, and cancelling one makes
// room.
func testLeaseLimit(t *testing.T, s grid.Server) {
	ctx := ctxT(t)
	si, slot := SI(), SI()
	data := Data(90, 100)
	writeShare(t, s, si, 0, data, farLease("l0"))
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 1, Data: data}}, farLease("l0")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < grid.MaxLeases; i++ {
		for _, x := range []caps.StorageIndex{si, slot} {
			if err := s.AddLease(ctx, x, farLease(fmt.Sprint("l", i))); err != nil {
				t.Fatalf("AddLease %d of %d: %v", i+1, grid.MaxLeases, err)
			}
		}
	}
	over := farLease("one too many")
	wantRefused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, grid.ErrNoSpace) || !grid.IsPermanent(err) {
			t.Fatalf("%s with lease %d: %v, want a permanent ErrNoSpace", what, grid.MaxLeases+1, err)
		}
	}
	wantRefused("AddLease", s.AddLease(ctx, si, over))
	wantRefused("WriteShare of a new share", s.WriteShare(ctx, si, 1, 100, failReader{t}, over)) // before reading
	wantNoShare(t, s, si, 1)
	wantRefused("WriteShare of a held share", s.WriteShare(ctx, si, 0, 100, bytes.NewReader(data), over))
	wantRefused("WriteSlot", s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 2, Data: data}}, over))
	if got := readSlot(t, s, slot); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("refused slot write changed the slot: %s", fmtSlot(got))
	}
	// Renewals of held leases and writes under them still work.
	if err := s.AddLease(ctx, si, farLease("l3")); err != nil {
		t.Fatalf("renewing a held lease at the limit: %v", err)
	}
	writeShare(t, s, si, 2, data, farLease("l5"))
	if err := s.WriteSlot(ctx, slot, Enabler("w"), []grid.SlotShare{{Shnum: 0, Seq: 2, Data: data}}, farLease("l7")); err != nil {
		t.Fatalf("WriteSlot under a held lease at the limit: %v", err)
	}
	lc, ok := s.(grid.LeaseCanceller)
	if !ok {
		return
	}
	if err := lc.CancelLease(ctx, si, farLease("l9").CancelSecret); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLease(ctx, si, over); err != nil {
		t.Fatalf("AddLease after cancelling one at the limit: %v", err)
	}
}
