package web

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/web/gitremote"
	"github.com/sphere-grid/sphere/web/site"
)

// benchEnv is a gateway over a grid of 10 bbolt servers on disk.
func benchEnv(b *testing.B) *testEnv {
	b.Helper()
	c := gridtest.NewBoltClient(b, b.TempDir(), 10)
	root, err := fs.FromClient(c).CreateDir(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	t := &testing.T{}
	e := &testEnv{t: t, c: c, reg: Registry{Dir: b.TempDir()}, root: root}
	e.gw, err = New(Config{Client: func() (*grid.Client, error) { return c, nil }, Sites: e.reg, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := e.gw.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	_, e.port, _ = net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.gw.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return e
}

func benchPublish(b *testing.B, e *testEnv, dir string) (string, caps.Cap, gitremote.Stats) {
	b.Helper()
	ctx := context.Background()
	st := site.GridStore(e.c)
	wc, err := site.New(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	repo, err := gitremote.OpenRepo(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	res, stats, err := gitremote.Push(ctx, repo, st, wc, []gitremote.RefUpdate{{Src: "refs/heads/main", Dst: "refs/heads/main"}})
	if err != nil || res[0].Err != nil {
		b.Fatal(err, res)
	}
	id, _, err := e.reg.Add(wc)
	if err != nil {
		b.Fatal(err)
	}
	return id, wc, stats
}

// loopbackClient sends every request to the gateway whatever the host.
func loopbackClient(addr string, conns int) *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
	}}
}

// BenchmarkAppSmallFile serves a 2 KiB file of a published site from many
// client goroutines over keep-alive connections (a Go load generator on
// loopback); req/s is the figure for docs/BENCHMARKS.md.
func BenchmarkAppSmallFile(b *testing.B) {
	e := benchEnv(b)
	body := randomText(7, 2048)
	id, _, _ := benchPublish(b, e, gitRepo(b, map[string]string{"index.html": "<h1>x</h1>", "a/small.txt": body}))
	cl := loopbackClient(e.addr(), 64)
	url := e.appURL(id) + "/a/small.txt"
	get := func() error {
		resp, err := cl.Get(url)
		if err != nil {
			return err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(body)) {
			return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
		}
		return nil
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkAppFirstByte measures the time to the first byte of a large
// site file from a gateway with cold caches (new reader: refs, index and
// bundle opened afresh). SPHERE_BENCH_MB sets the size (default 100).
func BenchmarkAppFirstByte(b *testing.B) {
	mb := 100
	if v, err := strconv.Atoi(os.Getenv("SPHERE_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	e := benchEnv(b)
	dir := b.TempDir()
	git(b, dir, "init", "-q", "-b", "main")
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := []byte(randomText(3, 1<<20))
	for i := range mb {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	git(b, dir, "add", "-A")
	git(b, dir, "commit", "-qm", "big")
	id, _, _ := benchPublish(b, e, dir)
	cl := loopbackClient(e.addr(), 4)
	firstByte := func(rangeFrom int64) time.Duration {
		req, _ := http.NewRequest("GET", e.appURL(id)+"/big.bin", nil)
		if rangeFrom > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", rangeFrom))
		}
		start := time.Now()
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		resp.Body.Close()
		return d
	}
	b.Run("cold", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			e.gw.mu.Lock()
			e.gw.client = nil // the next request builds a new reader: cold caches
			e.gw.mu.Unlock()
			total += firstByte(0)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-first-byte")
	})
	b.Run("site-open", func(b *testing.B) {
		// The site is open (as after its page loaded); each request starts
		// in a segment not read yet.
		firstByte(0)
		var total time.Duration
		for i := range b.N {
			total += firstByte(int64((i*7+3)%mb) << 20)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-first-byte")
	})
}

// BenchmarkPush10kFiles pushes a repository of 10,000 small files to a new
// site (git rev-list + cat-file, one bundle, one index, the refs update).
func BenchmarkPush10kFiles(b *testing.B) {
	dir := b.TempDir()
	git(b, dir, "init", "-q", "-b", "main")
	var size int64
	for i := range 10000 {
		p := filepath.Join(dir, fmt.Sprintf("d%02d/f%05d.txt", i/100, i))
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		body := randomText(uint64(i), 200+i%800)
		size += int64(len(body))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	git(b, dir, "add", "-A")
	git(b, dir, "commit", "-qm", "10k")
	e := benchEnv(b)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		_, _, stats := benchPublish(b, e, dir)
		if stats.Objects < 10000 {
			b.Fatalf("pushed %d objects", stats.Objects)
		}
	}
}
