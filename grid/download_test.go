package grid_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// subsets calls fn with every subset of {0..n-1} of size r.
func subsets(n, r int, fn func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == r {
			fn(append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

func TestDownloadLostServers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      caps.Params
		combos int // C(n, n-k)
	}{
		{"3of6", caps.Params{K: 3, Happy: 5, N: 6, SegmentSize: 256}, 20},
		{"3of10", caps.Params{K: 3, Happy: 7, N: 10, SegmentSize: 256}, 120}, // the defaults' k and n
	} {
		t.Run(tc.name, func(t *testing.T) { testDownloadLostServers(t, tc.p, tc.combos) })
	}
}

func testDownloadLostServers(t *testing.T, p caps.Params, combos int) {
	data := gridtest.Data(10, 3*256+17)
	t.Run("any n-k lost still reads", func(t *testing.T) {
		c, faults := faultGrid(t, p.N, p, 2*time.Second)
		cp := upload(t, c, data)
		count := 0
		subsets(p.N, p.N-p.K, func(lost []int) {
			count++
			for _, i := range lost {
				faults[i].Set(faultserver.Faults{Vanish: true})
			}
			got, err := download(t, c, cp)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("lost servers %v: err=%v, bytes equal=%v", lost, err, bytes.Equal(got, data))
			}
			for _, i := range lost {
				faults[i].Reset()
			}
		})
		if count != combos {
			t.Fatalf("tried %d subsets, want C(%d,%d)=%d", count, p.N, p.N-p.K, combos)
		}
	})
	t.Run("n-k+1 lost fails cleanly", func(t *testing.T) {
		c, faults := faultGrid(t, p.N, p, 2*time.Second)
		cp := upload(t, c, data)
		subsets(p.N, p.N-p.K+1, func(lost []int) {
			for _, i := range lost {
				faults[i].Set(faultserver.Faults{Vanish: true})
			}
			got, err := download(t, c, cp)
			if !errors.Is(err, grid.ErrNotEnoughShares) {
				t.Errorf("lost servers %v: err=%v, want ErrNotEnoughShares", lost, err)
			}
			if len(got) != 0 {
				t.Errorf("lost servers %v: %d bytes written before failing", lost, len(got))
			}
			if _, err := c.Open(ctxT(t), cp); !errors.Is(err, grid.ErrNotEnoughShares) {
				t.Errorf("lost servers %v: Open err=%v, want ErrNotEnoughShares", lost, err)
			}
			for _, i := range lost {
				faults[i].Reset()
			}
		})
	})
}

func TestDownloadFaults(t *testing.T) {
	data := gridtest.Data(11, 20*testSegSize+99)
	cases := []struct {
		name   string
		faults func(fs []*faultserver.Server) // applied after upload
	}{
		{name: "one server flips every read", faults: func(fs []*faultserver.Server) {
			fs[0].Set(faultserver.Faults{Flip: faultserver.FlipEvery})
		}},
		{name: "seven servers flip every read", faults: func(fs []*faultserver.Server) {
			for _, f := range fs[:7] {
				f.Set(faultserver.Faults{Flip: faultserver.FlipEvery})
			}
		}},
		{name: "data blocks flipped at one offset", faults: func(fs []*faultserver.Server) {
			for _, f := range fs {
				f.Set(faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: caps.ShareHeaderSize + 5})
			}
		}},
		{name: "two servers hang", faults: func(fs []*faultserver.Server) {
			fs[2].Set(faultserver.Faults{Hang: true})
			fs[5].Set(faultserver.Faults{Hang: true})
		}},
		{name: "slow servers", faults: func(fs []*faultserver.Server) {
			for _, f := range fs[:5] {
				f.Set(faultserver.Faults{Latency: 20 * time.Millisecond})
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, faults := faultGrid(t, 10, testParams(), 300*time.Millisecond)
			cp := upload(t, c, data)
			tc.faults(faults)
			got, err := download(t, c, cp)
			switch {
			case err == nil:
				if !bytes.Equal(got, data) {
					t.Fatalf("download returned wrong bytes without an error")
				}
			case errors.Is(err, grid.ErrNotEnoughShares) || errors.Is(err, grid.ErrCorrupt) || errors.Is(err, caps.ErrIntegrity):
				t.Logf("clean integrity error: %v", err)
				if !bytes.Equal(got, data[:len(got)]) {
					t.Fatalf("bytes written before the error are not the file's")
				}
			default:
				t.Fatalf("download: %v", err)
			}
			// With at most n-k servers bad the read must succeed; with the
			// first block of every share bad it must fail before writing.
			if tc.name == "data blocks flipped at one offset" {
				if !errors.Is(err, grid.ErrNotEnoughShares) || len(got) != 0 {
					t.Fatalf("every share corrupt in segment 0: err=%v, %d bytes written", err, len(got))
				}
			} else if err != nil {
				t.Fatalf("download with recoverable faults failed: %v", err)
			}
		})
	}
}

