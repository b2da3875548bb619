package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// The control API is HTTP on 127.0.0.1 at a random port, guarded by a
// random bearer token. Both are in the control file (node.json in the
// home, mode 0600), which exists only while the node runs; the CLI verbs
// read it to find the node.

// ControlFile is the content of the control file.
type ControlFile struct {
	Version int    `json:"version"`
	Addr    string `json:"addr"`  // host:port of the control API
	Token   string `json:"token"` // hex bearer token
	PID     int    `json:"pid"`
	PeerID  string `json:"peerId"`
}

// Status is what GET /v1/status answers.
type Status struct {
	PeerID string   `json:"peerId"`
	Addrs  []string `json:"addrs"` // listen addresses with /p2p/
	// Members are known grid members; Connected those connected now.
	Members   int      `json:"members"`
	Connected []string `json:"connected"`
	// LocalServers is the number of in-process storage peers (sphere up).
	LocalServers int `json:"localServers"`
	// Storage totals over the stores this process serves.
	Shares int   `json:"shares"`
	Used   int64 `json:"used"`
	Quota  int64 `json:"quota"` // 0: no limit
	// ExpiringSoon counts shares whose last lease expires within 7 days
	// (-1: the store cannot tell).
	ExpiringSoon int       `json:"expiringSoon"`
	Started      time.Time `json:"started"`
}

// PeersReply is what GET /v1/peers answers: the grid's storage peers this
// node can reach, as multiaddrs ending in /p2p/<id>.
type PeersReply struct {
	Peers []string `json:"peers"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Invite string `json:"invite"`
}

// JoinReply answers POST /v1/join.
type JoinReply struct {
	Connected int `json:"connected"` // invite peers we connected to
}

type apiError struct {
	Error string `json:"error"`
}

// maxControlBody bounds a control request body.
const maxControlBody = 64 << 10

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// controlHandler serves the control API for n, checking token.
func (n *Node) controlHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := n.Status(r.Context())
		reply(w, st, err)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		reply(w, PeersReply{Peers: FormatAddrs(n.StoragePeers())}, nil)
	})
	mux.HandleFunc("POST /v1/join", func(w http.ResponseWriter, r *http.Request) {
		var req JoinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, maxControlBody)).Decode(&req); err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("join: bad request: %w", err))
			return
		}
		inv, err := ParseInvite(req.Invite)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		c, err := n.Join(r.Context(), inv)
		reply(w, JoinReply{Connected: c}, err)
	})
	mux.HandleFunc("POST /v1/put", n.handlePut)
	mux.HandleFunc("GET /v1/get", n.handleGet)
	n.ledgerRoutes(mux)
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			replyErr(w, http.StatusUnauthorized, errors.New("bad or missing control token"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		replyErr(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func replyErr(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: err.Error()})
}

// startControl listens on 127.0.0.1:0 and serves the control API until
// ctx ends; it returns the control file content to publish.
func (n *Node) startControl(ctx context.Context) (ControlFile, func(), error) {
	token, err := newToken()
	if err != nil {
		return ControlFile{}, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ControlFile{}, nil, fmt.Errorf("control API: %w", err)
	}
	srv := &http.Server{
		Handler:           n.controlHandler(token),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("Control API stopped", "err", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	return ControlFile{
		Version: 1, Addr: ln.Addr().String(), Token: token, PID: os.Getpid(), PeerID: n.host.ID().String(),
	}, stop, nil
}

// ErrNotRunning means no node answers for the control file.
var ErrNotRunning = errors.New("no node running")

// Control is a client of a running node's control API.
type Control struct {
	File ControlFile
	hc   *http.Client
}

// DialControl reads the control file at path and checks that the node
// answers (a file left by a crashed node is stale: ErrNotRunning).
func DialControl(ctx context.Context, path string) (*Control, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("control file: %w", err)
	}
	var f ControlFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("control file %s: %w", path, err)
	}
	c := &Control{File: f, hc: &http.Client{Timeout: 30 * time.Second}}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := c.Status(pctx); err != nil {
		// Whatever answers (or not) there is not this home's node: a
		// crashed node's port may since belong to another program.
		return nil, fmt.Errorf("%w (stale control file %s: %v)", ErrNotRunning, path, err)
	}
	return c, nil
}

// APIError is an error answered by the control API.
type APIError struct {
	Code int
	Msg  string
}

func (e *APIError) Error() string { return fmt.Sprintf("node: %s (HTTP %d)", e.Msg, e.Code) }

func (c *Control) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.File.Addr+path, body)
	if err != nil {
		return fmt.Errorf("control %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.File.Token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("control %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		_ = json.Unmarshal(raw, &ae)
		return &APIError{Code: resp.StatusCode, Msg: ae.Error}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("control %s: %w", path, err)
	}
	return nil
}

// Status asks the node for its status.
func (c *Control) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Peers asks the node for the grid's storage peers it can reach.
func (c *Control) Peers(ctx context.Context) ([]string, error) {
	var pr PeersReply
	err := c.call(ctx, http.MethodGet, "/v1/peers", nil, &pr)
	return pr.Peers, err
}

// Join hands an invite to the node, which connects to its peers now.
func (c *Control) Join(ctx context.Context, invite string) (JoinReply, error) {
	var jr JoinReply
	err := c.call(ctx, http.MethodPost, "/v1/join", JoinRequest{Invite: invite}, &jr)
	return jr, err
}
