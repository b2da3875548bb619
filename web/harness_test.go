package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/web/gitremote"
	"github.com/sphere-grid/sphere/web/site"
)

// testEnv is a gateway over an in-process grid of memory servers, on a
// real loopback listener.
type testEnv struct {
	t    *testing.T
	c    *grid.Client
	gw   *Gateway
	port string
	reg  Registry
	root caps.Cap

	mu   sync.Mutex
	reqs []reqLog
}

type reqLog struct {
	Host, Path, Method, Dest string
	Status                   int
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	c, err := grid.NewClient(grid.ClientConfig{Servers: gridtest.NewMemGrid(10), Params: caps.DefaultParams(),
		Convergence: bytes.Repeat([]byte{3}, 32), LeaseSecret: [32]byte{3}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	root, err := fs.FromClient(c).CreateDir(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, c: c, reg: Registry{Dir: t.TempDir()}, root: root}
	e.gw, err = New(Config{Client: func() (*grid.Client, error) { return c, nil }, Root: func(context.Context) (caps.Cap, error) { return root, nil }, Sites: e.reg, Logger: quietLogger(),
		Status: func(context.Context) (any, error) { return map[string]any{"peers": 0}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	e.gw.OnRequest = func(r *http.Request, status int) {
		e.mu.Lock()
		e.reqs = append(e.reqs, reqLog{Host: r.Host, Path: r.URL.Path, Method: r.Method, Dest: r.Header.Get("Sec-Fetch-Dest"), Status: status})
		e.mu.Unlock()
	}
	ln, err := e.gw.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, e.port, _ = net.SplitHostPort(ln.Addr().String())
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = e.gw.Serve(sctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// requests returns the logged requests matching host and path prefix.
func (e *testEnv) requests(hostPrefix, pathPrefix string) []reqLog {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []reqLog
	for _, r := range e.reqs {
		if strings.HasPrefix(r.Host, hostPrefix) && strings.HasPrefix(r.Path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

// gitRepo makes a git repository holding files and commits them.
func gitRepo(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	writeFiles(t, dir, files)
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-qm", "one")
	return dir
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// publish stores the repository's main branch as a new site.
func (e *testEnv) publish(dir string) (id string, wc caps.Cap) {
	e.t.Helper()
	ctx := context.Background()
	st := site.GridStore(e.c)
	wc, err := site.New(ctx, st)
	if err != nil {
		e.t.Fatal(err)
	}
	e.push(dir, wc)
	id, _, err = e.reg.Add(wc)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, wc
}

func (e *testEnv) push(dir string, wc caps.Cap) gitremote.Stats {
	e.t.Helper()
	ctx := context.Background()
	repo, err := gitremote.OpenRepo(ctx, dir)
	if err != nil {
		e.t.Fatal(err)
	}
	res, stats, err := gitremote.Push(ctx, repo, site.GridStore(e.c), wc, []gitremote.RefUpdate{{Src: "refs/heads/main", Dst: "refs/heads/main"}})
	if err != nil || res[0].Err != nil {
		e.t.Fatalf("push: %v %v", err, res)
	}
	return stats
}

func (e *testEnv) gwURL() string            { return "http://localhost:" + e.port + "/" }
func (e *testEnv) appURL(id string) string  { return "http://" + id + ".localhost:" + e.port }
func (e *testEnv) appHost(id string) string { return id + ".localhost:" + e.port }
func (e *testEnv) ownHost() string          { return "localhost:" + e.port }
func (e *testEnv) addr() string             { return "127.0.0.1:" + e.port }
func (e *testEnv) token() string            { return e.gw.Token() }

// raw sends a request with a path exactly as given (no client cleaning).
func (e *testEnv) raw(method, host, path string, hdr map[string]string, body string) (*http.Response, string) {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr(), 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, host)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(rb)
}

func sleepBrief() { time.Sleep(100 * time.Millisecond) }

// treeList lists a folder of the user's drive through the API.
func (e *testEnv) treeList(p string) (string, error) {
	resp, body := e.raw("GET", e.ownHost(), "/api/ls?cap=home&path="+p, map[string]string{"Authorization": "Bearer " + e.token()}, "")
	if resp.StatusCode != 200 {
		return body, fmt.Errorf("ls %s: %d %s", p, resp.StatusCode, body)
	}
	return body, nil
}
