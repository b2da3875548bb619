package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// PeersProtocol is the member-list exchange: the dialer of a new connection
// sends the members it knows, the listener answers with its own, and both
// connect to members they did not know (see docs/spec/node.md).
const PeersProtocol = protocol.ID("/sphere/peers/1.0.0")

const (
	// maxMemberMsg bounds one /sphere/peers message (256 peers of 8 long
	// addresses fit well below it).
	maxMemberMsg    = 256 << 10
	exchangeTimeout = 10 * time.Second
	dialTimeout     = 5 * time.Second
	// maxDialsPerRound bounds the members dialled at once.
	maxDialsPerRound = 16
	// redialAfter is how long a failed member waits before we dial it again.
	redialAfter = 30 * time.Second
)

// book is the set of known grid members (other than this node), persisted
// to a JSON file so a restarted node reconnects.
type book struct {
	mu      sync.Mutex
	path    string // "" means do not persist
	self    peer.ID
	members map[peer.ID][]ma.Multiaddr
	tried   map[peer.ID]time.Time // last failed dial
}

type bookFile struct {
	Version int      `json:"version"`
	Peers   []string `json:"peers"` // multiaddrs ending in /p2p/<id>
}

func newBook(path string, self peer.ID) (*book, error) {
	b := &book{path: path, self: self, members: map[peer.ID][]ma.Multiaddr{}, tried: map[peer.ID]time.Time{}}
	if path == "" {
		return b, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known peers: %w", err)
	}
	var f bookFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("known peers %s: %w", path, err)
	}
	infos, err := ParseAddrs(f.Peers)
	if err != nil {
		return nil, fmt.Errorf("known peers %s: %w", path, err)
	}
	b.add(infos)
	return b, nil
}

// add records peers, returning those that were new, and whether anything
// (new peers or changed addresses) needs saving. Beyond maxListPeers
// members new ones are ignored.
func (b *book) add(infos []peer.AddrInfo) (fresh []peer.AddrInfo, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ai := range infos {
		if ai.ID == "" || ai.ID == b.self || len(ai.Addrs) == 0 {
			continue
		}
		addrs := ai.Addrs
		if len(addrs) > maxPeerAddrs {
			addrs = addrs[:maxPeerAddrs]
		}
		old, ok := b.members[ai.ID]
		if !ok {
			if len(b.members) >= maxListPeers {
				continue
			}
			fresh = append(fresh, peer.AddrInfo{ID: ai.ID, Addrs: addrs})
		}
		if !ok || !sameAddrs(old, addrs) {
			changed = true
		}
		b.members[ai.ID] = addrs
	}
	return fresh, changed
}

func sameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func (b *book) list() []peer.AddrInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(b.members))
	for id, addrs := range b.members {
		out = append(out, peer.AddrInfo{ID: id, Addrs: addrs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (b *book) isMember(id peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.members[id]
	return ok
}

// save writes the book atomically (mode 0600).
func (b *book) save() error {
	if b.path == "" {
		return nil
	}
	f := bookFile{Version: 1, Peers: FormatAddrs(b.list())}
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("save known peers: %w", err)
	}
	return writeFileAtomic(b.path, append(raw, '\n'))
}

// writeFileAtomic writes path via a temporary file and rename, mode 0600.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// FormatAddrs renders peers as multiaddr strings ending in /p2p/<id>, one
// per address.
func FormatAddrs(infos []peer.AddrInfo) []string {
	var out []string
	for _, ai := range infos {
		full, err := peer.AddrInfoToP2pAddrs(&ai)
		if err != nil {
			continue
		}
		for _, a := range full {
			out = append(out, a.String())
		}
	}
	return out
}

// ParseAddrs parses multiaddr strings ending in /p2p/<id>, merging the
// addresses of the same peer.
func ParseAddrs(ss []string) ([]peer.AddrInfo, error) {
	var addrs []ma.Multiaddr
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", s, err)
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("peer addresses: %w", err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos, nil
}

// writeMsg writes len(4, big endian) || msg.
func writeMsg(w io.Writer, msg []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
	if _, err := w.Write(append(hdr[:], msg...)); err != nil {
		return err
	}
	return nil
}

// readMsg reads one length-prefixed message of at most max bytes.
func readMsg(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("message too long: max=%d have=%d", max, n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return msg, nil
}

// membership runs the member list exchange and keeps connections to known
// members.
type membership struct {
	h    host.Host
	book *book
	log  *slog.Logger
	// selfInfo returns what we announce about ourselves (nil: not a member,
	// e.g. a node without storage still announces itself).
	selfInfo func() peer.AddrInfo
	// sem bounds concurrent exchanges and dials.
	sem  chan struct{}
	kick chan struct{}
	// extra, when set, yields members found another way (the DHT).
	extra func() []peer.AddrInfo
}

func newMembership(h host.Host, b *book, log *slog.Logger, self func() peer.AddrInfo) *membership {
	return &membership{h: h, book: b, log: log, selfInfo: self, sem: make(chan struct{}, maxDialsPerRound), kick: make(chan struct{}, 1)}
}

// announce is the list we send: ourselves first, then known members.
func (m *membership) announce() ([]byte, error) {
	list := append([]peer.AddrInfo{m.selfInfo()}, m.book.list()...)
	return marshalMembers(list)
}

// handle answers an exchange opened by a peer.
func (m *membership) handle(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	msg, err := readMsg(s, maxMemberMsg)
	if err != nil {
		m.log.Debug("Member exchange failed", "peer", s.Conn().RemotePeer().String(), "err", err)
		s.Reset()
		return
	}
	theirs, err := unmarshalMembers(msg)
	if err != nil {
		m.log.Info("Bad member list", "peer", s.Conn().RemotePeer().String(), "err", err)
		s.Reset()
		return
	}
	out, err := m.announce()
	if err == nil {
		err = writeMsg(s, out)
	}
	if err != nil {
		m.log.Debug("Member exchange reply failed", "peer", s.Conn().RemotePeer().String(), "err", err)
	}
	m.learn(s.Conn().RemotePeer(), theirs)
}

// exchange opens an exchange with p and learns its members.
func (m *membership) exchange(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	s, err := m.h.NewStream(ctx, p, PeersProtocol)
	if err != nil {
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	out, err := m.announce()
	if err != nil {
		return fmt.Errorf("member exchange: %w", err)
	}
	if err := writeMsg(s, out); err != nil {
		s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	_ = s.CloseWrite()
	msg, err := readMsg(s, maxMemberMsg)
	if err != nil {
		s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	theirs, err := unmarshalMembers(msg)
	if err != nil {
		s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	m.learn(p, theirs)
	return nil
}

// learn records the members a peer told us about (the peer itself is its
// list's first entry and must carry its own id) and wakes the dial loop.
func (m *membership) learn(from peer.ID, theirs []peer.AddrInfo) {
	// Only the sender's own entry may describe the sender.
	valid := theirs[:0:0]
	for i, ai := range theirs {
		if ai.ID == from && i != 0 {
			continue
		}
		valid = append(valid, ai)
	}
	fresh, changed := m.book.add(valid)
	if changed {
		if err := m.book.save(); err != nil {
			m.log.Warn("Saving known peers failed", "err", err)
		}
	}
	if len(fresh) == 0 {
		return
	}
	m.log.Info("Learned grid members", "from", from.String(), "new", len(fresh))
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// connectAll dials known members that are not connected, at most
// maxDialsPerRound at once, skipping those that failed recently, and
// exchanges member lists with the ones newly connected.
func (m *membership) connectAll(ctx context.Context) {
	if m.extra != nil {
		if _, changed := m.book.add(m.extra()); changed {
			if err := m.book.save(); err != nil {
				m.log.Warn("Saving known peers failed", "err", err)
			}
		}
	}
	var wg sync.WaitGroup
	now := time.Now()
	for _, ai := range m.book.list() {
		if m.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		m.book.mu.Lock()
		last, failed := m.book.tried[ai.ID]
		m.book.mu.Unlock()
		if failed && now.Sub(last) < redialAfter {
			continue
		}
		select {
		case m.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-m.sem }()
			if err := m.connect(ctx, ai); err != nil {
				m.log.Debug("Dialling member failed", "peer", ai.ID.String(), "err", err)
			}
		}()
	}
	wg.Wait()
}

// connect dials ai and exchanges member lists.
func (m *membership) connect(ctx context.Context, ai peer.AddrInfo) error {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := m.h.Connect(dctx, ai); err != nil {
		m.book.mu.Lock()
		m.book.tried[ai.ID] = time.Now()
		m.book.mu.Unlock()
		return err
	}
	m.book.mu.Lock()
	delete(m.book.tried, ai.ID)
	m.book.mu.Unlock()
	return m.exchange(ctx, ai.ID)
}

// run keeps members connected until ctx ends: at start, whenever new
// members are learned, and every interval.
func (m *membership) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	m.connectAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
		m.connectAll(ctx)
	}
}

// LoadKnownPeers reads the members a node persisted at path (multiaddrs
// ending in /p2p/<id>); a missing file is an empty list.
func LoadKnownPeers(path string) ([]string, error) {
	b, err := newBook(path, "")
	if err != nil {
		return nil, err
	}
	return FormatAddrs(b.list()), nil
}
