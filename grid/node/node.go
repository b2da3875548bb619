package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/ledger"
)

// Config configures a Node. Paths are usually inside the node's home.
type Config struct {
	// Identity is the node's persistent libp2p key (required).
	Identity crypto.PrivKey
	// GridKey is the grid's 32-byte key (required): hosts without it
	// cannot complete a connection (see gridPrologue).
	GridKey []byte
	// Listen are libp2p multiaddrs to listen on, TCP only (QUIC's TLS
	// cannot carry the grid-key check).
	Listen []string
	// StorageDir is where the node keeps the shares it stores for the
	// grid ("" : the node stores nothing itself, as under `sphere up`,
	// where the local servers store).
	StorageDir string
	// Quota bounds the bytes stored in StorageDir (0: no limit).
	Quota int64
	// Bootstrap are peers to connect to at start (from invites).
	Bootstrap []peer.AddrInfo
	// PeersFile persists members' signed address records ("" : not
	// persisted).
	PeersFile string
	// MembersFile persists the grid's signed member list ("" : not
	// persisted).
	MembersFile string
	// InvitesFile keeps the invites this node issued as admin ("" : not
	// persisted).
	InvitesFile string
	// Admin is the grid's admin, whose signature on member lists this
	// node trusts (the first peer of the invite it joined by); empty: this
	// node founded its grid and is its admin.
	Admin peer.ID
	// JoinFile holds an invite code to redeem at start ("" : none); it is
	// removed once the admin answered.
	JoinFile string
	// LockFile is locked while the node runs, before it listens, so a
	// second node on the same home is refused ("" : no lock).
	LockFile string
	// ControlFile is where the control API's socket and token are
	// published while the node runs ("" : no control API).
	ControlFile string
	// ControlSocket is the unix socket of the control API (default:
	// run/node.sock beside ControlFile, in a directory of mode 0700).
	ControlSocket string
	// LocalServers are in-process storage peers, each its own libp2p
	// host on 127.0.0.1 (the embedded grid of `sphere up`).
	LocalServers []LocalServer
	// DHT switches on Kademlia discovery under the "/sphere" prefix,
	// bootstrapped only from known members.
	DHT bool
	// HolePunching switches on libp2p hole punching (off by default).
	HolePunching bool
	// Grace is how long a share outlives its last lease before the
	// sweeper deletes it (zero: grid.DefaultLeaseGrace; negative: none).
	Grace time.Duration
	// LeaseTerm is how long a lease added or renewed on this node's
	// stores lasts (zero: grid.DefaultLeaseTerm).
	LeaseTerm time.Duration
	// Now is the clock of leases and the sweeper (nil: time.Now).
	Now func() time.Time
	// SweepEvery is how often expired shares are collected (zero: the
	// store's default, one hour).
	SweepEvery time.Duration
	// LedgerFile is the node's ledger (bbolt; "" : none, see ledger.go).
	LedgerFile string
	// Admission switches on tit-for-tat admission at this node's stores
	// (accounting.go): a member's new shares are refused once the node
	// stores more for it than the policy's newcomer allowance plus what it
	// stores for the node (countersigned). Off by default: no real flow
	// writes countersigned leases yet, so every member would be held to
	// the newcomer allowance for good.
	Admission bool
	// AdmissionPolicy overrides ledger.DefaultPolicy() (tests).
	AdmissionPolicy *ledger.Policy
	// RefreshInterval is how often known members are re-dialled (zero: 5 s).
	RefreshInterval time.Duration
	// Client holds the home's secrets for the control API's put and get
	// (zero: the node refuses them and the CLI does the work itself).
	Client ClientSecrets
	Logger *slog.Logger
}

// LocalServer is one in-process storage peer of the embedded grid.
type LocalServer struct {
	Dir      string
	Identity crypto.PrivKey
	Quota    int64
}