func TestDownloadAllCorruptNoPlaintext(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(12, 4*testSegSize)
	cp := upload(t, c, data)
	for _, f := range faults {
		f.Set(faultserver.Faults{Flip: faultserver.FlipEvery})
	}
	got, err := download(t, c, cp)
	if !errors.Is(err, grid.ErrNotEnoughShares) {
		t.Fatalf("download from all-corrupt servers: %v, want ErrNotEnoughShares", err)
	}
	if len(got) != 0 {
		t.Fatalf("%d bytes written from corrupt shares", len(got))
	}
}

func TestReadAtRandom(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(13, 37*testSegSize+1234)
	cp := upload(t, c, data)
	faults[3].Set(faultserver.Faults{Flip: faultserver.FlipEvery})
	f, err := c.Open(ctxT(t), cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		off := rng.Int64N(int64(len(data)) + 10)
		n := rng.IntN(3 * testSegSize)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, off)
		wantN := max(0, min(n, len(data)-int(off)))
		if got != wantN {
			t.Fatalf("read %d: ReadAt(%d bytes at %d) = %d, %v; want %d", i, n, off, got, err, wantN)
		}
		if wantN < n && err != io.EOF {
			t.Fatalf("read %d: short ReadAt returned err %v, want io.EOF", i, err)
		}
		if wantN == n && err != nil {
			t.Fatalf("read %d: ReadAt: %v", i, err)
		}
		if !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
			t.Fatalf("read %d: ReadAt(%d bytes at %d) returned wrong bytes", i, n, off)
		}
	}
	// Seek + Read agree with ReadAt.
	if _, err := f.Seek(-100, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(tail, data[len(data)-100:]) {
		t.Fatalf("Seek(-100, end)+ReadAll: %v, equal=%v", err, bytes.Equal(tail, data[len(data)-100:]))
	}
}

// blockCounter counts ReadShare calls past the header: block reads (and,
// for Open, trailer reads, told apart by length).
type blockCounter struct {
	grid.Server
	mu    sync.Mutex
	reads map[[2]int64]int // (offset, length) -> count
}

func (b *blockCounter) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	b.mu.Lock()
	if b.reads == nil {
		b.reads = map[[2]int64]int{}
	}
	b.reads[[2]int64{off, length}]++
	b.mu.Unlock()
	return b.Server.ReadShare(ctx, si, shnum, off, length)
}

// TestReadAtFetchesOnlyCoveringSegments proves random access: a small read
// in a big file fetches k blocks, not the file.
func TestReadAtFetchesOnlyCoveringSegments(t *testing.T) {
	mem := gridtest.NewMemGrid(10)
	counters := make([]*blockCounter, len(mem))
	servers := make([]grid.Server, len(mem))
	for i, m := range mem {
		counters[i] = &blockCounter{Server: m}
		servers[i] = counters[i]
	}
	p := testParams()
	c := newClient(t, servers, p, time.Second)
	data := gridtest.Data(14, 100*testSegSize)
	cp := upload(t, c, data)
	f, err := c.Open(ctxT(t), cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 50*testSegSize+10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[50*testSegSize+10:][:100]) {
		t.Fatal("wrong bytes")
	}
	l := caps.Layout{K: p.K, N: p.N, Size: uint64(len(data)), SegmentSize: p.SegmentSize}
	blockReads := 0
	for _, bc := range counters {
		bc.mu.Lock()
		for key, n := range bc.reads {
			if key[0] == 0 || key[1] == int64(l.TrailerSize()) {
				continue // Open's header and trailer reads
			}
			if key != [2]int64{l.BlockOffset(50), int64(l.BlockSize(50))} {
				t.Errorf("read %d bytes at %d, not segment 50's block", key[1], key[0])
			}
			blockReads += n
		}
		bc.mu.Unlock()
	}
	// k, or one more if a hedge fired on a loaded machine.
	if blockReads < p.K || blockReads > p.K+1 {
		t.Errorf("one small read made %d block reads, want k=%d", blockReads, p.K)
	}
}

