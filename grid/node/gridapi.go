package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// The grid half of the control API lets the CLI hand put and get to a
// running node: the node already holds connections to the grid's peers
// (and its stores in-process), so a CLI verb skips building a libp2p host,
// dialling every peer and warming its own buffers.
//
//	POST /v1/put  {"path": "/abs/file", "randomKey": false} -> {"cap": ..., "size": n}
//	GET  /v1/get?cap=CAP -> the verified plaintext (Content-Length = size)
//
// Put reads the file by path (same machine, same user), twice when the key
// is convergent. Get answers an HTTP error when the file cannot be opened;
// once bytes have gone out an error aborts the connection, so the client
// sees a truncated body and fails.

// ClientSecrets are the home's secrets the node's grid client needs
// (zero Convergence: the node refuses put and get with 501).
type ClientSecrets struct {
	Params      caps.Params
	Convergence []byte
	LeaseSecret [32]byte
}

// PutRequest is the body of POST /v1/put.
type PutRequest struct {
	Path      string `json:"path"` // absolute path of a regular file
	RandomKey bool   `json:"randomKey"`
}

// PutReply answers POST /v1/put.
type PutReply struct {
	Cap  string `json:"cap"`
	Size int64  `json:"size"`
}

// ErrNoGridAPI means the node does not offer put/get (no secrets, or an
// older node): the caller should do the work itself.
var ErrNoGridAPI = errors.New("node does not offer put/get")

// gridClient returns a grid client over the node's stores (in-process)
// and its connected members (over the node's host).
func (n *Node) gridClient() (*grid.Client, error) {
	sec := n.cfg.Client
	if len(sec.Convergence) == 0 {
		return nil, ErrNoGridAPI
	}
	var servers []grid.Server
	seen := map[grid.ServerID]bool{}
	for _, s := range n.allStores() {
		servers = append(servers, s.Server)
		seen[s.Server.ID()] = true
	}
	for _, ai := range n.StoragePeers() {
		if ai.ID == n.host.ID() || seen[grid.ServerID(ai.ID)] {
			continue
		}
		servers = append(servers, p2p.NewClient(n.host, ai.ID, p2p.ClientOptions{Logger: n.log}))
	}
	c, err := grid.NewClient(grid.ClientConfig{
		Servers: servers, Params: sec.Params, Convergence: sec.Convergence,
		LeaseSecret: sec.LeaseSecret, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node grid client: %w", err)
	}
	return c, nil
}

// noDeadlines lifts the control server's read/write timeouts for one
// long request (uploads and downloads of any size).
func noDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request) {
	var req PutRequest
	if err := decodeBody(r, &req); err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("put: bad request: %w", err))
		return
	}
	c, err := n.gridClient()
	if err != nil {
		replyErr(w, http.StatusNotImplemented, err)
		return
	}
	noDeadlines(w)
	f, err := os.Open(req.Path)
	if err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("put: %w", err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("put: %w", err))
		return
	}
	if !st.Mode().IsRegular() {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("put %s: not a regular file", req.Path))
		return
	}
	start := time.Now()
	capv, err := c.Upload(r.Context(), f, st.Size(), grid.UploadOptions{RandomKey: req.RandomKey})
	n.log.Debug("Put through node", "size", st.Size(), "servers", len(c.Servers()), "took", time.Since(start), "err", err)
	if err != nil {
		replyErr(w, http.StatusInternalServerError, fmt.Errorf("put %s: %w", req.Path, err))
		return
	}
	reply(w, PutReply{Cap: capv.String(), Size: st.Size()}, nil)
}

// firstWriteWriter sends the response header on the first write, so an
// error before any byte can still be an HTTP error.
type firstWriteWriter struct {
	w       http.ResponseWriter
	size    int64
	started bool
}

func (fw *firstWriteWriter) Write(p []byte) (int, error) {
	if !fw.started {
		fw.started = true
		fw.w.Header().Set("Content-Type", "application/octet-stream")
		if fw.size >= 0 {
			fw.w.Header().Set("Content-Length", strconv.FormatInt(fw.size, 10))
		}
		fw.w.WriteHeader(http.StatusOK)
	}
	return fw.w.Write(p)
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	cp, err := caps.Parse(r.URL.Query().Get("cap"))
	if err != nil {
		replyErr(w, http.StatusBadRequest, fmt.Errorf("get: bad cap: %w", err))
		return
	}
	c, err := n.gridClient()
	if err != nil {
		replyErr(w, http.StatusNotImplemented, err)
		return
	}
	noDeadlines(w)
	size := int64(-1)
	switch v := cp.(type) {
	case caps.CHKCap:
		size = int64(v.Size)
	case caps.LitCap:
		size = int64(len(v.Data))
	}
	fw := &firstWriteWriter{w: w, size: size}
	err = c.Download(r.Context(), cp, fw, nil)
	switch {
	case err == nil && !fw.started:
		fw.size = 0
		_, _ = fw.Write(nil) // an empty file
	case err != nil && !fw.started:
		replyErr(w, http.StatusBadGateway, fmt.Errorf("get: %w", err))
	case err != nil:
		n.log.Warn("Get through node failed mid-stream", "err", err)
		panic(http.ErrAbortHandler) // the client sees a truncated body
	}
}

func (c *Control) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, controlURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.File.Token)
	return req, nil
}

func apiErrorOf(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ae apiError
	_ = json.Unmarshal(raw, &ae)
	if resp.StatusCode == http.StatusNotImplemented || resp.StatusCode == http.StatusNotFound ||
		resp.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: %w", ErrNoGridAPI, &APIError{Code: resp.StatusCode, Msg: ae.Error})
	}
	return &APIError{Code: resp.StatusCode, Msg: ae.Error}
}

// Put asks the node to store the regular file at path (absolute, readable
// by the node) and returns its cap. ErrNoGridAPI: do it yourself.
func (c *Control) Put(ctx context.Context, path string, randomKey bool) (PutReply, error) {
	var out PutReply
	b, err := json.Marshal(PutRequest{Path: path, RandomKey: randomKey})
	if err != nil {
		return out, fmt.Errorf("control put: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/put", bytes.NewReader(b))
	if err != nil {
		return out, fmt.Errorf("control put: %w", err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return out, fmt.Errorf("control put: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, apiErrorOf(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxControlBody)).Decode(&out); err != nil {
		return out, fmt.Errorf("control put: %w", err)
	}
	return out, nil
}

// Get asks the node for the file cap names and copies its verified
// plaintext to w; a body shorter than the file is an error.
// ErrNoGridAPI (nothing written): do it yourself.
func (c *Control) Get(ctx context.Context, capStr string, w io.Writer, progress func(int64)) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/get?cap="+url.QueryEscape(capStr), nil)
	if err != nil {
		return fmt.Errorf("control get: %w", err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return fmt.Errorf("control get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiErrorOf(resp)
	}
	var dst io.Writer = w
	if progress != nil {
		dst = &progressWriter{w: w, fn: progress}
	}
	n, err := io.Copy(dst, resp.Body)
	if err != nil {
		return fmt.Errorf("control get: after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("control get: truncated: got=%d want=%d", n, resp.ContentLength)
	}
	return nil
}

type progressWriter struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	k, err := p.w.Write(b)
	p.n += int64(k)
	p.fn(p.n)
	return k, err
}
