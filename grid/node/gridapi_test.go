package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/caps"
)

// gridNode starts a node with a control API and client secrets over its
// own store, two local servers and one remote member: four servers,
// enough for k=2 happy=4 n=4.
func gridNode(t *testing.T) (*Control, string) {
	t.Helper()
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	dir := t.TempDir()
	cf := filepath.Join(dir, "node.json")
	sec := ClientSecrets{Params: caps.Params{K: 2, Happy: 4, N: 4, SegmentSize: 64 << 10}, Convergence: bytes.Repeat([]byte{7}, 32)}
	sec.LeaseSecret[0] = 1
	locals := []LocalServer{
		{Dir: filepath.Join(dir, "l0"), Identity: newKey(t)},
		{Dir: filepath.Join(dir, "l1"), Identity: newKey(t)},
	}
	b := startMember(t, a, Config{StorageDir: t.TempDir(), ControlFile: cf, Client: sec, LocalServers: locals})
	waitFor(t, "4 storage peers", func() bool { return len(b.StoragePeers()) == 4 })
	c, err := DialControl(context.Background(), cf)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func TestPutGetThroughNode(t *testing.T) {
	c, dir := gridNode(t)
	ctx := context.Background()
	data := make([]byte, 300<<10+17) // several segments, a short last one
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := c.Put(ctx, path, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != int64(len(data)) {
		t.Fatalf("put size %d, want %d", r.Size, len(data))
	}
	if _, err := caps.Parse(r.Cap); err != nil {
		t.Fatalf("put returned a bad cap %q: %v", r.Cap, err)
	}
	// Convergent: the same file gives the same cap.
	r2, err := c.Put(ctx, path, false)
	if err != nil || r2.Cap != r.Cap {
		t.Fatalf("second put: cap %q err %v, want %q", r2.Cap, err, r.Cap)
	}
	var got bytes.Buffer
	var last int64
	if err := c.Get(ctx, r.Cap, &got, func(n int64) { last = n }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get returned %d bytes that differ from the %d put", got.Len(), len(data))
	}
	if last != int64(len(data)) {
		t.Fatalf("progress ended at %d, want %d", last, len(data))
	}
	// A small file (literal or single segment) and the empty file.
	for _, size := range []int{0, 20, 5000} {
		p := filepath.Join(dir, "small")
		if err := os.WriteFile(p, data[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := c.Put(ctx, p, true)
		if err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		got.Reset()
		if err := c.Get(ctx, r.Cap, &got, nil); err != nil {
			t.Fatalf("get %d bytes: %v", size, err)
		}
		if !bytes.Equal(got.Bytes(), data[:size]) {
			t.Fatalf("%d bytes: get returned %d different bytes", size, got.Len())
		}
	}
}

func TestGetThroughNodeErrors(t *testing.T) {
	c, dir := gridNode(t)
	ctx := context.Background()
	var ae *APIError
	var got bytes.Buffer
	err := c.Get(ctx, "sphere:chk:not-a-cap", &got, nil)
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Msg, "bad cap") {
		t.Fatalf("bad cap: err %v, want HTTP 400 bad cap", err)
	}
	// A well-formed cap of a file the grid does not hold: an HTTP error
	// before any byte.
	other := caps.CHKCap{Size: 1 << 20, K: 2, N: 4}
	other.Key[0] = 9
	err = c.Get(ctx, other.String(), &got, nil)
	t.Logf("missing file: %v", err)
	if !errors.As(err, &ae) || ae.Code != 502 || got.Len() != 0 {
		t.Fatalf("missing file: err %v, %d bytes written", err, got.Len())
	}
	// Put of something that is not a regular file.
	if _, err := c.Put(ctx, dir, false); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("put of a directory: err %v", err)
	}
	// A wrong token is refused.
	bad := &Control{File: c.File, hc: c.hc, stream: c.stream}
	bad.File.Token = strings.Repeat("0", 64)
	if _, err := bad.Put(ctx, filepath.Join(dir, "node.json"), false); !errors.As(err, &ae) || ae.Code != 401 {
		t.Fatalf("put with a wrong token: err %v, want HTTP 401", err)
	}
	if err := bad.Get(ctx, "sphere:lit:", &got, nil); !errors.As(err, &ae) || ae.Code != 401 {
		t.Fatalf("get with a wrong token: err %v, want HTTP 401", err)
	}
}

func TestNodeWithoutSecretsDeclinesPutGet(t *testing.T) {
	cf := filepath.Join(t.TempDir(), "node.json")
	startNode(t, Config{GridKey: newPSK(t), StorageDir: t.TempDir(), ControlFile: cf})
	c, err := DialControl(context.Background(), cf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(context.Background(), cf, false); !errors.Is(err, ErrNoGridAPI) {
		t.Fatalf("put: err %v, want ErrNoGridAPI", err)
	}
	if err := c.Get(context.Background(), "sphere:lit:", &bytes.Buffer{}, nil); !errors.Is(err, ErrNoGridAPI) {
		t.Fatalf("get: err %v, want ErrNoGridAPI", err)
	}
}

// A node that fails after the first bytes aborts the connection; Get must
// report it, not return a short file as success.
func TestGetReportsTruncatedBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fw := &firstWriteWriter{w: w, size: 1 << 20}
		_, _ = fw.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	c := &Control{File: ControlFile{Token: "t"}, stream: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}}}
	var got bytes.Buffer
	err := c.Get(context.Background(), "sphere:lit:", &got, nil)
	if err == nil {
		t.Fatalf("truncated body: no error after %d bytes", got.Len())
	}
	t.Logf("truncated: %v", err)
}