func TestOpenWrongCap(t *testing.T) {
	c, _ := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(15, 2*testSegSize)
	cp := upload(t, c, data).(caps.CHKCap)
	cases := []struct {
		name string
		cap  caps.Cap
		want error
	}{
		{name: "never uploaded", cap: caps.CHKCap{Key: [16]byte{1}, K: 3, N: 10, Size: 5000}, want: grid.ErrNotEnoughShares},
		{name: "wrong root", cap: func() caps.Cap { x := cp; x.Root[0] ^= 1; return x }(), want: grid.ErrNotEnoughShares},
		{name: "wrong size", cap: func() caps.Cap { x := cp; x.Size++; return x }(), want: grid.ErrNotEnoughShares},
		{name: "verify cap", cap: cp.VerifyCap(), want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Open(ctxT(t), tc.cap)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDownloadPrefersFastServers: servers holding the data shares turn slow;
// the download fetches blocks from the others (and reconstructs) instead.
func TestDownloadPrefersFastServers(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), 5*time.Second)
	byID := faultByID(faults)
	data := gridtest.Data(16, 30*testSegSize)
	cp := upload(t, c, data)
	rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slow := map[string]bool{}
	for shnum := range testParams().K {
		id := holderOf(t, rep, shnum)
		slow[id] = true
		byID[id].Set(faultserver.Faults{Latency: 100 * time.Millisecond})
	}
	before := map[string]int64{}
	for _, f := range faults {
		before[f.ID().String()] = f.Calls("ReadShare")
	}
	got, err := download(t, c, cp)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %v", err)
	}
	var slowReads, allReads int64
	for _, f := range faults {
		n := f.Calls("ReadShare") - before[f.ID().String()]
		allReads += n
		if slow[f.ID().String()] {
			slowReads += n
		}
	}
	// Open reads header and trailer everywhere (2 per server); beyond that
	// the slow servers should see (almost) nothing.
	if slowReads > 2*3+3 {
		t.Errorf("slow servers got %d of %d reads", slowReads, allReads)
	}
}

// TestReadHedgesAroundHangingServers: servers that hang after Open do not
// hold a read up for the (long) request timeout: the read asks other shares
// and completes well within its own deadline.
func TestReadHedgesAroundHangingServers(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Minute)
	byID := faultByID(faults)
	data := gridtest.Data(17, 10*testSegSize)
	cp := upload(t, c, data)
	rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Open(ctxT(t), cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for shnum := range 2 {
		byID[holderOf(t, rep, shnum)].Set(faultserver.Faults{Hang: true})
	}
	defer func() {
		for _, fs := range faults {
			fs.Reset()
		}
	}()
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	buf := make([]byte, len(data))
	n, err := f.ReadAtContext(ctx, buf, 0)
	if err != nil || n != len(data) || !bytes.Equal(buf, data) {
		t.Fatalf("ReadAtContext with 2 hanging servers and a 1-minute request timeout: n=%d err=%v", n, err)
	}
}

// TestOpenDoesNotWaitForHungServers: with two servers hanging from the
// start and a one-minute request timeout, Open and Download return as soon
// as the other servers answered (plus a short grace), well within the
// caller's 20-second deadline.
func TestOpenDoesNotWaitForHungServers(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Minute)
	data := gridtest.Data(18, 6*testSegSize)
	cp := upload(t, c, data)
	faults[1].Set(faultserver.Faults{Hang: true})
	faults[6].Set(faultserver.Faults{Hang: true})
	defer faults[1].Reset()
	defer faults[6].Reset()
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := c.Download(ctx, cp, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("Download with 2 hung servers: %v", err)
	}
}

