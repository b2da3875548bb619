package caps

// Benchmarks of the CHK pipeline. Figures and how to run them are in
// docs/BENCHMARKS.md, section caps. Run with -cpu 1,2: the "par" variants
// spread segments over GOMAXPROCS goroutines, the "seq" ones use one.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

var benchSizes = []struct {
	name string
	size int
}{{"1MiB", 1 << 20}, {"100MiB", 100 << 20}}

var benchSegs = []int{128 << 10, 256 << 10, 1 << 20}

var (
	benchOnce sync.Once
	benchBuf  []byte
)

// benchData returns n bytes of a shared pseudo-random buffer.
func benchData(n int) []byte {
	benchOnce.Do(func() { benchBuf = testData(100<<20, 42) })
	return benchBuf[:n]
}

// workers returns how many goroutines forSegments uses.
func workers(par bool) int {
	if par {
		return runtime.GOMAXPROCS(0)
	}
	return 1
}

// forSegments runs fn(worker, seg) for every segment, on one goroutine or
// on GOMAXPROCS goroutines taking segments in turn.
func forSegments(segs int, par bool, fn func(w, seg int) error) error {
	if !par {
		for s := range segs {
			if err := fn(0, s); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, runtime.GOMAXPROCS(0))
	for w := range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				s := int(next.Add(1) - 1)
				if s >= segs {
					return
				}
				if err := fn(w, s); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func modeName(par bool) string {
	if par {
		return "par"
	}
	return "seq"
}

// BenchmarkEncode: key known (random-key upload), every segment sealed,
// coded 3-of-10 and hashed, then Finish. Blocks are written into a buffer
// per worker, as an uploader streaming them out would.
func BenchmarkEncode(b *testing.B) {
	for _, sz := range benchSizes {
		for _, seg := range benchSegs {
			for _, par := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/seg%dK/%s", sz.name, seg>>10, modeName(par)), func(b *testing.B) {
					data := benchData(sz.size)
					p := Params{K: 3, Happy: 7, N: 10, SegmentSize: seg}
					b.SetBytes(int64(sz.size))
					b.ReportAllocs()
					bufs := make([][]byte, workers(par))
					for i := range bufs {
						bufs[i] = make([]byte, 10*((seg+16+2)/3))
					}
					cpu := startCPU(b)
					for b.Loop() {
						e, err := NewEncoder(testKey(1), p, uint64(sz.size))
						if err != nil {
							b.Fatal(err)
						}
						l := e.Layout()
						err = forSegments(l.NumSegments(), par, func(w, s int) error {
							off := s * seg
							_, err := e.EncodeSegmentInto(s, data[off:off+l.SegmentLen(s)], bufs[w])
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
						if _, _, err := e.Finish(); err != nil {
							b.Fatal(err)
						}
					}
					cpu.report(int64(sz.size))
				})
			}
		}
	}
}

// BenchmarkEncodeAlloc is BenchmarkEncode/1MiB-segments with EncodeSegment
// allocating fresh blocks per segment (the simple API).
func BenchmarkEncodeAlloc(b *testing.B) {
	for _, par := range []bool{false, true} {
		b.Run("100MiB/seg1024K/"+modeName(par), func(b *testing.B) {
			data := benchData(100 << 20)
			p := DefaultParams()
			b.SetBytes(int64(len(data)))
			cpu := startCPU(b)
			defer cpu.report(int64(int64(len(data))))
			for b.Loop() {
				e, _ := NewEncoder(testKey(1), p, uint64(len(data)))
				l := e.Layout()
				err := forSegments(l.NumSegments(), par, func(_, s int) error {
					off := s * p.SegmentSize
					_, err := e.EncodeSegment(s, data[off:off+l.SegmentLen(s)])
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := e.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConvergentKey is the extra pass a convergent upload makes over
// the plaintext before encoding.
func BenchmarkConvergentKey(b *testing.B) {
	data := benchData(100 << 20)
	b.SetBytes(int64(len(data)))
	cpu := startCPU(b)
	defer cpu.report(int64(int64(len(data))))
	for b.Loop() {
		h := NewKeyHasher([]byte("secret"), DefaultParams())
		h.Write(data)
		_ = h.Key()
	}
}

// BenchmarkDecode: verify the trailers of k shares once, then per segment
// check k blocks and decode. "data" has shares 0..k-1 (no reconstruction),
// "parity" has shares 7..9 only (full reconstruction), "data-nocheck" skips
// CheckBlock on the data blocks and relies on DecodeSegment's segment hash
// (safe; see DecodeSegment).
func BenchmarkDecode(b *testing.B) {
	for _, sz := range benchSizes {
		for _, seg := range benchSegs {
			if sz.size < seg {
				continue
			}
			p := Params{K: 3, Happy: 7, N: 10, SegmentSize: seg}
			var shares [][]byte
			var c CHKCap
			for _, which := range []string{"data", "parity", "data-nocheck"} {
				for _, par := range []bool{false, true} {
					b.Run(fmt.Sprintf("%s/seg%dK/%s/%s", sz.name, seg>>10, which, modeName(par)), func(b *testing.B) {
						if shares == nil {
							shares, c = encodeShares(b, testKey(1), p, benchData(sz.size))
						}
						use := []int{0, 1, 2}
						if which == "parity" {
							use = []int{7, 8, 9}
						}
						b.SetBytes(int64(sz.size))
						b.ReportAllocs()
						// One plaintext buffer per worker, reused, as a
						// streaming reader would (DecodeSegmentInto).
						bufs := make([][]byte, workers(par))
						for i := range bufs {
							bufs[i] = make([]byte, 3*((seg+16+2)/3))
						}
						cpu := startCPU(b)
						for b.Loop() {
							d := NewDecoder(c)
							proofs := make([]*ShareProof, p.N)
							var l Layout
							for _, sh := range use {
								var err error
								l, err = d.ParseHeader(sh, shares[sh][:ShareHeaderSize])
								if err != nil {
									b.Fatal(err)
								}
								if proofs[sh], err = d.VerifyTrailer(sh, l, shares[sh][l.TrailerOffset():]); err != nil {
									b.Fatal(err)
								}
							}
							err := forSegments(l.NumSegments(), par, func(w, s int) error {
								blocks := make([][]byte, p.N)
								off, bs := l.BlockOffset(s), int64(l.BlockSize(s))
								for _, sh := range use {
									blk := shares[sh][off : off+bs]
									if which != "data-nocheck" {
										if err := proofs[sh].CheckBlock(s, blk); err != nil {
											return err
										}
									}
									blocks[sh] = blk
								}
								_, err := d.DecodeSegmentInto(l, s, blocks, bufs[w])
								return err
							})
							if err != nil {
								b.Fatal(err)
							}
						}
						cpu.report(int64(sz.size))
					})
				}
			}
		}
	}
}

// BenchmarkPipelineLimit is the physical limit the encoder (and the grid
// benchmarks) are measured against: XChaCha20-Poly1305 seal + Reed-Solomon
// 3-of-10 + BLAKE3 of the 10 blocks over 1 MiB segments, in preallocated
// buffers, with none of the format's bookkeeping. "open" is the read side:
// BLAKE3 of 3 blocks + AEAD open.
func BenchmarkPipelineLimit(b *testing.B) {
	const seg = 1 << 20
	const k, n = 3, 10
	data := benchData(seg)
	for _, par := range []bool{false, true} {
		b.Run("seal/"+modeName(par), func(b *testing.B) {
			aead, _ := chacha20poly1305.NewX(make([]byte, 32))
			rs, _ := reedsolomon.New(k, n-k)
			bs := (seg + 16 + k - 1) / k
			b.SetBytes(seg)
			cpu := startCPU(b)
			if par {
				b.RunParallel(func(pb *testing.PB) { limitSeal(pb.Next, aead, rs, data, bs, k, n) })
			} else {
				limitSeal(b.Loop, aead, rs, data, bs, k, n)
			}
			cpu.report(seg)
		})
	}
	for _, par := range []bool{false, true} {
		b.Run("open/"+modeName(par), func(b *testing.B) {
			aead, _ := chacha20poly1305.NewX(make([]byte, 32))
			nonce := make([]byte, 24)
			ct := aead.Seal(nil, nonce, data, nil)
			b.SetBytes(seg)
			cpu := startCPU(b)
			defer cpu.report(seg)
			run := func(next func() bool) {
				buf := make([]byte, len(ct))
				for next() {
					copy(buf, ct)
					bs := (len(ct) + k - 1) / k
					for i := 0; i < k; i++ {
						blockHash(ct[i*bs : min(len(ct), (i+1)*bs)])
					}
					if _, err := aead.Open(buf[:0], nonce, buf, nil); err != nil {
						panic(err)
					}
				}
			}
			if par {
				b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
			} else {
				run(b.Loop)
			}
		})
	}
}

func limitSeal(next func() bool, aead cipher.AEAD, rs reedsolomon.Encoder, data []byte, bs, k, n int) {
	buf := make([]byte, bs*n)
	nonce := make([]byte, 24)
	blocks := make([][]byte, n)
	for i := range blocks {
		blocks[i] = buf[i*bs : (i+1)*bs]
	}
	for next() {
		ct := aead.Seal(buf[:0], nonce, data, nil)
		clear(buf[len(ct) : bs*k])
		if err := rs.Encode(blocks); err != nil {
			panic(err)
		}
		for _, blk := range blocks {
			blockHash(blk)
		}
	}
}

// BenchmarkAEAD compares the candidate segment ciphers on 1 MiB segments
// (seal). The choice and figures are in docs/BENCHMARKS.md.
func BenchmarkAEAD(b *testing.B) {
	data := benchData(1 << 20)
	out := make([]byte, len(data)+secretbox.Overhead)
	b.Run("xchacha20poly1305", func(b *testing.B) {
		a, _ := chacha20poly1305.NewX(make([]byte, 32))
		nonce := make([]byte, a.NonceSize())
		b.SetBytes(int64(len(data)))
		cpu := startCPU(b)
		defer cpu.report(int64(int64(len(data))))
		for b.Loop() {
			a.Seal(out[:0], nonce, data, nil)
		}
	})
	b.Run("aes256gcm", func(b *testing.B) {
		blk, _ := aes.NewCipher(make([]byte, 32))
		a, _ := cipher.NewGCM(blk)
		nonce := make([]byte, a.NonceSize())
		b.SetBytes(int64(len(data)))
		cpu := startCPU(b)
		defer cpu.report(int64(int64(len(data))))
		for b.Loop() {
			a.Seal(out[:0], nonce, data, nil)
		}
	})
	b.Run("secretbox", func(b *testing.B) {
		var key [32]byte
		var nonce [24]byte
		b.SetBytes(int64(len(data)))
		cpu := startCPU(b)
		defer cpu.report(int64(int64(len(data))))
		for b.Loop() {
			secretbox.Seal(out[:0], data, &nonce, &key)
		}
	})
}

// BenchmarkHash compares the block hash (keyed BLAKE3) with SHA-256 on a
// 1 MiB segment's block (~350 KB).
func BenchmarkHash(b *testing.B) {
	data := benchData(349531)
	b.Run("blake3-keyed", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		cpu := startCPU(b)
		defer cpu.report(int64(int64(len(data))))
		for b.Loop() {
			blockHash(data)
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		cpu := startCPU(b)
		defer cpu.report(int64(int64(len(data))))
		for b.Loop() {
			sha256.Sum256(data)
		}
	})
}

// BenchmarkReedSolomon is the erasure coder alone on a 1 MiB segment,
// 3-of-10: encode parity, and rebuild all data shares from parity.
func BenchmarkReedSolomon(b *testing.B) {
	const k, n = 3, 10
	bs := (1<<20 + 16 + k - 1) / k
	buf := make([]byte, bs*n)
	copy(buf, benchData(1<<20))
	blocks := make([][]byte, n)
	for i := range blocks {
		blocks[i] = buf[i*bs : (i+1)*bs : (i+1)*bs]
	}
	rs, _ := reedsolomon.New(k, n-k)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(1 << 20)
		cpu := startCPU(b)
		defer cpu.report(int64(1 << 20))
		for b.Loop() {
			if err := rs.Encode(blocks); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reconstruct-data", func(b *testing.B) {
		rs.Encode(blocks)
		shards := make([][]byte, n)
		b.SetBytes(1 << 20)
		cpu := startCPU(b)
		defer cpu.report(int64(1 << 20))
		for b.Loop() {
			copy(shards, blocks)
			for i := range k {
				shards[i] = blocks[i][:0]
			}
			if err := rs.ReconstructData(shards); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// cpuClock measures the process's CPU time (user + system) across a
// benchmark. On a machine shared with other work, wall-clock MB/s drops
// with the load while MB per CPU-second stays close to the code's own cost;
// both are reported.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuClock { return &cpuClock{b: b, start: processCPU()} }

// report adds "MB/cpu-s": bytes per op times b.N over the CPU time used.
func (c *cpuClock) report(bytesPerOp int64) {
	used := processCPU() - c.start
	if used <= 0 || c.b.N == 0 {
		return
	}
	c.b.ReportMetric(float64(bytesPerOp)*float64(c.b.N)/used.Seconds()/1e6, "MB/cpu-s")
}
