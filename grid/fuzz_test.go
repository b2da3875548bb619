package grid_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// liar is a server whose answers about immutable shares come from fuzz
// input: made-up share lists and arbitrary bytes for reads, sometimes the
// real bytes with a twist.
type liar struct {
	grid.Server
	mu     sync.Mutex
	script []byte
}

func (l *liar) next(n int) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.script) < n {
		return nil
	}
	b := l.script[:n]
	l.script = l.script[n:]
	return b
}

func (l *liar) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	hdr := l.next(1)
	if hdr == nil {
		return l.Server.ListShares(ctx, si)
	}
	var out []grid.ShareInfo
	for range int(hdr[0] % 8) {
		b := l.next(3)
		if b == nil {
			break
		}
		out = append(out, grid.ShareInfo{Shnum: int(int8(b[0])), Size: int64(binary.BigEndian.Uint16(b[1:]))})
	}
	return out, nil
}

func (l *liar) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	real, err := l.Server.ReadShare(ctx, si, shnum, off, length)
	op := l.next(3)
	if op == nil {
		return real, err
	}
	switch op[0] % 4 {
	case 0: // honest
		return real, err
	case 1: // truncated
		if len(real) > 0 {
			return real[:int(op[1])%len(real)], nil
		}
		return real, err
	case 2: // one byte changed
		if len(real) > 0 {
			real[int(binary.BigEndian.Uint16(op[1:]))%len(real)] ^= op[1] | 1
		}
		return real, err
	default: // made-up bytes of any length
		return bytes.Repeat(op[1:2], int(op[2])), nil
	}
}

// FuzzDownloadLyingServers: whatever servers answer, a download either
// returns exactly the uploaded bytes or an error; it never panics or hangs.
func FuzzDownloadLyingServers(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 0, 1, 3, 0, 2, 0, 0}, []byte{2, 5, 5, 2, 6, 6})
	f.Add([]byte{3, 1, 0, 0, 2, 0, 0, 0, 0, 0}, []byte{1, 3, 3, 1, 200, 4})
	f.Add(bytes.Repeat([]byte{2, 1, 7}, 40), bytes.Repeat([]byte{3, 9, 1}, 40))
	p := caps.Params{K: 2, Happy: 3, N: 4, SegmentSize: 64}
	data := gridtest.Data(30, 5*64+7)
	f.Fuzz(func(t *testing.T, s1, s2 []byte) {
		mem := gridtest.NewMemGrid(4)
		c := newClient(t, mem, p, time.Second)
		cp := upload(t, c, data)
		servers := []grid.Server{&liar{Server: mem[0], script: s1}, &liar{Server: mem[1], script: s2}, mem[2], mem[3]}
		c2 := newClient(t, servers, p, time.Second)
		got, err := download(t, c2, cp)
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("download returned wrong bytes without an error")
		}
		if err != nil && !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("download wrote wrong bytes before failing: %v", err)
		}
		if _, err := c2.Check(ctxT(t), cp, grid.CheckOptions{Verify: true}); err != nil {
			t.Fatalf("check: %v", err)
		}
	})
}

// TestNoGoroutineLeak: after uploads, downloads and checks against hanging
// and failing servers finish, no goroutine of ours is left behind.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		c, faults := faultGrid(t, 10, testParams(), 100*time.Millisecond)
		data := gridtest.Data(31, 12*testSegSize)
		cp := upload(t, c, data)
		faults[0].Set(faultserver.Faults{Hang: true})
		faults[1].Set(faultserver.Faults{Flip: faultserver.FlipEvery})
		faults[2].Set(faultserver.Faults{Vanish: true})
		if got, err := download(t, c, cp); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download: %v", err)
		}
		f, err := c.Open(ctxT(t), cp)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3*testSegSize)
		for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, context.Canceled) {
				break
			}
		}
		f.Close()
		if _, err := c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true, Repair: true}); err != nil {
			t.Fatal(err)
		}
		for _, fs := range faults[3:10] {
			fs.Set(faultserver.Faults{Hang: true})
		}
		if _, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{RandomKey: true}); err == nil {
			t.Fatal("upload to hanging servers succeeded")
		}
		for _, fs := range faults {
			fs.Reset()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