// TestReadAheadOnSequentialReads: small sequential reads make the File
// fetch the next segments in the background; random reads do not.
func TestReadAheadOnSequentialReads(t *testing.T) {
	mem := gridtest.NewMemGrid(10)
	counters := make([]*blockCounter, len(mem))
	servers := make([]grid.Server, len(mem))
	for i, m := range mem {
		counters[i] = &blockCounter{Server: m}
		servers[i] = counters[i]
	}
	p := testParams()
	c := newClient(t, servers, p, time.Second)
	data := gridtest.Data(19, 40*testSegSize)
	cp := upload(t, c, data)
	l := caps.Layout{K: p.K, N: p.N, Size: uint64(len(data)), SegmentSize: p.SegmentSize}
	fetched := func(seg int) bool {
		key := [2]int64{l.BlockOffset(seg), int64(l.BlockSize(seg))}
		for _, bc := range counters {
			bc.mu.Lock()
			n := bc.reads[key]
			bc.mu.Unlock()
			if n > 0 {
				return true
			}
		}
		return false
	}
	f, err := c.Open(ctxT(t), cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1024)
	// Random: two far-apart reads fetch nothing beyond their segments.
	for _, off := range []int64{30 * testSegSize, 10 * testSegSize} {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// Sequential: read segment 0 and the start of 1 in 1 KiB steps.
	for off := int64(0); off < testSegSize+1024; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !fetched(4) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !fetched(4) {
		t.Errorf("sequential reads in segments 0-1 did not read ahead to segment 4")
	}
	if fetched(31) || fetched(11) {
		t.Errorf("random reads triggered read-ahead")
	}
}

// Data blocks are not hash-checked before decoding (the decode verifies
// the segment); a corrupt data block must still be caught, its share
// dropped, and the segment read from other shares.
func TestDownloadCorruptDataBlockFallsBack(t *testing.T) {
	c, faults := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(13, 8*testSegSize+17)
	cp := upload(t, c, data)
	rc := cp.(caps.CHKCap)
	si := rc.VerifyCap().SI
	// Corrupt segment 3 of every data share (0..k-1) on its server, and
	// count how often data shares are read afterwards.
	blockSize := int64((testSegSize + 16 + 2) / 3) // SegmentLen + AEAD tag, over k
	var corrupted []*faultserver.Server
	for _, f := range faults {
		infos, err := f.Inner().ListShares(ctxT(t), si)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range infos {
			if in.Shnum < 2 { // two of the three data shares: k=3 good ones remain
				f.Set(faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: caps.ShareHeaderSize + 3*blockSize + 1})
				corrupted = append(corrupted, f)
			}
		}
	}
	if len(corrupted) == 0 {
		t.Fatal("no server holds a data share")
	}
	got, err := download(t, c, cp)
	if err != nil {
		t.Fatalf("download with two corrupt data shares: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("download returned wrong bytes")
	}
	// A File drops the share for good: once segment 3 was read through it,
	// a later read of another segment never asks the corrupt servers.
	f, err := c.Open(ctxT(t), cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 3*testSegSize+100); err != nil {
		t.Fatalf("read in the corrupt segment: %v", err)
	}
	if !bytes.Equal(buf, data[3*testSegSize+100:][:10]) {
		t.Fatal("read in the corrupt segment returned wrong bytes")
	}
	before := make([]int64, len(corrupted))
	for i, f := range corrupted {
		before[i] = f.Calls("ReadShare")
	}
	if _, err := f.ReadAt(buf, 7*testSegSize+100); err != nil { // not sequential: no read-ahead
		t.Fatalf("read after the corrupt segment: %v", err)
	}
	for i, f := range corrupted {
		if n := f.Calls("ReadShare") - before[i]; n != 0 {
			t.Errorf("a server whose share failed was read %d more times", n)
		}
	}
}
