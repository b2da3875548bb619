package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/p2p"
	"github.com/sphere-grid/sphere/ledger"
)

// accountsTTL is how long balances read from the ledger are reused: the
// scan reads every log held, too much for every share written.
const accountsTTL = 10 * time.Second

// maxServicePeers bounds the per-peer counters kept; only members reach
// the stores, so this is generous.
const maxServicePeers = 4096

// PeerService is what this node's stores did for one peer since the node
// started, as the node itself counted it. These are unilateral counts: no
// one countersigned them, so they never enter ledger balances (see
// docs/spec/ledger.md, "What is wired").
type PeerService struct {
	Peer string `json:"peer"`
	// StoredBytes: share and slot bytes the stores accepted from the peer.
	StoredBytes uint64 `json:"storedBytes"`
	// ServedBytes: share and slot bytes the stores sent to the peer.
	ServedBytes uint64 `json:"servedBytes"`
	// Refused counts new shares refused by tit-for-tat admission;
	// LastRefusal says why, last time.
	Refused     uint64 `json:"refused"`
	LastRefusal string `json:"lastRefusal,omitempty"`
}

// Accounting is the status of accounting: balances from countersigned
// ledger entries, and the unilateral per-peer counts of the stores.
type Accounting struct {
	// Admission: tit-for-tat admission of new shares is on (Config.Admission).
	Admission bool `json:"admission"`
	// Balances from countersigned entries only (empty without a ledger).
	Balances []BalanceView `json:"balances"`
	// Service: what the stores did per peer since the node started.
	Service []PeerService `json:"service"`
}

// BalanceView is a ledger.Balance named by libp2p peer id.
type BalanceView struct {
	Peer string `json:"peer"`
	ledger.Balance
}

// accounting counts what the node's stores do for each peer and, when
// Config.Admission is on, refuses new shares of peers over their allowance.
type accounting struct {
	members *membership
	admit   bool
	policy  ledger.Policy
	now     func() time.Time
	ledger  func() *ledgerService // nil until openLedger

	scanMu  sync.Mutex // serialises ledger scans
	mu      sync.Mutex
	peers   map[peer.ID]*PeerService
	acc     *ledger.Accounts
	accTime time.Time
}

func newAccounting(cfg Config, m *membership, l func() *ledgerService) *accounting {
	pol := ledger.DefaultPolicy()
	if cfg.AdmissionPolicy != nil {
		pol = *cfg.AdmissionPolicy
	}
	return &accounting{members: m, admit: cfg.Admission, policy: pol, now: cfg.Now, ledger: l, peers: map[peer.ID]*PeerService{}}
}

// account names whom a request is for: the member itself, or the member
// a CLI client id acts for. ok is false for this node, its CLI client and
// its local servers (never counted, never refused) and for calls that did
// not come over the network.
func (a *accounting) account(ctx context.Context) (peer.ID, bool) {
	p, ok := p2p.PeerFrom(ctx)
	if !ok {
		return "", false
	}
	a.members.mu.Lock()
	defer a.members.mu.Unlock()
	if a.members.local[p] {
		return "", false
	}
	if m, ok := a.members.clients[p]; ok {
		return m, true
	}
	return p, true
}

// counter returns p's counters (nil when the table is full); a.mu held.
func (a *accounting) counter(p peer.ID) *PeerService {
	c := a.peers[p]
	if c == nil && len(a.peers) < maxServicePeers {
		c = &PeerService{Peer: p.String()}
		a.peers[p] = c
	}
	return c
}

func (a *accounting) add(p peer.ID, stored, served uint64) {
	a.mu.Lock()
	if c := a.counter(p); c != nil {
		c.StoredBytes += stored
		c.ServedBytes += served
	}
	a.mu.Unlock()
}

