package ledger

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// maxReceiptAge bounds how long receipts are kept for the serve window.
const maxReceiptAge = 7 * 24 * time.Hour

// Balance is what one peer and this node have given each other, computed
// from countersigned entries only: leases both parties signed and receipts
// the receiver signed. Byte-days accrue from a lease's start to the earlier
// of its end and now.
type Balance struct {
	Peer PeerID `json:"peer"`
	// GivenByteDays: byte-days this node stored for the peer.
	GivenByteDays float64 `json:"given_byte_days"`
	// ReceivedByteDays: byte-days the peer stored for this node.
	ReceivedByteDays float64 `json:"received_byte_days"`
	// StoringFor / StoredBy: bytes under active leases now.
	StoringFor uint64 `json:"storing_for_peer"`
	StoredBy   uint64 `json:"stored_by_peer"`
	// Served / Fetched: bytes this node served the peer and fetched from it
	// within the policy window (receipts signed by the receiver).
	Served  uint64 `json:"served"`
	Fetched uint64 `json:"fetched"`
	// AuditFailures counts leases this node ended because the peer failed
	// an audit.
	AuditFailures int  `json:"audit_failures"`
	Convicted     bool `json:"convicted"`
}

// Net is received minus given byte-days: positive when the peer has given
// this node more than it took.
func (b Balance) Net() float64 { return b.ReceivedByteDays - b.GivenByteDays }

type leaseState struct {
	terms   LeaseTerms // the current terms; a renewal starts a new segment
	accrued float64    // byte-days of segments closed by renewals
	endTime int64      // 0 while not ended
	reason  EndReason
}

type receipt struct {
	t  ReceiptTerms
	at time.Time
}

// Accounts computes balances between this node and each peer from verified
// entries. Add only entries that passed VerifyChain or came from the node's
// own Store; a lease or receipt the node is not a party to is ignored here
// (third-party reports feed the recommender, weighed by trust, not the
// balance). It is safe for concurrent use.
type Accounts struct {
	self      PeerID
	mu        sync.Mutex
	leases    map[[16]byte]*leaseState
	byPeer    map[PeerID][]*leaseState // in the order first seen, for determinism
	receipts  map[PeerID][]receipt
	convicted map[PeerID]bool
	failed    map[PeerID]int // audit failures per storer
}

// NewAccounts returns empty accounts for the node self.
func NewAccounts(self PeerID) *Accounts {
	return &Accounts{self: self, leases: map[[16]byte]*leaseState{}, byPeer: map[PeerID][]*leaseState{}, receipts: map[PeerID][]receipt{}, convicted: map[PeerID]bool{}, failed: map[PeerID]int{}}
}

// leaseKey binds a lease id to its parties, so a peer cannot overwrite
// another pair's lease by reusing its id.
func leaseKey(id [16]byte, storer, owner PeerID) [16]byte {
	h := hashSigned(append(append(id[:], storer[:]...), owner[:]...))
	return [16]byte(h[:16])
}

// Add accounts for one verified entry; it is idempotent, so the same lease
// seen in both parties' logs counts once.
func (a *Accounts) Add(e *Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch b := e.Body.(type) {
	case *Lease:
		t := b.Terms
		if t.Storer != a.self && t.Owner != a.self {
			return
		}
		k := leaseKey(t.ID, t.Storer, t.Owner)
		ls := a.leases[k]
		if ls == nil { // a renewal of a lease not seen stands on its own terms
			ls = &leaseState{terms: t}
			a.leases[k] = ls
			other := t.Storer
			if other == a.self {
				other = t.Owner
			}
			a.byPeer[other] = append(a.byPeer[other], ls)
			return
		}
		if t.Start <= ls.terms.Start || t.Until <= ls.terms.Until {
			return // a stale or repeated renewal
		}
		// Close the current segment at the renewal's start (or its end).
		closeAt := min(t.Start, ls.terms.Until)
		if closeAt > ls.terms.Start {
			ls.accrued += float64(ls.terms.Bytes) * float64(closeAt-ls.terms.Start) / 86400
		}
		ls.terms.Start, ls.terms.Until, ls.terms.Bytes = t.Start, t.Until, t.Bytes
	case *End:
		if b.Storer != a.self && b.Owner != a.self {
			return
		}
		k := leaseKey(b.ID, b.Storer, b.Owner)
		ls := a.leases[k]
		if ls == nil || (ls.endTime != 0 && ls.endTime <= b.Time) {
			return
		}
		if ls.reason != EndAudit && b.Reason == EndAudit && b.Owner == a.self {
			a.failed[b.Storer]++
		}
		ls.endTime, ls.reason = b.Time, b.Reason
	case *Receipt:
		t := b.Terms
		var peer PeerID
		switch a.self {
		case t.Provider:
			peer = t.Receiver
		case t.Receiver:
			peer = t.Provider
		default:
			return
		}
		rs := a.receipts[peer]
		for _, r := range rs {
			if r.t == t {
				return
			}
		}
		// Keep a bounded history: drop receipts older than a week before
		// the newest.
		at := time.UnixMilli(t.Time)
		if len(rs) >= 64 {
			keep := rs[:0]
			for _, r := range rs {
				if r.at.After(at.Add(-maxReceiptAge)) {
					keep = append(keep, r)
				}
			}
			rs = keep
		}
		a.receipts[peer] = append(rs, receipt{t, at})
	}
}

// Convict marks a peer proven to have forked its log.
func (a *Accounts) Convict(p PeerID) {
	a.mu.Lock()
	a.convicted[p] = true
	a.mu.Unlock()
}

// Shunned reports whether a peer is convicted of forking or failed an
// audit of ours: whether selection should leave it out. It is cheaper than
// Balance.
func (a *Accounts) Shunned(p PeerID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.convicted[p] || a.failed[p] > 0
}