// Node is a running grid member: a libp2p host that serves its store(s),
// keeps connected to the grid's members and answers the control API.
type Node struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	store   *servedStore // nil without StorageDir
	locals  []*localPeer
	members *membership
	invites *inviteStore // admin only
	gater   *gater
	dht     *dht.IpfsDHT
	ledger  *ledgerService
	acct    *accounting
	started time.Time
	unlock  func()
	joinSem chan struct{}
	// switchTo carries a switch request to Serve (see restart.go).
	switchTo chan *SwitchGrid
	listMu   sync.Mutex // serialises the admin's list changes

	readyOnce sync.Once
	ready     chan struct{}
	closeOnce sync.Once
}

type localPeer struct {
	host  host.Host
	store *servedStore
}

// usePnet selects libp2p's private network (a PSK XSalsa20 layer under
// TLS or Noise) instead of the Noise prologue as the grid's admission
// check. Both refuse hosts without the grid key; pnet also hides the
// handshake but costs an extra cipher pass over every byte (see
// docs/BENCHMARKS.md), so it is kept for comparison only.
var usePnet = false

// gridPrologue is the Noise prologue of a grid: both ends of a handshake
// must hash the same prologue or the handshake fails, so only holders of
// the grid key complete a connection. The key itself never leaves the host.
func gridPrologue(psk []byte) []byte {
	h := sha256.New()
	h.Write([]byte("sphere-grid-prologue-v1"))
	h.Write(psk)
	return h.Sum(nil)
}

