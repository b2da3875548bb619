// Command webload is a small HTTP load generator for the gateway's
// benchmarks (scripts/bench-web.sh): GETs one URL from C connections for a
// while, sending every request to 127.0.0.1 whatever the URL's host
// (*.localhost site hosts), and prints requests per second.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	conns := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 5*time.Second, "how long to run")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: webload [-c N] [-d DUR] URL")
		os.Exit(2)
	}
	u, err := url.Parse(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	addr := net.JoinHostPort("127.0.0.1", u.Port())
	d := &net.Dialer{}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns,
	}}
	var ok, failed, bytes atomic.Int64
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := cl.Get(u.String())
				if err != nil {
					failed.Add(1)
					continue
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				bytes.Add(n)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%d requests in %.1f s: %.0f req/s, %.1f MB/s, %d failed\n", ok.Load(), secs, float64(ok.Load())/secs, float64(bytes.Load())/1e6/secs, failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
