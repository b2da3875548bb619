package ledger

import (
	"crypto/ed25519"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time: on a shared machine the
// wall clock overstates the cost, so benchmarks also report per CPU-second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLog is a log whose entries are mostly receipts and observations, the
// kinds written on every transfer, with a lease every tenth entry.
func benchLog(b *testing.B, n int) ([][]byte, int64) {
	a, p := testKey(1), testKey(2)
	bodies := sampleBodies(a, p, 0)
	var prev *Entry
	raw := make([][]byte, 0, n)
	var size int64
	for i := range n {
		body := bodies[2+i%2]
		if i%10 == 0 {
			body = bodies[0]
		}
		e, err := NewEntry(a, prev, t0.Add(time.Duration(i)*time.Millisecond), body)
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, e.Encode())
		size += int64(len(raw[i]))
		prev = e
	}
	return raw, size
}

// BenchmarkVerifyChain measures end-to-end verification of received logs;
// entries/s = 4096 / (ns/op) * 1e9. Run with -cpu 1 for the one-core figure.
func BenchmarkVerifyChain(b *testing.B) {
	raw, size := benchLog(b, 4096)
	author := pid(testKey(1))
	sigs := 0
	for _, r := range raw {
		e, sb, _ := decodeEntry(r)
		sigs += len(entrySigs(nil, e, sb))
	}
	b.SetBytes(size)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := VerifyChain(author, 0, Hash{}, time.Time{}, raw, ChainOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(raw)*b.N)/b.Elapsed().Seconds(), "entries/s")
	cpu := (cpuTime() - c0).Seconds()
	b.ReportMetric(float64(len(raw)*b.N)/cpu, "entries/cpu-s")
	b.ReportMetric(float64(sigs*b.N)/cpu, "sigs/cpu-s")
}

// BenchmarkVerifyOneByOne is the same log checked signature by signature,
// the baseline batch verification beats.
func BenchmarkVerifyOneByOne(b *testing.B) {
	raw, size := benchLog(b, 1024)
	b.SetBytes(size)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		for _, r := range raw {
			e, s, err := decodeEntry(r)
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range entrySigs(nil, e, s) {
				if !verifyOne(c) {
					b.Fatal("bad")
				}
			}
		}
	}
	b.ReportMetric(float64(len(raw)*b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(len(raw)*b.N)/(cpuTime()-c0).Seconds(), "entries/cpu-s")
}

func BenchmarkStdlibVerify(b *testing.B) {
	k := testKey(1)
	msg := make([]byte, 200)
	sig := ed25519.Sign(k, msg)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if !ed25519.Verify(k.Public().(ed25519.PublicKey), msg, sig) {
			b.Fatal("bad")
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.TempDir()+"/l.db", testKey(1), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := sampleBodies(testKey(1), testKey(2), 0)[3]
	b.SetBytes(int64(len(body.appendTo(nil)) + headerSize + SigSize))
	for b.Loop() {
		if _, err := s.Append(body); err != nil {
			b.Fatal(err)
		}
	}
}