// newHost builds a libp2p host for the grid: TCP, grid TLS and Noise both
// bound to the grid key (docs/spec/node.md), the storage protocol's
// resource limits, no relay, no mDNS, no public bootstrap.
func newHost(priv crypto.PrivKey, psk []byte, listen []string, holePunch bool, g *gater) (host.Host, error) {
	if len(psk) != PSKSize {
		return nil, fmt.Errorf("grid key size: want=%d have=%d", PSKSize, len(psk))
	}
	rm, err := newResourceManager()
	if err != nil {
		return nil, err
	}
	// SO_REUSEPORT (libp2p's default) lets a second process listen on a
	// port in use, so two nodes would split one port's connections; it
	// only helps hole punching, so it is on only with that.
	var tcpOpts []any
	if !holePunch {
		tcpOpts = append(tcpOpts, tcp.DisableReuseport())
	}
	opts := []libp2p.Option{
		libp2p.Transport(tcp.NewTCPTransport, tcpOpts...),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(rm),
	}
	if usePnet {
		opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(psk)),
			libp2p.Security(tls.ID, tls.New), libp2p.Security(noise.ID, noise.New))
	} else {
		prologue := gridPrologue(psk)
		// Grid TLS first (cheaper per byte); Noise with the grid prologue
		// for peers that do not offer it. Both need the grid key.
		// SPHERE_GRID_SECURITY=noise offers only Noise (for comparisons).
		if os.Getenv("SPHERE_GRID_SECURITY") != "noise" {
			opts = append(opts, libp2p.Security(string(GridTLSID), newGridTLS(psk)))
		}
		opts = append(opts, libp2p.Security(noise.ID,
			func(id protocol.ID, priv crypto.PrivKey, muxers []tptu.StreamMuxer) (*noise.SessionTransport, error) {
				t, err := noise.New(id, priv, muxers)
				if err != nil {
					return nil, err
				}
				return t.WithSessionOptions(noise.Prologue(prologue))
			}))
	}
	if priv != nil {
		opts = append(opts, libp2p.Identity(priv))
	}
	if len(listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	}
	if holePunch {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if g != nil {
		opts = append(opts, libp2p.ConnectionGater(g))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return h, nil
}

// NewClientHost returns a libp2p host that only dials, for short-lived CLI
// processes. Storage peers serve only members, so priv should be the
// home's node identity (nil: a random identity, which can only join).
func NewClientHost(priv crypto.PrivKey, psk []byte) (host.Host, error) {
	return newHost(priv, psk, nil, false, nil)
}

// NewMemberHost returns a libp2p host on the grid of psk with identity priv
// (nil: a random one), listening on listen (none: dial only), built as a
// node builds its own. It is for tools and tests that act as a member
// without running a node (the hostile-member test uses it).
func NewMemberHost(priv crypto.PrivKey, psk []byte, listen []string) (host.Host, error) {
	return newHost(priv, psk, listen, false, nil)
}

// New opens the node's stores and starts its libp2p hosts; Serve runs it.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil {
		return nil, errors.New("node: no identity")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Second
	}
	n := &Node{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), started: time.Now(),
		gater: &gater{}, joinSem: make(chan struct{}, 4), switchTo: make(chan *SwitchGrid, 1)}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	var err error
	if cfg.LockFile != "" {
		// Before anything listens: a second node on this home stops here.
		if n.unlock, err = LockHome(cfg.LockFile); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if n.host, err = newHost(cfg.Identity, cfg.GridKey, cfg.Listen, cfg.HolePunching, n.gater); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.log = n.log.With("peer", shortID(n.host.ID()))
	if n.members, err = newMembership(n.host, cfg.Identity, cfg.GridKey, cfg.Admin, cfg.MembersFile, cfg.PeersFile,
		cfg.Bootstrap, n.log, cfg.Now); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.gater.m.Store(n.members)
	n.members.onRemoved = n.dropRemoved
	if _, isAdmin := n.members.current(); isAdmin {
		if n.invites, err = openInviteStore(cfg.InvitesFile); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	gated := gatedHost{Host: n.host, allow: n.members.allowed}
	n.acct = newAccounting(n.cfg, n.members, func() *ledgerService { return n.ledger })
	if cfg.StorageDir != "" {
		if n.store, err = openServedStore(gated, cfg.StorageDir, cfg.Quota, cfg, n.acct, n.log); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if err := n.openLocals(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.host.SetStreamHandler(PeersProtocol, n.members.handle)
	n.host.SetStreamHandler(JoinProtocol, n.handleJoin)
	if err := n.openLedger(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	ok = true
	return n, nil
}

// dropRemoved closes connections with peers the member list removed (the
// gater refuses new ones).
func (n *Node) dropRemoved(ids []peer.ID) {
	// Streams are refused from now on (membership is checked per
	// stream); connections close a moment later so an answer in flight
	// (the admin's reply to a rotation) still gets out.
	time.AfterFunc(500*time.Millisecond, func() { n.closePeers(ids) })
}

func (n *Node) closePeers(ids []peer.ID) {
	for _, id := range ids {
		if n.host.Network().Connectedness(id) == network.Connected {
			n.log.Info("Disconnecting a removed member", "peer", id.String())
		}
		_ = n.host.Network().ClosePeer(id)
		for _, lp := range n.locals {
			if lp != nil {
				_ = lp.host.Network().ClosePeer(id)
			}
		}
	}
}

// openLocals starts the embedded grid's peers in parallel (each opens a
// bbolt store and a libp2p host), then connects the node to them.
func (n *Node) openLocals() error {
	n.locals = make([]*localPeer, len(n.cfg.LocalServers))
	errs := make([]error, len(n.cfg.LocalServers))
	var wg sync.WaitGroup
	for i, ls := range n.cfg.LocalServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := newHost(ls.Identity, n.cfg.GridKey, []string{"/ip4/127.0.0.1/tcp/0"}, false, n.gater)
			if err != nil {
				errs[i] = fmt.Errorf("local server %d: %w", i, err)
				return
			}
			st, err := openServedStore(gatedHost{Host: h, allow: n.members.allowed}, ls.Dir, ls.Quota, n.cfg, n.acct, n.log.With("local", i))
			if err != nil {
				h.Close()
				errs[i] = fmt.Errorf("local server %d: %w", i, err)
				return
			}
			n.locals[i] = &localPeer{host: h, store: st}
		}()
	}
	wg.Wait()
	for _, lp := range n.locals {
		if lp != nil {
			n.members.mu.Lock()
			n.members.local[lp.host.ID()] = true
			n.members.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// ID returns the node's peer id.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Ready is closed once Serve has everything running (and the control file
// is written).
func (n *Node) Ready() <-chan struct{} { return n.ready }

func (n *Node) selfInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
}

// StoragePeers lists the storage peers of the grid this node can reach:
// itself (when it stores), its local servers, and connected members.
func (n *Node) StoragePeers() []peer.AddrInfo {
	var out []peer.AddrInfo
	if n.store != nil {
		out = append(out, n.selfInfo())
	}
	for _, lp := range n.locals {
		if lp != nil {
			out = append(out, peer.AddrInfo{ID: lp.host.ID(), Addrs: lp.host.Addrs()})
		}
	}
	list, _ := n.members.current()
	known := map[peer.ID][]ma.Multiaddr{}
	for _, ai := range n.members.known() {
		known[ai.ID] = ai.Addrs
	}
	for _, id := range list.IDs() {
		if id == n.host.ID() || n.host.Network().Connectedness(id) != network.Connected {
			continue
		}
		addrs := known[id]
		if len(addrs) == 0 {
			addrs = n.host.Peerstore().Addrs(id)
		}
		out = append(out, peer.AddrInfo{ID: id, Addrs: capAddrs(addrs)})
	}
	return out
}

// Join redeems an invite with its admin and connects to the grid. The
// invite must be for this node's grid.
func (n *Node) Join(ctx context.Context, inv Invite) (int, error) {
	if !bytes.Equal(inv.PSK, n.cfg.GridKey) {
		return 0, errors.New("join: the invite is for another grid (POST /v1/switch moves the node to it)")
	}
	n.members.mu.Lock()
	admin := n.members.admin
	n.members.mu.Unlock()
	if admin != inv.Admin().ID {
		return 0, fmt.Errorf("join: the invite is from %s, but this node trusts the admin %s (restart the node after `sphere join`)", inv.Admin().ID, admin)
	}
	_, raw, err := Redeem(ctx, n.host, inv)
	if err != nil {
		return 0, err
	}
	if _, err := n.members.adopt(raw); err != nil {
		n.log.Debug("Adopting the join list", "err", err)
	}
	n.members.mu.Lock()
	for _, ai := range inv.Peers {
		known := slices.ContainsFunc(n.members.boot, func(b peer.AddrInfo) bool { return b.ID == ai.ID })
		if ai.ID != n.host.ID() && !known && len(n.members.boot) < maxInvitePeers*4 {
			n.members.boot = append(n.members.boot, peer.AddrInfo{ID: ai.ID, Addrs: capAddrs(ai.Addrs)})
		}
	}
	n.members.mu.Unlock()
	connected := 0
	for _, ai := range inv.Peers {
		if ai.ID == n.host.ID() {
			continue
		}
		if err := n.members.connect(ctx, ai); err != nil {
			n.log.Warn("Joining peer failed", "member", shortID(ai.ID), "err", err)
			continue
		}
		connected++
	}
	if connected == 0 {
		// Admitted all the same: the refresh loop keeps dialling.
		n.log.Warn("Admitted, but no peer of the invite answered yet (will retry)")
	}
	return connected, nil
}

// redeemPending redeems the invite in JoinFile, retrying while the admin
// cannot be reached, until it answers (yes or no) or ctx ends.
func (n *Node) redeemPending(ctx context.Context) {
	if n.cfg.JoinFile == "" {
		return
	}
	raw, err := os.ReadFile(n.cfg.JoinFile)
	if err != nil {
		return
	}
	inv, err := ParseInvite(string(raw))
	if err != nil {
		n.log.Warn("Pending invite unreadable; dropped", "err", err)
		_ = os.Remove(n.cfg.JoinFile)
		return
	}
	for try := 0; ; try++ {
		_, err := n.Join(ctx, inv)
		if err == nil || errors.Is(err, ErrRefused) || !bytes.Equal(inv.PSK, n.cfg.GridKey) {
			if err != nil {
				n.log.Error("Joining the grid failed", "err", err)
			} else {
				n.log.Info("Joined the grid", "admin", inv.Admin().ID.String())
			}
			_ = os.Remove(n.cfg.JoinFile)
			return
		}
		// An expired invite cannot be redeemed: stop retrying (with an hour
		// of slack for the admin's clock) instead of dialling forever.
		if inv.Expires > 0 && n.cfg.Now().Unix() > inv.Expires+int64(time.Hour/time.Second) {
			n.log.Error("Joining the grid failed: the invite expired before its admin could be reached; ask for a new one", "err", err)
			_ = os.Remove(n.cfg.JoinFile)
			return
		}
		n.log.Info("Joining the grid: admin not reachable yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(try+1)*2*time.Second, time.Minute)):
		}
	}
}

// Status reports the node's peers and storage.
func (n *Node) Status(ctx context.Context) (Status, error) {
	st := Status{
		PeerID: n.host.ID().String(), Addrs: FormatAddrs([]peer.AddrInfo{n.selfInfo()}),
		LocalServers: len(n.locals), Started: n.started, Connected: []string{},
	}
	list, isAdmin := n.members.current()
	st.Admin = isAdmin
	if list != nil {
		st.ListSerial = list.Serial
		st.AdminID = list.Admin.String()
	}
	for _, id := range list.IDs() {
		if id == n.host.ID() {
			continue
		}
		st.Members++
		if n.host.Network().Connectedness(id) == network.Connected {
			st.Connected = append(st.Connected, id.String())
		}
	}
	stores := []*servedStore{}
	if n.store != nil {
		stores = append(stores, n.store)
	}
	for _, lp := range n.locals {
		if lp != nil {
			stores = append(stores, lp.store)
		}
	}
	for _, s := range stores {
		if f := s.Failure(); f != nil {
			st.FailedStores = append(st.FailedStores, FailedStore{Dir: s.Dir(), Error: f.Error()})
			continue
		}
		gs, err := s.Stat(ctx)
		if err != nil {
			return Status{}, fmt.Errorf("status: %w", err)
		}
		st.Shares += gs.Shares
		st.Used += gs.Used
		if gs.Quota > 0 {
			st.Quota += gs.Quota
		}
		// The store counts them (Stat.ExpiringSoon, window grid.ExpiringWindow).
		if gs.ExpiringSoon < 0 {
			st.ExpiringSoon = -1
		} else if st.ExpiringSoon >= 0 {
			st.ExpiringSoon += gs.ExpiringSoon
		}
	}
	st.Memory = memoryStatus(stores)
	st.Accounting = n.acct.status()
	return st, nil
}

// Serve runs the node until ctx ends (nil) or the control API asks it to
// switch grids (a *SwitchGrid, see restart.go): it publishes the control file,
// keeps members connected, sweeps expired leases, and on return closes
// everything and removes the control file.
func (n *Node) Serve(ctx context.Context) error {
	defer n.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	if n.cfg.DHT {
		if err := n.startDHT(ctx); err != nil {
			return err
		}
	}
	for _, s := range n.allStores() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	// Connect the node to its local servers so they count as connected.
	for _, lp := range n.locals {
		_ = n.host.Connect(ctx, peer.AddrInfo{ID: lp.host.ID(), Addrs: lp.host.Addrs()})
	}
	if n.cfg.ControlFile != "" {
		if n.cfg.LockFile == "" {
			if c, err := DialControl(ctx, n.cfg.ControlFile); err == nil {
				return fmt.Errorf("node: another node is running for this home (pid %d, control file %s)", c.File.PID, n.cfg.ControlFile)
			}
		}
		cf, stop, err := n.startControl(ctx)
		if err != nil {
			return err
		}
		defer stop()
		raw, _ := json.MarshalIndent(cf, "", "  ")
		if err := writeFileAtomic(n.cfg.ControlFile, append(raw, '\n')); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		defer os.Remove(n.cfg.ControlFile)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		n.members.run(ctx, n.cfg.RefreshInterval)
	}()
	go func() {
		defer wg.Done()
		n.redeemPending(ctx)
	}()
	list, _ := n.members.current()
	if n.ledger != nil {
		wg.Go(func() { n.ledger.run(ctx, n.memberInfos) })
	}
	n.log.Info("Node ready", "addrs", FormatAddrs([]peer.AddrInfo{n.selfInfo()}),
		"members", len(list.IDs()), "localServers", len(n.locals), "startup", time.Since(n.started).Round(time.Millisecond))
	n.readyOnce.Do(func() { close(n.ready) })
	select {
	case <-ctx.Done():
		n.log.Info("Node stopping")
		return nil
	case sw := <-n.switchTo:
		n.log.Info("Node stopping to switch grids", "admin", sw.Invite.Admin().ID.String())
		return sw
	}
}

func (n *Node) allStores() []*servedStore {
	var out []*servedStore
	if n.store != nil {
		out = append(out, n.store)
	}
	for _, lp := range n.locals {
		if lp != nil {
			out = append(out, lp.store)
		}
	}
	return out
}

// startDHT runs a Kademlia DHT under the grid's own prefix, in server
// mode, bootstrapped only from known members; members it finds are added
// to the book by the refresh loop.
func (n *Node) startDHT(ctx context.Context) error {
	// The DHT serves members only, like every other protocol but join.
	d, err := dht.New(gatedHost{Host: n.host, allow: n.members.allowed}, dht.Mode(dht.ModeServer), dht.ProtocolPrefix("/sphere"),
		dht.BootstrapPeers(n.members.known()...))
	if err != nil {
		return fmt.Errorf("node: dht: %w", err)
	}
	n.dht = d
	n.members.extra = func() []peer.AddrInfo {
		var out []peer.AddrInfo
		for _, p := range d.RoutingTable().ListPeers() {
			out = append(out, n.host.Peerstore().PeerInfo(p))
		}
		return out
	}
	if err := d.Bootstrap(ctx); err != nil {
		return fmt.Errorf("node: dht bootstrap: %w", err)
	}
	return nil
}

// close releases the hosts and stores; Serve calls it on return.
func (n *Node) close() {
	n.closeOnce.Do(func() {
		if n.dht != nil {
			_ = n.dht.Close()
		}
		if n.host != nil {
			_ = n.host.Close()
		}
		if n.ledger != nil {
			_ = n.ledger.store.Close()
		}
		if n.store != nil {
			if err := n.store.Close(); err != nil {
				n.log.Warn("Closing store failed", "err", err)
			}
		}
		for _, lp := range n.locals {
			if lp == nil {
				continue
			}
			_ = lp.host.Close()
			if err := lp.store.Close(); err != nil {
				n.log.Warn("Closing local store failed", "err", err)
			}
		}
		if n.unlock != nil {
			n.unlock()
		}
	})
}

// Close releases a node whose Serve was never called.
func (n *Node) Close() error {
	n.close()
	return nil
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

var _ = grid.ServerID("")

// memberInfos lists the signed member list's ids (no addresses: the ledger
// talks only to members already connected).
func (n *Node) memberInfos() []peer.AddrInfo {
	list, _ := n.members.current()
	ids := list.IDs()
	out := make([]peer.AddrInfo, 0, len(ids))
	for _, id := range ids {
		if id != n.host.ID() {
			out = append(out, peer.AddrInfo{ID: id})
		}
	}
	return out
}
