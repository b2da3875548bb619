package boltserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

// errClass reduces an error to what callers may branch on.
func errClass(err error) string {
	for _, e := range []error{grid.ErrNotFound, grid.ErrNoSpace, grid.ErrBadWriteEnabler, grid.ErrUnauthorized, grid.ErrStale, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err != nil {
		return "other"
	}
	return "nil"
}

// FuzzDifferential runs one sequence of operations, decoded from the fuzz
// input, against the in-memory server and the disk store, and fails where
// their answers differ. The two were written separately from one contract.
func FuzzDifferential(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
	f.Add([]byte{0, 0, 0, 50, 0, 0, 0, 50, 1, 0, 0, 10, 5, 0, 1, 3, 5, 0, 1, 3, 5, 0, 0, 2, 6, 0, 0, 0, 7, 0, 0, 0})
	f.Add([]byte{4, 1, 0, 20, 4, 1, 1, 30, 3, 1, 0, 0, 6, 1, 0, 0, 8, 200, 0, 0, 9, 0, 0, 0, 2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) { runDiff(t, ops, fastDir(t)) })
}

// TestDifferentialRandom runs FuzzDifferential's check over seeded random
// operation sequences, so every go test run explores beyond the seeds.
func TestDifferentialRandom(t *testing.T) {
	n := 30
	if testing.Short() {
		n = 5
	}
	for seed := range n {
		ops := gridtest.Data(uint64(seed)+1000, 600)
		runDiff(t, ops, fastDir(t))
	}
}

// fastDir is a temp directory on tmpfs if there is one: these tests are
// about logic, not the disk, and commit an fsync per operation.
func fastDir(t *testing.T) string {
	d, err := os.MkdirTemp("/dev/shm", "sphere-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func runDiff(t *testing.T, ops []byte, dir string) {
	t.Helper()
	{
		if len(ops) > 600 {
			ops = ops[:600]
		}
		clk := gridtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		mem := memserver.New("m", memserver.WithQuota(3000), memserver.WithClock(clk.Now), memserver.WithGrace(time.Hour))
		disk, err := boltserver.Open(dir, boltserver.Options{ID: "d", Quota: 3000, Now: clk.Now, Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer disk.Close()
		var sis [3]caps.StorageIndex
		for i := range sis {
			sis[i][0] = byte(i + 1)
		}
		ctx := context.Background()
		for i := 0; i+4 <= len(ops); i += 4 {
			op, a, b, c := ops[i]%10, ops[i+1], ops[i+2], ops[i+3]
			si := sis[int(a)%len(sis)]
			shnum := int(b % 4)
			lease := gridtest.NewLease(fmt.Sprint(c%3), clk.Now().Add(time.Duration(c)*time.Minute))
			var rm, rd any
			var em, ed error
			switch op {
			case 0, 1: // write a share; op 1 lies about the size
				data := gridtest.Data(uint64(a)<<8|uint64(b), int(c)*10)
				size := int64(len(data))
				if op == 1 {
					size += int64(c%3) - 1
				}
				em = mem.WriteShare(ctx, si, shnum, size, bytes.NewReader(data), lease)
				ed = disk.WriteShare(ctx, si, shnum, size, bytes.NewReader(data), lease)
			case 2:
				rm, em = mem.ReadShare(ctx, si, shnum, int64(c)*3, int64(b)*40)
				rd, ed = disk.ReadShare(ctx, si, shnum, int64(c)*3, int64(b)*40)
			case 3:
				rm, em = mem.ListShares(ctx, si)
				rd, ed = disk.ListShares(ctx, si)
			case 4, 5: // slot write, two shares; op 5 uses another enabler
				we := gridtest.Enabler(fmt.Sprint(op))
				w := []grid.SlotShare{{Shnum: shnum, Seq: uint64(c % 8), Data: gridtest.Data(uint64(c), int(c)*5)}, {Shnum: (shnum + 1) % 4, Seq: uint64(c % 5), Data: []byte{c}}}
				em = mem.WriteSlot(ctx, si, we, w, lease)
				ed = disk.WriteSlot(ctx, si, we, w, lease)
			case 6:
				rm, em = mem.ReadSlot(ctx, si)
				rd, ed = disk.ReadSlot(ctx, si)
			case 7:
				em = mem.AddLease(ctx, si, lease)
				ed = disk.AddLease(ctx, si, lease)
			case 8:
				em = mem.CancelLease(ctx, si, lease.CancelSecret)
				ed = disk.CancelLease(ctx, si, lease.CancelSecret)
			case 9:
				clk.Advance(time.Duration(c) * time.Minute)
				rm, em = mem.Sweep(ctx)
				rd, ed = disk.Sweep(ctx)
			}
			t.Logf("op %d (%d si%d sh%d c%d): mem %v %v", i/4, op, int(a)%len(sis), shnum, c, short(rm), em)
			if errClass(em) != errClass(ed) {
				t.Fatalf("op %d (%d %d %d %d): mem error %v, disk error %v", i/4, op, a, b, c, em, ed)
			}
			if !reflect.DeepEqual(rm, rd) {
				t.Fatalf("op %d (%d %d %d %d): mem %v, disk %v", i/4, op, a, b, c, rm, rd)
			}
			if err := disk.Verify(ctx); err != nil {
				t.Fatalf("op %d (%d %d %d %d): disk store broken: %v", i/4, op, a, b, c, err)
			}
			sm, _ := mem.Stat(ctx)
			sd, _ := disk.Stat(ctx)
			if sm != sd {
				t.Fatalf("op %d (%d %d %d %d): mem Stat %+v, disk Stat %+v", i/4, op, a, b, c, sm, sd)
			}
		}
	}
}

func short(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}
