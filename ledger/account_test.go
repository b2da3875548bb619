package ledger

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// lease returns a countersigned lease entry body: storer keeps bytes for owner.
func lease(storer, owner ed25519.PrivateKey, id byte, bytes uint64, start time.Time, days int) *Lease {
	t := LeaseTerms{ID: [16]byte{id}, Storer: pid(storer), Owner: pid(owner), Bytes: bytes, Start: start.Unix(), Until: start.Unix() + int64(days)*86400}
	return &Lease{Terms: t, StorerSig: SignTerms(storer, t), OwnerSig: SignTerms(owner, t)}
}

func entry(t *testing.T, author ed25519.PrivateKey, b Body) *Entry {
	t.Helper()
	e, err := NewEntry(author, nil, t0, b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestBalancesFromCountersignedEntries(t *testing.T) {
	me, honest := testKey(1), testKey(2)
	acc := NewAccounts(pid(me))
	// Each stores 1 MiB for the other for 10 days; the lease appears in both logs.
	l1 := lease(honest, me, 1, 1<<20, t0, 10)
	acc.Add(entry(t, me, l1))
	acc.Add(entry(t, honest, l1)) // the same lease from the peer's log counts once
	acc.Add(entry(t, me, lease(me, honest, 2, 1<<20, t0, 10)))
	now := t0.Add(5 * 24 * time.Hour)
	b := acc.Balance(pid(honest), now, 24*time.Hour)
	if b.ReceivedByteDays != 5*(1<<20) || b.GivenByteDays != 5*(1<<20) || b.StoredBy != 1<<20 || b.StoringFor != 1<<20 {
		t.Fatalf("balance %+v", b)
	}
	// Ending the lease early stops accrual.
	acc.Add(entry(t, me, &End{ID: [16]byte{1}, Storer: pid(honest), Owner: pid(me), Time: t0.Unix() + 2*86400, Reason: EndAudit}))
	b = acc.Balance(pid(honest), now, 24*time.Hour)
	if b.ReceivedByteDays != 2*(1<<20) || b.StoredBy != 0 || b.AuditFailures != 1 {
		t.Fatalf("after end: %+v", b)
	}
	// Leases between two other peers do not change our balances.
	acc.Add(entry(t, testKey(3), lease(testKey(3), testKey(4), 9, 1<<30, t0, 10)))
	if bs := acc.Balances(now, time.Hour); len(bs) != 1 {
		t.Fatalf("%d balances, want 1", len(bs))
	}
}

func TestTitForTat(t *testing.T) {
	me, honest, rider := testKey(1), testKey(2), testKey(3)
	acc := NewAccounts(pid(me))
	p := DefaultPolicy()
	now := t0.Add(time.Hour)
	// The honest peer stores 1 GiB for us; the free rider stores nothing.
	acc.Add(entry(t, me, lease(honest, me, 1, 1<<30, t0, 31)))
	bh, br := acc.Balance(pid(honest), now, p.Window), acc.Balance(pid(rider), now, p.Window)
	if err := p.AdmitStore(bh, 512<<20); err != nil {
		t.Fatalf("honest peer refused: %v", err)
	}
	if err := p.AdmitStore(br, p.NewcomerStore); err != nil {
		t.Fatalf("newcomer refused its allowance: %v", err)
	}
	err := p.AdmitStore(br, p.NewcomerStore+1)
	var r *Refusal
	if !errors.Is(err, ErrRefused) || !errors.As(err, &r) || r.Allowed != p.NewcomerStore {
		t.Fatalf("free rider beyond allowance: %v", err)
	}
	// Serving: the rider downloads its allowance, then is cut off.
	for i := range 4 {
		rt := ReceiptTerms{Provider: pid(me), Receiver: pid(rider), Op: OpServed, Bytes: p.NewcomerServe / 4, Time: now.UnixMilli(), Ref: [32]byte{byte(i)}}
		acc.Add(entry(t, me, &Receipt{Terms: rt, ReceiverSig: SignReceipt(rider, rt)}))
	}
	if err := p.AdmitServe(acc.Balance(pid(rider), now, p.Window), 1); !errors.Is(err, ErrRefused) {
		t.Fatalf("free rider served past its allowance: %v", err)
	}
	if err := p.AdmitServe(acc.Balance(pid(honest), now, p.Window), 1<<30); err != nil {
		t.Fatalf("honest peer's service cut: %v", err)
	}
	// A day later the window has moved on.
	if err := p.AdmitServe(acc.Balance(pid(rider), now.Add(25*time.Hour), p.Window), 1); err != nil {
		t.Fatalf("window did not slide: %v", err)
	}
	// Whitewashing: a fresh identity gets exactly the newcomer allowance.
	fresh := acc.Balance(pid(testKey(9)), now, p.Window)
	if p.AdmitStore(fresh, p.NewcomerStore) != nil || p.AdmitStore(fresh, p.NewcomerStore+1) == nil {
		t.Fatal("fresh identity got other than the newcomer allowance")
	}
	// A convicted peer is refused even what a newcomer gets.
	acc.Convict(pid(honest))
	if err := p.AdmitStore(acc.Balance(pid(honest), now, p.Window), 1); !errors.As(err, &r) || r.Reason == "" {
		t.Fatalf("convicted peer admitted: %v", err)
	}
}

func TestRenewalsAccrueBySegment(t *testing.T) {
	me, peer := testKey(1), testKey(2)
	acc := NewAccounts(pid(me))
	acc.Add(entry(t, me, lease(peer, me, 1, 100, t0, 10)))
	// After 4 days, the lease is renewed at 300 bytes for 10 more days.
	r := lease(peer, me, 1, 300, t0.Add(4*24*time.Hour), 10)
	r.Renewal = true
	acc.Add(entry(t, me, r))
	acc.Add(entry(t, me, r)) // repeated: no effect
	b := acc.Balance(pid(peer), t0.Add(6*24*time.Hour), time.Hour)
	if b.ReceivedByteDays != 4*100+2*300 || b.StoredBy != 300 {
		t.Fatalf("balance %+v, want 1000 byte-days and 300 bytes", b)
	}
}
