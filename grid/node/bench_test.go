package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// benchGrid returns the servers of a 10-peer grid: in-process bbolt stores
// ("inproc") or 10 libp2p nodes with bbolt stores reached from a client host
// over loopback ("libp2p"), the ratio of the two being what the network
// layer costs.
func benchGrid(b *testing.B, kind string) []grid.Server {
	b.Helper()
	var out []grid.Server
	if kind == "inproc" {
		for i := range 10 {
			s, err := boltserver.Open(b.TempDir(), boltserver.Options{ID: grid.ServerID(fmt.Sprint("s", i))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			out = append(out, s)
		}
		return out
	}
	usePnet = kind == "libp2p-pnet"
	b.Cleanup(func() { usePnet = false })
	psk := make([]byte, PSKSize)
	rand.Read(psk)
	hk := newKey(b)
	h, err := NewClientHost(hk, psk)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	hid, _ := peer.IDFromPrivateKey(hk)
	admin := startNode(b, Config{GridKey: psk, StorageDir: b.TempDir()})
	if _, err := admin.Admit(hid); err != nil {
		b.Fatal(err)
	}
	nodes := []*running{admin}
	for range 9 {
		nodes = append(nodes, startMember(b, admin, Config{StorageDir: b.TempDir()}))
	}
	for _, n := range nodes {
		waitList(b, n.Node, serialOf(admin.Node))
		if err := h.Connect(context.Background(), peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}); err != nil {
			b.Fatal(err)
		}
		out = append(out, p2p.NewClient(h, n.ID(), p2p.ClientOptions{}))
	}
	return out
}

// BenchmarkGridPutGet puts and gets 16 MiB through grid.Client over the
// in-process grid and over 10 libp2p nodes in this process, admitted by
// the Noise prologue (the default) or by libp2p's private network.
func BenchmarkGridPutGet(b *testing.B) {
	data := make([]byte, 16<<20)
	rand.Read(data)
	for _, kind := range []string{"inproc", "libp2p", "libp2p-pnet"} {
		servers := benchGrid(b, kind)
		c, err := grid.NewClient(grid.ClientConfig{Servers: servers, Convergence: make([]byte, 32), LeaseSecret: [32]byte{1}, RequestTimeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		var capv caps.Cap
		b.Run("put/"+kind, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			defer reportCPU(b, len(data))()
			for range b.N {
				if capv, err = c.Upload(context.Background(), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{RandomKey: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("get/"+kind, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			defer reportCPU(b, len(data))()
			for range b.N {
				var w countWriter
				if err := c.Download(context.Background(), capv, &w, nil); err != nil {
					b.Fatal(err)
				}
				if int(w) != len(data) {
					b.Fatalf("got %d bytes", w)
				}
			}
		})
	}
}

// reportCPU reports MB per CPU-second of this process (both ends of every
// connection live here), which a loaded machine changes far less than
// wall-clock MB/s.
func reportCPU(b *testing.B, size int) func() {
	start := cpuNow()
	return func() {
		if used := cpuNow() - start; used > 0 {
			b.ReportMetric(float64(size)*float64(b.N)/1e6/used.Seconds(), "MB/cpu-s")
		}
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countWriter counts and discards what is written.
type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }
