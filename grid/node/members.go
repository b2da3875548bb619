package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// PeersProtocol is the member exchange: each side sends the newest signed
// member list it holds and the signed address records of the members it
// knows (see docs/spec/node.md).
const PeersProtocol = protocol.ID("/sphere/peers/2.0.0")

const (
	// maxMemberMsg bounds one /sphere/peers message.
	maxMemberMsg    = 1 << 20
	exchangeTimeout = 10 * time.Second
	dialTimeout     = 5 * time.Second
	// maxDialsPerRound bounds the members dialled (or pushed to) at once.
	maxDialsPerRound = 16
	// maxRecordLen bounds one signed peer record (8 addresses fit well).
	maxRecordLen = 4096
	// exchangeVersion is the version byte of a /sphere/peers message.
	exchangeVersion = 2
)

// Eviction of address records that do not answer: after evictFails failed
// dials spread over at least evictAfter, a member's record is dropped (the
// member stays on the list; it republishes its record when it connects).
var (
	// redialAfter is how long a failed member waits before we dial it again.
	redialAfter = 30 * time.Second
	evictFails  = 5
	evictAfter  = 10 * time.Minute
)

// entry is what the book knows about one member: its own signed record.
type entry struct {
	env       []byte // marshalled record envelope, signed by the member
	seq       uint64
	addrs     []ma.Multiaddr
	fails     int
	firstFail time.Time
	lastFail  time.Time
}

// membership holds the grid's signed member list and the members' signed
// address records, runs the member exchange and keeps members connected.
type membership struct {
	h     host.Host
	key   crypto.PrivKey
	grid  [32]byte
	log   *slog.Logger
	now   func() time.Time
	local map[peer.ID]bool // this node and its local servers

	membersFile string
	peersFile   string

	mu    sync.Mutex
	admin peer.ID // whose signature we trust on the next list
	list  *MemberList
	raw   []byte // list, encoded
	book  map[peer.ID]*entry
	boot  []peer.AddrInfo
	// told is the list serial each connected peer last sent us.
	told map[peer.ID]uint64
	// bootFail is the last failed dial of each bootstrap peer.
	bootFail map[peer.ID]time.Time
	// selfRec is our own signed record and the addresses it holds.
	selfRec   []byte
	selfAddrs []ma.Multiaddr

	// clients maps a member's delegated client id to the member;
	// delegs holds each member's delegation as received (relayed on).
	clients  map[peer.ID]peer.ID
	delegs   map[peer.ID][]byte
	ownDeleg []byte

	// onRemoved is called with peers a new list removed.
	onRemoved func([]peer.ID)

	sem  chan struct{}
	kick chan struct{}
	// inSem bounds exchanges served at once (each may hold 1 MiB).
	inSem chan struct{}
	// extra, when set, yields peers found another way (the DHT).
	extra func() []peer.AddrInfo
}

type peersFile struct {
	Version int      `json:"version"`
	Records []string `json:"records"` // base64 signed peer records
}

func newMembership(h host.Host, key crypto.PrivKey, gridKey []byte, admin peer.ID, membersFile, peersPath string,
	boot []peer.AddrInfo, log *slog.Logger, now func() time.Time) (*membership, error) {
	m := &membership{
		h: h, key: key, grid: GridID(gridKey), log: log, now: now, admin: admin,
		local: map[peer.ID]bool{h.ID(): true}, membersFile: membersFile, peersFile: peersPath,
		book: map[peer.ID]*entry{}, told: map[peer.ID]uint64{}, bootFail: map[peer.ID]time.Time{},
		clients: map[peer.ID]peer.ID{}, delegs: map[peer.ID][]byte{},
		sem: make(chan struct{}, maxDialsPerRound), kick: make(chan struct{}, 1), inSem: make(chan struct{}, maxDialsPerRound),
	}
	if m.admin == "" {
		m.admin = h.ID()
	}
	for _, ai := range boot {
		if ai.ID != h.ID() && len(ai.Addrs) > 0 {
			m.boot = append(m.boot, peer.AddrInfo{ID: ai.ID, Addrs: capAddrs(ai.Addrs)})
		}
	}
	ck, err := ClientKey(key)
	if err != nil {
		return nil, err
	}
	cid, err := peer.IDFromPrivateKey(ck)
	if err != nil {
		return nil, err
	}
	m.local[cid] = true
	if m.ownDeleg, err = signDelegation(key, m.grid, cid); err != nil {
		return nil, err
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	// A founder starts list 1. A founder with contacts but no list is a
	// recovered admin: it learns its newest list from the members
	// (signed by its own key) instead of restarting at serial 1.
	if m.list == nil && m.admin == h.ID() && len(m.boot) == 0 {
		l, err := NewMemberList(gridKey, key, now().Unix())
		if err != nil {
			return nil, err
		}
		if err := m.setList(l); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func capAddrs(a []ma.Multiaddr) []ma.Multiaddr {
	if len(a) > maxPeerAddrs {
		return a[:maxPeerAddrs]
	}
	return a
}

// load reads the persisted list (our own file: its admin becomes the one
// we trust, which carries a handover across restarts) and records.
func (m *membership) load() error {
	if m.membersFile != "" {
		raw, err := os.ReadFile(m.membersFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("member list: %w", err)
		default:
			l, err := UnmarshalMemberList(raw)
			if err != nil {
				return fmt.Errorf("member list %s: %w", m.membersFile, err)
			}
			if l.Grid == m.grid {
				m.list, m.raw, m.admin = l, raw, l.Admin
			} else {
				// Left over from a grid this home no longer is on.
				m.log.Warn("Ignoring the member list of another grid", "path", m.membersFile)
			}
		}
	}
	if m.peersFile == "" {
		return nil
	}
	raw, err := os.ReadFile(m.peersFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("known peers: %w", err)
	}
	var f peersFile
	if err := json.Unmarshal(raw, &f); err != nil || f.Version != 2 {
		// An older file holds unsigned addresses: start afresh.
		m.log.Info("Ignoring known peers file of another version", "path", m.peersFile)
		return nil
	}
	for _, s := range f.Records {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			continue
		}
		m.acceptRecordLocked(b)
	}
	return nil
}

// setList installs l (already checked) and persists it.
func (m *membership) setList(l *MemberList) error {
	raw, err := l.MarshalBinary()
	if err != nil {
		return err
	}
	if m.membersFile != "" {
		if err := writeFileAtomic(m.membersFile, raw); err != nil {
			return fmt.Errorf("member list: %w", err)
		}
	}
	m.mu.Lock()
	m.list, m.raw, m.admin = l, raw, l.Admin
	// Exchange with everyone again: records of new members may have been
	// refused before, and peers behind need the list.
	clear(m.told)
	var gone []peer.ID
	for id := range m.book {
		if !l.Has(id) {
			delete(m.book, id)
			gone = append(gone, id)
		}
	}
	refused := slices.Clone(l.Removed)
	for c, member := range m.clients {
		if !l.Has(member) {
			delete(m.clients, c)
			delete(m.delegs, member)
			refused = append(refused, c)
		}
	}
	m.mu.Unlock()
	if len(gone) > 0 {
		m.saveBook()
	}
	if m.onRemoved != nil && len(refused) > 0 {
		m.onRemoved(refused)
	}
	return nil
}

// adopt installs a list a peer sent if it is newer and signed by the
// admin we trust; it reports whether it did.
func (m *membership) adopt(raw []byte) (bool, error) {
	l, err := UnmarshalMemberList(raw)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	cur, admin := m.list, m.admin
	m.mu.Unlock()
	if cur != nil && l.Serial == cur.Serial {
		return false, nil // the usual case: nothing new
	}
	if err := l.follows(cur, m.grid, admin); err != nil {
		return false, err
	}
	if err := m.setList(l); err != nil {
		return false, err
	}
	m.log.Info("New member list", "serial", l.Serial, "members", len(l.Members), "signer", shortID(l.Signer))
	m.wake()
	return true, nil
}

func (m *membership) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// current returns the list (nil before joining) and whether we are admin.
func (m *membership) current() (*MemberList, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list, m.admin == m.h.ID()
}

// allowed reports whether p may use our storage and member exchange:
// listed members, this node and its local servers.
func (m *membership) allowed(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The admin we trust is served even before its list reaches us.
	if m.local[p] || m.list.Has(p) || p == m.admin {
		return true
	}
	member, ok := m.clients[p]
	return ok && m.list.Has(member)
}

// removed reports whether the list removed p (the connection gater
// refuses it outright).
func (m *membership) removed(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.local[p] {
		return false
	}
	return m.list.IsRemoved(p)
}

// ownRecord returns our signed record, resealed when our addresses change.
func (m *membership) ownRecord() []byte {
	addrs := capAddrs(m.h.Addrs())
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.selfRec != nil && sameAddrs(addrs, m.selfAddrs) {
		return m.selfRec
	}
	env, err := record.Seal(peer.PeerRecordFromAddrInfo(peer.AddrInfo{ID: m.h.ID(), Addrs: addrs}), m.key)
	if err != nil {
		m.log.Warn("Sealing own peer record failed", "err", err)
		return nil
	}
	b, err := env.Marshal()
	if err != nil {
		return nil
	}
	m.selfRec, m.selfAddrs = b, addrs
	return b
}

// acceptRecordLocked records a member's own signed record if it is newer
// than what we hold; anything else (not signed by its subject, not a
// member, ourselves, oversized) is dropped.
func (m *membership) acceptRecordLocked(b []byte) bool {
	if len(b) > maxRecordLen {
		return false
	}
	env, rec, err := record.ConsumeEnvelope(b, peer.PeerRecordEnvelopeDomain)
	if err != nil {
		return false
	}
	pr, ok := rec.(*peer.PeerRecord)
	if !ok {
		return false
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil || signer != pr.PeerID {
		return false // a claim about someone else
	}
	if pr.PeerID == m.h.ID() || !m.list.Has(pr.PeerID) || len(pr.Addrs) == 0 || len(pr.Addrs) > maxPeerAddrs {
		return false
	}
	for _, a := range pr.Addrs {
		if len(a.Bytes()) > maxAddrLen {
			return false
		}
	}
	old := m.book[pr.PeerID]
	if old != nil && pr.Seq <= old.seq {
		return false
	}
	m.book[pr.PeerID] = &entry{env: b, seq: pr.Seq, addrs: pr.Addrs}
	return true
}

// saveBook persists the members' records atomically (mode 0600).
func (m *membership) saveBook() {
	if m.peersFile == "" {
		return
	}
	m.mu.Lock()
	f := peersFile{Version: 2}
	for _, e := range m.book {
		f.Records = append(f.Records, base64.StdEncoding.EncodeToString(e.env))
	}
	m.mu.Unlock()
	sort.Strings(f.Records)
	raw, err := json.MarshalIndent(f, "", "  ")
	if err == nil {
		err = writeFileAtomic(m.peersFile, append(raw, '\n'))
	}
	if err != nil {
		m.log.Warn("Saving known peers failed", "err", err)
	}
}

// known lists the members we hold records for, sorted by id.
func (m *membership) known() []peer.AddrInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(m.book))
	for id, e := range m.book {
		out = append(out, peer.AddrInfo{ID: id, Addrs: e.addrs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// message builds what we send: our list and the records we hold, ours first.
func (m *membership) message() []byte {
	own := m.ownRecord()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []byte{exchangeVersion}
	out = binary.BigEndian.AppendUint32(out, uint32(len(m.raw)))
	out = append(out, m.raw...)
	recs := [][]byte{}
	if own != nil {
		recs = append(recs, own) // receivers take it only if we are on their list
	}
	ids := make([]peer.ID, 0, len(m.book))
	for id := range m.book {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		recs = append(recs, m.book[id].env)
	}
	if len(recs) > maxMembers {
		recs = recs[:maxMembers]
	}
	out = appendChunks(out, recs)
	delegs := [][]byte{m.ownDeleg}
	for _, id := range ids {
		if d, ok := m.delegs[id]; ok {
			delegs = append(delegs, d)
		}
	}
	if len(delegs) > maxMembers {
		delegs = delegs[:maxMembers]
	}
	return appendChunks(out, delegs)
}

// appendChunks appends count(2) || (len(2) || chunk)*.
func appendChunks(out []byte, chunks [][]byte) []byte {
	out = binary.BigEndian.AppendUint16(out, uint16(len(chunks)))
	for _, c := range chunks {
		out = binary.BigEndian.AppendUint16(out, uint16(len(c)))
		out = append(out, c...)
	}
	return out
}

// readChunks reads what appendChunks wrote.
func (r *reader) chunks(what string, max, maxLen int) [][]byte {
	n := r.u16(what + " count")
	if r.err == nil && n > max {
		r.err = fmt.Errorf("%d %ss, max %d", n, what, max)
		return nil
	}
	var out [][]byte
	for i := 0; i < n && r.err == nil; i++ {
		l := r.u16(what + " length")
		if r.err == nil && (l == 0 || l > maxLen) {
			r.err = fmt.Errorf("%s %d of %d bytes", what, i, l)
			return nil
		}
		if c := r.take(l, what); r.err == nil {
			out = append(out, c)
		}
	}
	return out
}

// exchangeMsg is a decoded /sphere/peers message.
type exchangeMsg struct {
	list        []byte
	records     [][]byte
	delegations [][]byte
}

// parseExchange decodes a /sphere/peers message (signatures are checked
// when its parts are used).
func parseExchange(b []byte) (exchangeMsg, error) {
	r := &reader{b: b}
	if v := r.u8("version"); r.err == nil && v != exchangeVersion {
		return exchangeMsg{}, fmt.Errorf("member exchange: version: want=%d have=%d", exchangeVersion, v)
	}
	var msg exchangeMsg
	lb := r.take(4, "list length")
	if r.err == nil {
		n := binary.BigEndian.Uint32(lb)
		if n > maxMemberListLen {
			return exchangeMsg{}, fmt.Errorf("member exchange: list of %d bytes", n)
		}
		msg.list = r.take(int(n), "member list")
	}
	msg.records = r.chunks("record", maxMembers, maxRecordLen)
	msg.delegations = r.chunks("delegation", maxMembers, maxDelegationLen)
	if r.err != nil {
		return exchangeMsg{}, fmt.Errorf("member exchange: %w", r.err)
	}
	if len(r.b) != 0 {
		return exchangeMsg{}, fmt.Errorf("member exchange: %d trailing bytes", len(r.b))
	}
	return msg, nil
}

// absorb takes what a peer sent: a newer list, then members' own records.
func (m *membership) absorb(from peer.ID, msg exchangeMsg) {
	if len(msg.list) > 0 {
		if _, err := m.adopt(msg.list); err != nil {
			m.log.Debug("Member list refused", "from", shortID(from), "err", err)
		}
		if l, err := peekSerial(msg.list); err == nil {
			m.mu.Lock()
			m.told[from] = l
			m.mu.Unlock()
		}
	}
	fresh := 0
	m.mu.Lock()
	for _, r := range msg.records {
		if m.acceptRecordLocked(r) {
			fresh++
		}
	}
	for _, d := range msg.delegations {
		m.acceptDelegationLocked(d)
	}
	m.mu.Unlock()
	if fresh > 0 {
		m.saveBook()
		m.wake()
	}
}

// peekSerial reads a list's serial without checking it (it only decides
// whom to push our list to).
func peekSerial(raw []byte) (uint64, error) {
	if len(raw) < 1+32+8 {
		return 0, errors.New("short list")
	}
	return binary.BigEndian.Uint64(raw[33:]), nil
}

// handle answers an exchange opened by a peer. A newer list is taken from
// anyone holding the grid key (it is the admin's signature that counts);
// the rest only from members, and only members get an answer.
func (m *membership) handle(s network.Stream) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	select {
	case m.inSem <- struct{}{}:
		defer func() { <-m.inSem }()
	default:
		_ = s.Reset() // busy: the dialer retries on its next round
		return
	}
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	raw, err := readMsg(s, maxMemberMsg)
	if err != nil {
		m.log.Debug("Member exchange failed", "peer", shortID(from), "err", err)
		_ = s.Reset()
		return
	}
	msg, err := parseExchange(raw)
	if err != nil {
		m.log.Info("Bad member exchange", "peer", shortID(from), "err", err)
		_ = s.Reset()
		return
	}
	if len(msg.list) > 0 {
		if _, err := m.adopt(msg.list); err != nil {
			m.log.Debug("Member list refused", "from", shortID(from), "err", err)
		}
	}
	if !m.allowed(from) {
		m.log.Debug("Member exchange from a non-member refused", "peer", shortID(from))
		_ = s.Reset()
		return
	}
	if serial, err := peekSerial(msg.list); err == nil {
		m.mu.Lock()
		m.told[from] = serial
		m.mu.Unlock()
	}
	msg.list = nil // adopted above
	if err := writeMsg(s, m.message()); err != nil {
		m.log.Debug("Member exchange reply failed", "peer", shortID(from), "err", err)
	}
	m.absorb(from, msg)
}

// exchange opens an exchange with p.
func (m *membership) exchange(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	s, err := m.h.NewStream(ctx, p, PeersProtocol)
	if err != nil {
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	if err := writeMsg(s, m.message()); err != nil {
		_ = s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	_ = s.CloseWrite()
	raw, err := readMsg(s, maxMemberMsg)
	if err != nil {
		_ = s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	msg, err := parseExchange(raw)
	if err != nil {
		_ = s.Reset()
		return fmt.Errorf("member exchange with %s: %w", p, err)
	}
	m.absorb(p, msg)
	return nil
}

// dialTargets are members (by their records) and bootstrap peers not
// connected now and not failed recently.
func (m *membership) dialTargets(now time.Time) []peer.AddrInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []peer.AddrInfo
	seen := map[peer.ID]bool{}
	ids := make([]peer.ID, 0, len(m.book))
	for id := range m.book {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := m.book[id]
		seen[id] = true
		if m.h.Network().Connectedness(id) == network.Connected {
			continue
		}
		if !e.lastFail.IsZero() && now.Sub(e.lastFail) < redialAfter {
			continue
		}
		out = append(out, peer.AddrInfo{ID: id, Addrs: e.addrs})
	}
	for _, ai := range m.boot {
		if seen[ai.ID] || m.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if last, ok := m.bootFail[ai.ID]; ok && now.Sub(last) < redialAfter {
			continue
		}
		out = append(out, ai)
	}
	return out
}

// noteDial records a dial's outcome; a record that keeps failing is
// evicted.
func (m *membership) noteDial(id peer.ID, err error) {
	m.mu.Lock()
	e := m.book[id]
	evicted := false
	if e != nil {
		now := m.now()
		if err == nil {
			e.fails, e.firstFail, e.lastFail = 0, time.Time{}, time.Time{}
		} else {
			if e.fails == 0 {
				e.firstFail = now
			}
			e.fails++
			e.lastFail = now
			if e.fails >= evictFails && now.Sub(e.firstFail) >= evictAfter {
				delete(m.book, id)
				evicted = true
			}
		}
	}
	m.mu.Unlock()
	if evicted {
		m.log.Info("Evicted a member's address record that never answered", "member", shortID(id))
		m.saveBook()
	}
}

// connectAll dials members and bootstrap peers that are not connected (at
// most maxDialsPerRound at once) and pushes our list to connected members
// that told us an older one.
func (m *membership) connectAll(ctx context.Context) {
	if m.extra != nil {
		// Peers found by the DHT are dialled only if they are members.
		for _, ai := range m.extra() {
			if m.allowed(ai.ID) && ai.ID != m.h.ID() && m.h.Network().Connectedness(ai.ID) != network.Connected {
				dctx, cancel := context.WithTimeout(ctx, dialTimeout)
				_ = m.h.Connect(dctx, ai)
				cancel()
			}
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	targets := m.dialTargets(time.Now())
	m.mu.Lock()
	var serial uint64
	if m.list != nil {
		serial = m.list.Serial
	}
	var behind []peer.ID
	for id := range m.list.memberSet() {
		if id == m.h.ID() || m.h.Network().Connectedness(id) != network.Connected {
			continue
		}
		if told, ok := m.told[id]; !ok || told < serial {
			behind = append(behind, id)
		}
	}
	m.mu.Unlock()
	for _, ai := range targets {
		if !m.acquire(ctx) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.release()
			err := m.connect(ctx, ai)
			if err != nil {
				m.log.Debug("Dialling member failed", "peer", shortID(ai.ID), "err", err)
			}
		}()
	}
	for _, id := range behind {
		if !m.acquire(ctx) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.release()
			if err := m.exchange(ctx, id); err != nil {
				m.log.Debug("Pushing member list failed", "peer", shortID(id), "err", err)
			}
		}()
	}
}

func (m *membership) acquire(ctx context.Context) bool {
	select {
	case m.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *membership) release() { <-m.sem }

func (l *MemberList) memberSet() map[peer.ID]bool {
	out := map[peer.ID]bool{}
	if l == nil {
		return out
	}
	for _, mb := range l.Members {
		out[mb.ID] = true
	}
	return out
}

// connect dials ai and exchanges member lists.
func (m *membership) connect(ctx context.Context, ai peer.AddrInfo) error {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	err := m.h.Connect(dctx, ai)
	m.noteDial(ai.ID, err)
	m.mu.Lock()
	if err != nil {
		m.bootFail[ai.ID] = time.Now() // bootstrap peers back off too
	} else {
		delete(m.bootFail, ai.ID)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.exchange(ctx, ai.ID)
}

// run keeps members connected until ctx ends: at start, whenever there is
// news, and every interval.
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

// writeFileAtomic writes path via a synced temporary file and rename,
// mode 0600.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
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

// LoadKnownPeers reads the members' addresses a node persisted at path
// (checking each record's signature); a missing file is an empty list.
func LoadKnownPeers(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known peers: %w", err)
	}
	var f peersFile
	if err := json.Unmarshal(raw, &f); err != nil || f.Version != 2 {
		return nil, nil
	}
	var infos []peer.AddrInfo
	for _, s := range f.Records {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) > maxRecordLen {
			continue
		}
		env, rec, err := record.ConsumeEnvelope(b, peer.PeerRecordEnvelopeDomain)
		if err != nil {
			continue
		}
		pr, ok := rec.(*peer.PeerRecord)
		if signer, err := peer.IDFromPublicKey(env.PublicKey); !ok || err != nil || signer != pr.PeerID {
			continue
		}
		infos = append(infos, peer.AddrInfo{ID: pr.PeerID, Addrs: capAddrs(pr.Addrs)})
	}
	return FormatAddrs(infos), nil
}

// Client delegation: CLI processes of a home dial the grid with a client
// key derived from the node's identity (the node's own id cannot dial the
// node); the node signs, once, that the client id acts for it, and
// spreads that with its record. A client is served while its member is.

const (
	delegationVersion = 1
	delegationDomain  = "sphere-client-v1\x00"
	maxDelegationLen  = 1 + 2*(1+maxIDLen) + 1 + 255
)

// ClientKey derives the key with which CLI processes of a home dial the
// grid while the home's node runs: SHA-256("sphere-client-key-v1" ||
// identity's raw private key) is the Ed25519 seed.
func ClientKey(identity crypto.PrivKey) (crypto.PrivKey, error) {
	raw, err := identity.Raw()
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	seed := sha256.Sum256(append([]byte("sphere-client-key-v1"), raw...))
	priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(seed[:]))
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	return priv, nil
}

// signDelegation encodes version(1) || member id || client id || sig,
// ids as len(1) || bytes, sig as len(1) || bytes over
// domain || grid id || client id.
func signDelegation(member crypto.PrivKey, grid [32]byte, client peer.ID) ([]byte, error) {
	mid, err := peer.IDFromPrivateKey(member)
	if err != nil {
		return nil, err
	}
	sig, err := member.Sign(delegationMessage(grid, client))
	if err != nil {
		return nil, fmt.Errorf("client delegation: %w", err)
	}
	out, err := appendID([]byte{delegationVersion}, mid)
	if err != nil {
		return nil, err
	}
	if out, err = appendID(out, client); err != nil {
		return nil, err
	}
	out = append(out, byte(len(sig)))
	return append(out, sig...), nil
}

func delegationMessage(grid [32]byte, client peer.ID) []byte {
	out := append([]byte(delegationDomain), grid[:]...)
	return append(out, client...)
}

// parseDelegation decodes and verifies a delegation.
func parseDelegation(b []byte, grid [32]byte) (member, client peer.ID, err error) {
	r := &reader{b: b}
	if v := r.u8("version"); r.err == nil && v != delegationVersion {
		return "", "", fmt.Errorf("delegation version %d", v)
	}
	member = r.id("member id")
	client = r.id("client id")
	sig := r.take(r.u8("signature length"), "signature")
	if r.err != nil {
		return "", "", fmt.Errorf("delegation: %w", r.err)
	}
	if len(r.b) != 0 {
		return "", "", errors.New("delegation: trailing bytes")
	}
	pk, err := member.ExtractPublicKey()
	if err != nil {
		return "", "", fmt.Errorf("delegation: %w", err)
	}
	if ok, err := pk.Verify(delegationMessage(grid, client), sig); err != nil || !ok {
		return "", "", errors.New("delegation: bad signature")
	}
	return member, client, nil
}

// acceptDelegationLocked records a member's client (one per member; a
// client id already claimed by another member is refused).
func (m *membership) acceptDelegationLocked(b []byte) {
	member, client, err := parseDelegation(b, m.grid)
	if err != nil || !m.list.Has(member) || member == m.h.ID() || m.list.Has(client) {
		return
	}
	if other, ok := m.clients[client]; ok && other != member {
		return
	}
	if old, ok := m.delegs[member]; ok {
		if _, oc, err := parseDelegation(old, m.grid); err == nil && oc != client {
			delete(m.clients, oc)
		}
	}
	m.clients[client] = member
	m.delegs[member] = slices.Clone(b)
}
