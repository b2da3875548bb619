package p2p

import (
	"bytes"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

var benchTransports = []struct {
	name string
	tr   transport
}{{"tcpNoise", tcpNoise}, {"tcpTLS", tcpTLS}, {"quic", quic}}

// cpuTime is the CPU time (user + system) this process has used. Client and
// server run in the same process, so it covers both ends.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds MB/cpu-s: share bytes over the CPU time both ends used,
// which stays near the code's own cost when the shared machine is loaded
// and wall-clock MB/s does not.
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// benchClients returns n clients, each for its own server host backed by a
// sinkStore holding a share of size bytes.
func benchClients(b *testing.B, tr transport, n, size int) []*Client {
	c := newHost(b, tr, false)
	share := gridtest.Data(1, size)
	cls := make([]*Client, n)
	for i := range cls {
		cls[i], _ = remote(b, c, tr, func(id grid.ServerID) grid.Server { return &sinkStore{id: id, share: share} }, ServeOptions{}, ClientOptions{})
		if _, err := cls[i].ListShares(b.Context(), gridtest.SI()); err != nil { // connect
			b.Fatal(err)
		}
	}
	return cls
}

// BenchmarkWriteShare streams a 64 MiB share to one peer, or 16 MiB to each
// of 4 peers at once (fanout4), over loopback.
func BenchmarkWriteShare(b *testing.B) {
	for _, tr := range benchTransports {
		for _, peers := range []int{1, 4} {
			size := 64 << 20 / peers
			b.Run(fmt.Sprintf("%s/peers=%d", tr.name, peers), func(b *testing.B) {
				cls := benchClients(b, tr.tr, peers, 0)
				data := gridtest.Data(2, size)
				si := gridtest.SI()
				b.SetBytes(int64(size * peers))
				b.ResetTimer()
				cpu0 := cpuTime()
				defer reportCPU(b, cpu0, int64(size*peers))
				for range b.N {
					var g errgroup.Group
					for _, cl := range cls {
						g.Go(func() error {
							return cl.WriteShare(b.Context(), si, 0, int64(size), bytes.NewReader(data), grid.Lease{})
						})
					}
					if err := g.Wait(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReadShare reads a 64 MiB share from one peer, or 16 MiB from
// each of 4 peers at once.
func BenchmarkReadShare(b *testing.B) {
	for _, tr := range benchTransports {
		for _, peers := range []int{1, 4} {
			size := 64 << 20 / peers
			b.Run(fmt.Sprintf("%s/peers=%d", tr.name, peers), func(b *testing.B) {
				cls := benchClients(b, tr.tr, peers, size)
				si := gridtest.SI()
				b.SetBytes(int64(size * peers))
				b.ResetTimer()
				cpu0 := cpuTime()
				defer reportCPU(b, cpu0, int64(size*peers))
				for range b.N {
					var g errgroup.Group
					for _, cl := range cls {
						g.Go(func() error {
							got, err := cl.ReadShare(b.Context(), si, 0, 0, int64(size))
							if err == nil && len(got) != size {
								err = fmt.Errorf("read %d bytes, want %d", len(got), size)
							}
							return err
						})
					}
					if err := g.Wait(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSmallWrite measures per-request overhead: one 4 KiB share per
// request (a stream open, the continue round trip, the response).
func BenchmarkSmallWrite(b *testing.B) {
	cls := benchClients(b, tcpNoise, 1, 0)
	data := gridtest.Data(3, 4096)
	si := gridtest.SI()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := cls[0].WriteShare(b.Context(), si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{}); err != nil {
			b.Fatal(err)
		}
	}
}

// rawProto is a bare stream protocol for BenchmarkRawStream.
const rawProto = "/sphere/bench-raw/0"

// BenchmarkRawStream is the limit the storage protocol is measured against:
// 64 MiB written on one bare libp2p stream to a handler that discards it
// (write) or read from a handler that sends it (read), same hosts and
// transports, no protocol.
func BenchmarkRawStream(b *testing.B) {
	const size = 64 << 20
	for _, tr := range benchTransports {
		for _, dir := range []string{"write", "read"} {
			b.Run(tr.name+"/"+dir, func(b *testing.B) {
				c := newHost(b, tr.tr, false)
				h := newHost(b, tr.tr, true)
				introduce(c, h)
				data := gridtest.Data(4, chunkSize)
				h.SetStreamHandler(rawProto, func(s network.Stream) {
					defer s.Close()
					if dir == "write" {
						_, _ = io.Copy(io.Discard, s)
						return
					}
					for sent := 0; sent < size; sent += len(data) {
						if _, err := s.Write(data); err != nil {
							_ = s.Reset()
							return
						}
					}
				})
				buf := make([]byte, chunkSize)
				b.SetBytes(size)
				b.ResetTimer()
				cpu0 := cpuTime()
				defer reportCPU(b, cpu0, size)
				for range b.N {
					s, err := c.NewStream(b.Context(), h.ID(), rawProto)
					if err != nil {
						b.Fatal(err)
					}
					if dir == "write" {
						for sent := 0; sent < size; sent += len(data) {
							if _, err := s.Write(data); err != nil {
								b.Fatal(err)
							}
						}
						_ = s.CloseWrite()
						_, _ = io.Copy(io.Discard, s)
					} else {
						_ = s.CloseWrite()
						n, err := io.CopyBuffer(io.Discard, s, buf)
						if err != nil || n != size {
							b.Fatalf("read %d bytes, %v", n, err)
						}
					}
					_ = s.Close()
				}
			})
		}
	}
}

// BenchmarkReadBlock reads one block the size a download asks for (a 1 MiB
// segment over k = 3 shares) per request, into a reused buffer, from each
// of 4 peers at once: the honest get's hot path, below one read piece.
func BenchmarkReadBlock(b *testing.B) {
	const block = 350 << 10
	cls := benchClients(b, tcpNoise, 4, 64<<20)
	si := gridtest.SI()
	bufs := make([][]byte, len(cls))
	for i := range bufs {
		bufs[i] = make([]byte, block)
	}
	b.SetBytes(int64(block * len(cls)))
	b.ResetTimer()
	cpu0 := cpuTime()
	defer reportCPU(b, cpu0, int64(block*len(cls)))
	for i := range b.N {
		var g errgroup.Group
		for j, cl := range cls {
			g.Go(func() error {
				off := int64(i%100) * block
				got, err := cl.ReadShareInto(b.Context(), si, 0, off, bufs[j])
				if err == nil && len(got) != block {
					err = fmt.Errorf("read %d bytes, want %d", len(got), block)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSlot writes then reads a slot of one 12 MiB share (under the
// version 1 message limit, so both versions can be compared) on one peer.
func BenchmarkSlot(b *testing.B) {
	const size = 12 << 20
	for _, v := range []int{1, 2} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			c := newHost(b, tcpNoise, false)
			cl, _ := remote(b, c, tcpNoise, memStore(), ServeOptions{}, ClientOptions{Version: v})
			si := gridtest.SI()
			data := gridtest.Data(6, size)
			b.SetBytes(2 * size)
			b.ResetTimer()
			cpu0 := cpuTime()
			defer reportCPU(b, cpu0, 2*size)
			for i := range b.N {
				w := []grid.SlotShare{{Shnum: 0, Seq: uint64(i + 1), Data: data}}
				if err := cl.WriteSlot(b.Context(), si, grid.WriteEnabler{}, w, grid.Lease{}); err != nil {
					b.Fatal(err)
				}
				got, err := cl.ReadSlot(b.Context(), si)
				if err != nil || len(got) != 1 || len(got[0].Data) != size {
					b.Fatalf("read slot: %v", err)
				}
			}
		})
	}
}
