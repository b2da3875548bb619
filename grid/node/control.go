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
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The control API is HTTP on a unix socket inside the home (in run/, a
// directory of mode 0700, so only the home's user can connect or put a
// socket there), guarded by a random bearer token. Socket path and token
// are in the control file (node.json in the home, mode 0600), which
// exists only while the node runs; the CLI verbs read it to find the node
// and check that the node answering holds the home's lock and the token
// and has the peer id the file names.

// ControlVersion is the version of the control file this code writes.
const ControlVersion = 2

// ControlFile is the content of the control file.
type ControlFile struct {
	Version int    `json:"version"`
	Socket  string `json:"socket"` // unix socket of the control API
	Token   string `json:"token"`  // hex bearer token
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
	// Admin: this node is the grid's admin; AdminID is the admin's peer
	// id and ListSerial the serial of the member list held ("" / 0:
	// not a member yet).
	Admin      bool   `json:"admin"`
	AdminID    string `json:"adminId,omitempty"`
	ListSerial uint64 `json:"listSerial"`
	// FailedStores are stores out of service because they found their
	// storage damaged (they answer every call with the failure); their
	// space is not in the totals. Repair: stop the node, then
	// sphere store fsck --rebuild DIR.
	FailedStores []FailedStore `json:"failedStores,omitempty"`
	// Memory is the process's heap and what the storage protocol holds of
	// its request-memory budget.
	Memory MemoryStatus `json:"memory"`
	// Accounting: balances from the ledger (countersigned entries only)
	// and what the stores did per peer (unilateral counts).
	Accounting Accounting `json:"accounting"`
}

// MemoryStatus is the memory part of Status. The protocol figures are
// summed over the stores this process serves (p2p.Service.Stats).
type MemoryStatus struct {
	HeapInuse     uint64 `json:"heapInuse"`     // Go heap spans in use (runtime.MemStats)
	Buffered      int64  `json:"buffered"`      // request memory reserved now
	Budget        int64  `json:"budget"`        // request memory allowed
	Refused       uint64 `json:"refused"`       // requests answered busy
	CutOff        uint64 `json:"cutOff"`        // streams cut off mid-request (stalls, trickles)
	ServedStreams int    `json:"servedStreams"` // storage streams being served now
	ServedSources int    `json:"servedSources"` // distinct sources (IP, IPv6 /64) among them
}

// FailedStore is one store out of service, and why.
type FailedStore struct {
	Dir   string `json:"dir"`
	Error string `json:"error"`
}

// InviteRequest is the body of POST /v1/invite.
type InviteRequest struct {
	ExpiresSeconds int64 `json:"expiresSeconds"` // 0: DefaultInviteExpiry
}

// InviteReply answers POST /v1/invite.
type InviteReply struct {
	Invite  string    `json:"invite"`
	Expires time.Time `json:"expires"`
}

// MemberInfo is one member in GET /v1/members.
type MemberInfo struct {
	PeerID    string    `json:"peerId"`
	Added     time.Time `json:"added"`
	Admin     bool      `json:"admin"`
	Self      bool      `json:"self"`
	Connected bool      `json:"connected"`
	Addrs     []string  `json:"addrs"`
}

// MembersReply answers GET /v1/members.
type MembersReply struct {
	Serial  uint64       `json:"serial"`
	Issued  time.Time    `json:"issued"`
	Admin   string       `json:"admin"`
	Members []MemberInfo `json:"members"`
	Removed []string     `json:"removed"`
}

// RemoveRequest is the body of POST /v1/members/remove.
type RemoveRequest struct {
	PeerID string `json:"peerId"`
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
		if err := decodeBody(r, &req); err != nil {
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
	mux.HandleFunc("POST /v1/invite", func(w http.ResponseWriter, r *http.Request) {
		var req InviteRequest
		if err := decodeBody(r, &req); err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("invite: bad request: %w", err))
			return
		}
		inv, err := n.Invite(time.Duration(req.ExpiresSeconds) * time.Second)
		if errors.Is(err, ErrNotAdmin) {
			replyErr(w, http.StatusForbidden, err)
			return
		}
		reply(w, InviteReply{Invite: inv.String(), Expires: time.Unix(inv.Expires, 0).UTC()}, err)
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		reply(w, n.MembersInfo(), nil)
	})
	mux.HandleFunc("POST /v1/members/remove", func(w http.ResponseWriter, r *http.Request) {
		var req RemoveRequest
		if err := decodeBody(r, &req); err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("remove: bad request: %w", err))
			return
		}
		id, err := peer.Decode(req.PeerID)
		if err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("remove: bad peer id: %w", err))
			return
		}
		if _, err := n.RemoveMember(id); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrNotAdmin) {
				code = http.StatusForbidden
			}
			replyErr(w, code, err)
			return
		}
		reply(w, n.MembersInfo(), nil)
	})
	mux.HandleFunc("POST /v1/switch", n.handleSwitch)
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

// decodeBody decodes a JSON request body of at most maxControlBody bytes.
func decodeBody(r *http.Request, v any) error {
	return decodeBodyN(r, v, maxControlBody)
}

