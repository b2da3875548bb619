package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p"
)

const loopback = "/ip4/127.0.0.1/tcp/0"

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPSK(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, PSKSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// running is a node served until the test ends or stop is called.
type running struct {
	*Node
	stop func()
	done chan error
}

func startNode(t testing.TB, cfg Config) *running {
	t.Helper()
	if cfg.Identity == nil {
		cfg.Identity = newKey(t)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{loopback}
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 200 * time.Millisecond
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Node: n, done: make(chan error, 1)}
	go func() { r.done <- n.Serve(ctx) }()
	r.stop = func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			r.done <- nil
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return")
		}
	}
	t.Cleanup(r.stop)
	select {
	case <-n.Ready():
	case err := <-r.done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node not ready in 10 s")
	}
	return r
}

func selfInfo(n *Node) peer.AddrInfo { return n.selfInfo() }

// startMember admits cfg's identity on admin's list and starts it as a
// member of admin's grid, bootstrapped from the admin.
func startMember(t testing.TB, admin *running, cfg Config) *running {
	t.Helper()
	if cfg.Identity == nil {
		cfg.Identity = newKey(t)
	}
	id, err := peer.IDFromPrivateKey(cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Admit(id); err != nil {
		t.Fatal(err)
	}
	cfg.GridKey, cfg.Admin = admin.cfg.GridKey, admin.ID()
	cfg.Bootstrap = append(cfg.Bootstrap, selfInfo(admin.Node))
	return startNode(t, cfg)
}

// waitList waits until n holds a member list of at least serial.
func waitList(t testing.TB, n *Node, serial uint64) {
	t.Helper()
	for range 300 {
		if l, _ := n.members.current(); l != nil && l.Serial >= serial {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node %s never got member list %d", shortID(n.ID()), serial)
}

func serialOf(n *Node) uint64 {
	l, _ := n.members.current()
	if l == nil {
		return 0
	}
	return l.Serial
}

// waitFor polls cond every 50 ms for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func peerIDs(infos []peer.AddrInfo) []peer.ID {
	var out []peer.ID
	for _, ai := range infos {
		out = append(out, ai.ID)
	}
	return out
}

func TestMembersLearnEachOther(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	b := startMember(t, a, Config{StorageDir: t.TempDir()})
	c := startMember(t, a, Config{StorageDir: t.TempDir()})
	all := []peer.ID{a.ID(), b.ID(), c.ID()}
	for _, n := range []*running{a, b, c} {
		waitFor(t, "every node to reach every other", func() bool {
			ids := peerIDs(n.StoragePeers())
			for _, id := range all {
				if !slices.Contains(ids, id) {
					return false
				}
			}
			return len(ids) == 3
		})
	}
}

func TestNodeWithoutGridKeyCannotConnect(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	stranger := startNode(t, Config{GridKey: newPSK(t), StorageDir: t.TempDir(), Bootstrap: []peer.AddrInfo{selfInfo(a.Node)}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stranger.Host().Connect(ctx, selfInfo(a.Node)); err == nil {
		t.Fatal("a node with another grid key connected")
	}
	// Nor can it store: a storage client on a host with the wrong key fails.
	h, err := NewClientHost(nil, newPSK(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.Peerstore().AddAddrs(a.ID(), a.Host().Addrs(), time.Hour)
	srv := p2p.NewClient(h, a.ID(), p2p.ClientOptions{RequestTimeout: 5 * time.Second})
	data := []byte("share bytes")
	var si caps.StorageIndex
	err = srv.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)})
	if err == nil {
		t.Fatal("a host with another grid key stored a share")
	}
	if slices.Contains(peerIDs(a.StoragePeers()), stranger.ID()) {
		t.Fatal("stranger listed as a storage peer")
	}
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Shares != 0 {
		t.Fatalf("node holds %d shares after a refused write", st.Shares)
	}
}

func TestStoreThroughClientHost(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	ck, err := ClientKey(a.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewClientHost(ck, psk)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, selfInfo(a.Node)); err != nil {
		t.Fatal(err)
	}
	srv := p2p.NewClient(h, a.ID(), p2p.ClientOptions{})
	data := []byte("some share bytes")
	var si caps.StorageIndex
	si[0] = 1
	if err := srv.WriteShare(ctx, si, 3, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := srv.ReadShare(ctx, si, 3, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %q, %v", got, err)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Shares != 1 || st.Used < int64(len(data)) {
		t.Fatalf("status %+v: want 1 share of >= %d bytes", st, len(data))
	}
	// The client host is not a grid member.
	if slices.Contains(peerIDs(a.StoragePeers()), h.ID()) {
		t.Fatal("client host listed as a storage peer")
	}
}

func TestRestartKeepsIdentityAndPeers(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	dir := t.TempDir()
	key := newKey(t)
	cfg := Config{Identity: key, GridKey: psk, StorageDir: filepath.Join(dir, "storage"), PeersFile: filepath.Join(dir, "peers.json"),
		MembersFile: filepath.Join(dir, "members"), Admin: a.ID()}
	b := startMember(t, a, cfg)
	firstID := b.ID()
	waitFor(t, "b to know a", func() bool { return slices.Contains(peerIDs(b.StoragePeers()), a.ID()) })
	b.stop()
	// Restarted without the invite: the peers file brings a back.
	b2 := startNode(t, cfg)
	if b2.ID() != firstID {
		t.Fatalf("identity changed across restart: %s -> %s", firstID, b2.ID())
	}
	waitFor(t, "restarted b to reconnect to a", func() bool { return slices.Contains(peerIDs(b2.StoragePeers()), a.ID()) })
	waitFor(t, "a to see restarted b", func() bool { return slices.Contains(peerIDs(a.StoragePeers()), b2.ID()) })
}

func TestControlAPI(t *testing.T) {
	psk := newPSK(t)
	dir := t.TempDir()
	cf := filepath.Join(dir, "node.json")
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	bKey := newKey(t)
	b := startNode(t, Config{Identity: bKey, GridKey: psk, Admin: a.ID(), StorageDir: t.TempDir(), ControlFile: cf,
		LockFile: filepath.Join(dir, LockFileName), Quota: 1 << 20})
	ctx := context.Background()
	fi, err := os.Stat(cf)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("control file mode %v, want 0600", fi.Mode().Perm())
	}
	c, err := DialControl(ctx, cf)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PeerID != b.ID().String() || st.Quota != 1<<20 || len(st.Addrs) == 0 {
		t.Fatalf("status %+v", st)
	}
	// The socket's directory is private; without the token: refused.
	if fi, err := os.Stat(filepath.Dir(c.File.Socket)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("control socket directory: %v, %v", fi.Mode(), err)
	}
	nc := newControl(c.File)
	req, _ := http.NewRequest(http.MethodGet, controlURL+"/v1/status", nil)
	resp, err := nc.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d, want 401", resp.StatusCode)
	}
	// Join a's grid through the API, with an invite a issued.
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := c.Join(ctx, inv.String())
	if err != nil || jr.Connected != 1 {
		t.Fatalf("join: %+v, %v", jr, err)
	}
	peers, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := ParseAddrs(peers)
	if err != nil {
		t.Fatal(err)
	}
	if ids := peerIDs(infos); !slices.Contains(ids, a.ID()) || !slices.Contains(ids, b.ID()) {
		t.Fatalf("peers %v: want a and b", peers)
	}
	// An invite for another grid is refused.
	if _, err := c.Join(ctx, Invite{PSK: newPSK(t), Peers: inv.Peers}.String()); err == nil {
		t.Fatal("join of another grid's invite succeeded")
	}
	// A second node for the same home refuses to start, before it listens.
	if n2, err := New(Config{Identity: newKey(t), GridKey: psk, Listen: []string{loopback}, ControlFile: cf,
		LockFile: filepath.Join(dir, LockFileName)}); !errors.Is(err, ErrHomeLocked) {
		if n2 != nil {
			n2.Close()
		}
		t.Fatalf("second node on the same home: %v, want ErrHomeLocked", err)
	}
	// Clean exit removes the file; a stale file is detected.
	b.stop()
	if _, err := os.Stat(cf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control file left after exit: %v", err)
	}
	if err := os.WriteFile(cf, []byte(`{"version":2,"socket":"/nonexistent/sock","token":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DialControl(ctx, cf); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale control file: %v, want ErrNotRunning", err)
	}
}

func TestLocalServers(t *testing.T) {
	psk := newPSK(t)
	var locals []LocalServer
	for i := range 3 {
		locals = append(locals, LocalServer{Dir: filepath.Join(t.TempDir(), "s", string(rune('a'+i))), Identity: newKey(t)})
	}
	n := startNode(t, Config{GridKey: psk, LocalServers: locals})
	peers := n.StoragePeers()
	if len(peers) != 3 {
		t.Fatalf("%d storage peers, want the 3 local servers", len(peers))
	}
	for i, ls := range locals {
		id, _ := peer.IDFromPrivateKey(ls.Identity)
		if peers[i].ID != id {
			t.Fatalf("local server %d has id %s, want %s", i, peers[i].ID, id)
		}
	}
}

func TestDHTNodesReachEachOther(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), DHT: true})
	b := startMember(t, a, Config{StorageDir: t.TempDir(), DHT: true})
	waitFor(t, "a to see b", func() bool { return slices.Contains(peerIDs(a.StoragePeers()), b.ID()) })
	waitFor(t, "a's DHT routing table to hold b", func() bool {
		return a.dht != nil && slices.Contains(a.dht.RoutingTable().ListPeers(), b.ID())
	})
}

func TestControlFileOfAnotherProgram(t *testing.T) {
	// A control file naming a port where something else answers (here: a
	// node with another token) is stale, not an error.
	psk := newPSK(t)
	cf := filepath.Join(t.TempDir(), "node.json")
	startNode(t, Config{GridKey: psk, ControlFile: cf})
	c, err := DialControl(context.Background(), cf)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "node.json")
	f := c.File
	f.Token = "00"
	raw, _ := json.Marshal(f)
	if err := os.WriteFile(other, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DialControl(context.Background(), other); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("wrong token: %v, want ErrNotRunning", err)
	}
}

func TestMemberExchangeRejectsOversizedMessage(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir()})
	hk := newKey(t)
	hid, _ := peer.IDFromPrivateKey(hk)
	if _, err := a.Admit(hid); err != nil {
		t.Fatal(err)
	}
	h, err := NewClientHost(hk, psk)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, selfInfo(a.Node)); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, a.ID(), PeersProtocol)
	if err != nil {
		t.Fatal(err)
	}
	// A 4 GiB length prefix: the node must refuse it without reading on.
	if _, err := s.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readMsg(s, maxMemberMsg); err == nil {
		t.Fatal("node answered an oversized member list")
	}
	if len(a.members.known()) != 0 {
		t.Fatal("sender of a bad list got an address record")
	}
	// The node still works.
	if _, err := a.Status(ctx); err != nil {
		t.Fatal(err)
	}
}