// Balances returns the balance with every peer seen, sorted by peer.
func (a *Accounts) Balances(now time.Time, window time.Duration) []Balance {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[PeerID]*Balance{}
	get := func(p PeerID) *Balance {
		if m[p] == nil {
			m[p] = &Balance{Peer: p, Convicted: a.convicted[p]}
		}
		return m[p]
	}
	for _, p := range sortedPeers(a.byPeer) {
		for _, ls := range a.byPeer[p] {
			a.addLease(ls, now, get)
		}
	}
	for _, p := range sortedPeers(a.receipts) {
		a.addReceipts(get(p), a.receipts[p], now, window)
	}
	for p := range a.convicted {
		get(p)
	}
	out := make([]Balance, 0, len(m))
	for _, b := range m {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Peer[:]) < string(out[j].Peer[:]) })
	return out
}

// Balance returns the balance with one peer.
func (a *Accounts) Balance(p PeerID, now time.Time, window time.Duration) Balance {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &Balance{Peer: p, Convicted: a.convicted[p]}
	for _, ls := range a.byPeer[p] {
		a.addLease(ls, now, func(PeerID) *Balance { return b })
	}
	a.addReceipts(b, a.receipts[p], now, window)
	return *b
}

func (a *Accounts) addLease(ls *leaseState, now time.Time, get func(PeerID) *Balance) {
	t := ls.terms
	end := t.Until
	if ls.endTime != 0 && ls.endTime < end {
		end = ls.endTime
	}
	active := now.Unix() < end && now.Unix() >= t.Start
	if now.Unix() < end {
		end = now.Unix()
	}
	bd := ls.accrued
	if end > t.Start {
		bd += float64(t.Bytes) * float64(end-t.Start) / 86400
	}
	if t.Storer == a.self {
		b := get(t.Owner)
		b.GivenByteDays += bd
		if active {
			b.StoringFor += t.Bytes
		}
	} else {
		b := get(t.Storer)
		b.ReceivedByteDays += bd
		if active {
			b.StoredBy += t.Bytes
		}
		if ls.reason == EndAudit {
			b.AuditFailures++
		}
	}
}

func (a *Accounts) addReceipts(b *Balance, rs []receipt, now time.Time, window time.Duration) {
	for _, r := range rs {
		if r.at.Before(now.Add(-window)) || r.t.Op != OpServed {
			continue
		}
		if r.t.Provider == a.self {
			b.Served += r.t.Bytes
		} else {
			b.Fetched += r.t.Bytes
		}
	}
}

// Policy is tit for tat with a newcomer allowance: a node stores for a peer
// up to NewcomerStore plus what that peer stores for it, and serves it up to
// NewcomerServe plus ServePerStored times that, per Window. A fresh identity
// has no record, so whitewashing buys only the allowance.
type Policy struct {
	NewcomerStore  uint64
	NewcomerServe  uint64
	ServePerStored float64
	Window         time.Duration
	// MaxAuditFailures: a peer that failed more audits is refused.
	MaxAuditFailures int
}

// DefaultPolicy is a somewhat altruistic risk taker: 64 MiB stored and
// 256 MiB served a day for a stranger.
func DefaultPolicy() Policy {
	return Policy{NewcomerStore: 64 << 20, NewcomerServe: 256 << 20, ServePerStored: 4, Window: 24 * time.Hour, MaxAuditFailures: 0}
}

// ErrRefused is wrapped by every Refusal.
var ErrRefused = errors.New("refused by the ledger policy")

// Refusal says why a request was refused, in words a user can act on.
type Refusal struct {
	Peer    PeerID
	Op      string // "store" or "serve"
	Want    uint64
	Allowed uint64
	Reason  string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s %d bytes for %v: %s", r.Op, r.Want, r.Peer.Short(), r.Reason)
}

func (r *Refusal) Unwrap() error { return ErrRefused }

func (p Policy) common(op string, b Balance, want uint64) *Refusal {
	switch {
	case b.Convicted:
		return &Refusal{Peer: b.Peer, Op: op, Want: want, Reason: "peer signed two different versions of its log (fork proof held)"}
	case b.AuditFailures > p.MaxAuditFailures:
		return &Refusal{Peer: b.Peer, Op: op, Want: want, Reason: fmt.Sprintf("peer failed %d storage audits", b.AuditFailures)}
	}
	return nil
}

// AdmitStore decides whether to store want more bytes for the peer.
func (p Policy) AdmitStore(b Balance, want uint64) error {
	if r := p.common("store", b, want); r != nil {
		return r
	}
	allowed := p.NewcomerStore + b.StoredBy
	if b.StoringFor+want > allowed {
		return &Refusal{Peer: b.Peer, Op: "store", Want: want, Allowed: allowed - min(allowed, b.StoringFor),
			Reason: fmt.Sprintf("quota: we store %d bytes for the peer, it stores %d for us, newcomer allowance %d", b.StoringFor, b.StoredBy, p.NewcomerStore)}
	}
	return nil
}

// AdmitServe decides whether to serve want more bytes to the peer.
func (p Policy) AdmitServe(b Balance, want uint64) error {
	if r := p.common("serve", b, want); r != nil {
		return r
	}
	allowed := p.NewcomerServe + uint64(p.ServePerStored*float64(b.StoredBy))
	if b.Served+want > allowed {
		return &Refusal{Peer: b.Peer, Op: "serve", Want: want, Allowed: allowed - min(allowed, b.Served),
			Reason: fmt.Sprintf("quota: served %d bytes in the last %v, the peer stores %d for us, newcomer allowance %d", b.Served, p.Window, b.StoredBy, p.NewcomerServe)}
	}
	return nil
}