// decodeBodyN decodes a JSON request body of at most limit bytes.
func decodeBodyN(r *http.Request, v any, limit int64) error {
	return json.NewDecoder(io.LimitReader(r.Body, limit)).Decode(v)
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

// maxSocketPath is the longest unix socket path Linux takes (sun_path
// is 108 bytes with the terminating NUL; macOS allows 104).
const maxSocketPath = 103

// socketPath is where the control socket lives.
func (n *Node) socketPath() string {
	if n.cfg.ControlSocket != "" {
		return n.cfg.ControlSocket
	}
	return filepath.Join(filepath.Dir(n.cfg.ControlFile), "run", "node.sock")
}

// startControl listens on the control socket and serves the control API
// until stop; it returns the control file content to publish.
func (n *Node) startControl(ctx context.Context) (ControlFile, func(), error) {
	token, err := newToken()
	if err != nil {
		return ControlFile{}, nil, err
	}
	sock := n.socketPath()
	if len(sock) > maxSocketPath {
		return ControlFile{}, nil, fmt.Errorf("control API: socket path %s is %d bytes, the system allows %d: use a shorter home path", sock, len(sock), maxSocketPath)
	}
	dir := filepath.Dir(sock)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ControlFile{}, nil, fmt.Errorf("control API: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return ControlFile{}, nil, fmt.Errorf("control API: %w", err)
	}
	// A socket left by a node that died: we hold the home's lock (or the
	// caller chose no lock), so it is nobody's.
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
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
		_ = os.Remove(sock)
	}
	return ControlFile{
		Version: ControlVersion, Socket: sock, Token: token, PID: os.Getpid(), PeerID: n.host.ID().String(),
	}, stop, nil
}

// ErrNotRunning means no node answers for the control file.
var ErrNotRunning = errors.New("no node running")

// Control is a client of a running node's control API.
type Control struct {
	File ControlFile
	hc   *http.Client
	// stream has no overall timeout: put and get take as long as the
	// file needs; the caller's ctx bounds them.
	stream *http.Client
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
	if f.Version != ControlVersion || f.Socket == "" {
		return nil, fmt.Errorf("%w (control file %s of another version)", ErrNotRunning, path)
	}
	// Liveness: a node holds the home's lock while it runs; the kernel
	// drops it when the node dies, however it dies.
	lock := filepath.Join(filepath.Dir(path), LockFileName)
	if _, err := os.Stat(lock); err == nil && !HomeLocked(lock) {
		return nil, fmt.Errorf("%w (stale control file %s: no process holds %s)", ErrNotRunning, path, lock)
	}
	c := newControl(f)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := c.Status(pctx)
	if err != nil {
		// Whatever answers (or not) there is not this home's node.
		return nil, fmt.Errorf("%w (stale control file %s: %v)", ErrNotRunning, path, err)
	}
	if st.PeerID != f.PeerID {
		return nil, fmt.Errorf("%w (control socket of %s answered as %s)", ErrNotRunning, f.PeerID, st.PeerID)
	}
	return c, nil
}

// LockFileName is the lock file a node holds in its home while it runs.
const LockFileName = "node.lock"

func newControl(f ControlFile) *Control {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", f.Socket)
		},
		MaxIdleConns: 4,
	}
	return &Control{File: f, hc: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		stream: &http.Client{Transport: tr}}
}

// controlURL is the base of control requests (the host part is ignored:
// the transport dials the socket).
const controlURL = "http://sphere-node"

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
	req, err := http.NewRequestWithContext(ctx, method, controlURL+path, body)
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

// Invite asks the node (the grid's admin) for a fresh one-time invite.
func (c *Control) Invite(ctx context.Context, expires time.Duration) (InviteReply, error) {
	var ir InviteReply
	err := c.call(ctx, http.MethodPost, "/v1/invite", InviteRequest{ExpiresSeconds: int64(expires / time.Second)}, &ir)
	return ir, err
}

// Members asks the node for the grid's member list.
func (c *Control) Members(ctx context.Context) (MembersReply, error) {
	var mr MembersReply
	err := c.call(ctx, http.MethodGet, "/v1/members", nil, &mr)
	return mr, err
}

// RemoveMember asks the node (the admin) to remove a member.
func (c *Control) RemoveMember(ctx context.Context, id string) (MembersReply, error) {
	var mr MembersReply
	err := c.call(ctx, http.MethodPost, "/v1/members/remove", RemoveRequest{PeerID: id}, &mr)
	return mr, err
}

// MembersInfo describes the member list this node holds.
func (n *Node) MembersInfo() MembersReply {
	list, _ := n.members.current()
	out := MembersReply{Members: []MemberInfo{}, Removed: []string{}}
	if list == nil {
		return out
	}
	out.Serial, out.Issued, out.Admin = list.Serial, time.Unix(list.Issued, 0).UTC(), list.Admin.String()
	known := map[peer.ID][]string{}
	for _, ai := range n.members.known() {
		known[ai.ID] = FormatAddrs([]peer.AddrInfo{ai})
	}
	for _, m := range list.Members {
		mi := MemberInfo{PeerID: m.ID.String(), Added: time.Unix(m.Added, 0).UTC(), Admin: m.ID == list.Admin,
			Self: m.ID == n.host.ID(), Addrs: known[m.ID]}
		if mi.Self {
			mi.Connected, mi.Addrs = true, FormatAddrs([]peer.AddrInfo{n.selfInfo()})
		} else {
			mi.Connected = n.host.Network().Connectedness(m.ID) == network.Connected
		}
		if mi.Addrs == nil {
			mi.Addrs = []string{}
		}
		out.Members = append(out.Members, mi)
	}
	for _, id := range list.Removed {
		out.Removed = append(out.Removed, id.String())
	}
	return out
}