// accounts returns the ledger's accounts, rescanned at most every
// accountsTTL; nil without a ledger.
func (a *accounting) accounts() *ledger.Accounts {
	var l *ledgerService
	if a.ledger != nil {
		l = a.ledger()
	}
	if l == nil {
		return nil
	}
	// One scan at a time, outside a.mu: counting bytes never waits for it.
	a.scanMu.Lock()
	defer a.scanMu.Unlock()
	a.mu.Lock()
	acc, fresh := a.acc, a.acc != nil && time.Since(a.accTime) <= accountsTTL
	a.mu.Unlock()
	if fresh {
		return acc
	}
	next, err := l.store.Accounts()
	if err != nil {
		return acc // keep the last good scan
	}
	a.mu.Lock()
	a.acc, a.accTime = next, time.Now()
	a.mu.Unlock()
	return next
}

// admitStore asks the policy whether to store size more bytes for p. What
// the node stores for p is the larger of the countersigned leases and its
// own count of bytes accepted (no one needs p's signature to limit p);
// what p stores for the node counts only when countersigned.
func (a *accounting) admitStore(p peer.ID, size int64) error {
	if !a.admit {
		return nil
	}
	var b ledger.Balance
	if lp, err := PeerIDToLedger(p); err == nil {
		b.Peer = lp
		if acc := a.accounts(); acc != nil {
			b = acc.Balance(lp, a.now(), a.policy.Window)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.counter(p)
	if c != nil {
		b.StoringFor = max(b.StoringFor, c.StoredBytes)
	}
	err := a.policy.AdmitStore(b, uint64(max(size, 0)))
	if err == nil {
		return nil
	}
	var r *ledger.Refusal
	reason := err.Error()
	if errors.As(err, &r) {
		reason = r.Reason
	}
	if c != nil {
		c.Refused++
		c.LastRefusal = reason
	}
	// ErrNoSpace: a permanent refusal the uploader answers by placing the
	// share on a spare server.
	return fmt.Errorf("tit-for-tat admission refused %d bytes for %s: %s: %w", size, shortID(p), reason, grid.ErrNoSpace)
}

// status returns balances and counters, sorted by peer.
func (a *accounting) status() Accounting {
	st := Accounting{Admission: a.admit, Balances: []BalanceView{}, Service: []PeerService{}}
	if acc := a.accounts(); acc != nil {
		for _, b := range acc.Balances(a.now(), a.policy.Window) {
			st.Balances = append(st.Balances, BalanceView{Peer: LedgerToPeerID(b.Peer), Balance: b})
		}
	}
	a.mu.Lock()
	for _, c := range a.peers {
		st.Service = append(st.Service, *c)
	}
	a.mu.Unlock()
	sort.Slice(st.Service, func(i, j int) bool { return st.Service[i].Peer < st.Service[j].Peer })
	return st
}

// accountedStore is a store as the storage protocol serves it: it counts
// each peer's bytes and admits new shares by the policy.
type accountedStore struct {
	*boltserver.Server
	a *accounting
}

func (s accountedStore) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	p, ok := s.a.account(ctx)
	if !ok {
		return s.Server.WriteShare(ctx, si, shnum, size, r, lease)
	}
	if err := s.a.admitStore(p, size); err != nil {
		return err
	}
	err := s.Server.WriteShare(ctx, si, shnum, size, r, lease)
	if err == nil {
		s.a.add(p, uint64(max(size, 0)), 0)
	}
	return err
}

func (s accountedStore) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) error {
	err := s.Server.WriteSlot(ctx, si, we, writes, lease)
	if p, ok := s.a.account(ctx); ok && err == nil {
		var n uint64
		for _, w := range writes {
			n += uint64(len(w.Data))
		}
		s.a.add(p, n, 0)
	}
	return err
}

func (s accountedStore) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	b, err := s.Server.ReadShare(ctx, si, shnum, off, length)
	if p, ok := s.a.account(ctx); ok && err == nil {
		s.a.add(p, 0, uint64(len(b)))
	}
	return b, err
}

func (s accountedStore) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	ss, err := s.Server.ReadSlot(ctx, si)
	if p, ok := s.a.account(ctx); ok && err == nil {
		var n uint64
		for _, sh := range ss {
			n += uint64(len(sh.Data))
		}
		s.a.add(p, 0, n)
	}
	return ss, err
}
