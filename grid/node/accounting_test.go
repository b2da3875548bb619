package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p"
	"github.com/sphere-grid/sphere/ledger"
)

// serviceOf returns what n's status says its stores did for p.
func serviceOf(t *testing.T, n *Node, p peer.ID) PeerService {
	t.Helper()
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Accounting.Service {
		if s.Peer == p.String() {
			return s
		}
	}
	return PeerService{}
}

func randomSI(t *testing.T) caps.StorageIndex {
	var si caps.StorageIndex
	if _, err := rand.Read(si[:]); err != nil {
		t.Fatal(err)
	}
	return si
}

// TestAdmission: real nodes on 127.0.0.1. A member under the newcomer
// allowance is served and counted; over it, its new share is refused with
// a permanent error naming the reason; the node's own CLI client is never
// refused; a countersigned lease of the member storing for the node raises
// the allowance by what it stores.
func TestAdmission(t *testing.T) {
	psk := newPSK(t)
	const allowance = 10000
	pol := ledger.DefaultPolicy()
	pol.NewcomerStore = allowance
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), LedgerFile: filepath.Join(t.TempDir(), "l.db"),
		Admission: true, AdmissionPolicy: &pol})
	b := startMember(t, a, Config{StorageDir: t.TempDir()})
	ctx := context.Background()
	waitFor(t, "b connected to a", func() bool { return b.host.Network().Connectedness(a.ID()) == network.Connected })
	cl := p2p.NewClient(b.host, a.ID(), p2p.ClientOptions{RequestTimeout: 10 * time.Second})
	lease := grid.Lease{Expires: time.Now().Add(time.Hour)}

	data := bytes.Repeat([]byte{7}, 6000)
	si := randomSI(t)
	if err := cl.WriteShare(ctx, si, 0, int64(len(data)), bytes.NewReader(data), lease); err != nil {
		t.Fatalf("share under the allowance refused: %v", err)
	}
	got, err := cl.ReadShare(ctx, si, 0, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if s := serviceOf(t, a.Node, b.ID()); s.StoredBytes != 6000 || s.ServedBytes != 6000 || s.Refused != 0 {
		t.Fatalf("counters after one write and one read: %+v", s)
	}

	// 6000 + 6000 > 10000: refused, permanently, with the reason.
	err = cl.WriteShare(ctx, randomSI(t), 0, int64(len(data)), bytes.NewReader(data), lease)
	if !errors.Is(err, grid.ErrNoSpace) || !grid.IsPermanent(err) {
		t.Fatalf("share over the allowance: got %v, want a permanent ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "tit-for-tat") || !strings.Contains(err.Error(), "newcomer allowance 10000") {
		t.Fatalf("refusal does not say why: %v", err)
	}
	s := serviceOf(t, a.Node, b.ID())
	if s.Refused != 1 || s.StoredBytes != 6000 || !strings.Contains(s.LastRefusal, "newcomer allowance") {
		t.Fatalf("counters after a refusal: %+v", s)
	}

	// The node's own CLI client (and its local servers) are never refused
	// nor counted.
	own := storageClient(t, psk, a.Node)
	big := bytes.Repeat([]byte{9}, 3*allowance)
	if err := own.WriteShare(ctx, randomSI(t), 0, int64(len(big)), bytes.NewReader(big), lease); err != nil {
		t.Fatalf("own client refused: %v", err)
	}
	if st, _ := a.Status(ctx); len(st.Accounting.Service) != 1 {
		t.Fatalf("own client counted: %+v", st.Accounting.Service)
	}

	// b stores 20000 bytes for a under a lease both signed: the allowance
	// grows to 30000, so the refused share now fits.
	ka, err := ledgerKey(a.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := ledgerKey(b.cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	la, _ := PeerIDToLedger(a.ID())
	lb, _ := PeerIDToLedger(b.ID())
	now := time.Now()
	terms := ledger.LeaseTerms{ID: [16]byte{1}, Storer: lb, Owner: la, Bytes: 20000, Start: now.Add(-time.Hour).Unix(), Until: now.Add(24 * time.Hour).Unix()}
	if _, err := a.ledger.store.Append(&ledger.Lease{Terms: terms, StorerSig: ledger.SignTerms(kb, terms), OwnerSig: ledger.SignTerms(ka, terms)}); err != nil {
		t.Fatal(err)
	}
	a.acct.mu.Lock()
	a.acct.acc = nil // rescan now rather than after accountsTTL
	a.acct.mu.Unlock()
	if err := cl.WriteShare(ctx, randomSI(t), 0, int64(len(data)), bytes.NewReader(data), lease); err != nil {
		t.Fatalf("share within the grown allowance refused: %v", err)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Accounting.Balances) != 1 || st.Accounting.Balances[0].Peer != b.ID().String() || st.Accounting.Balances[0].StoredBy != 20000 {
		t.Fatalf("balances: %+v", st.Accounting.Balances)
	}
	// A lease signed by b alone counts for nothing: Append refuses it.
	forged := terms
	forged.ID = [16]byte{2}
	if _, err := a.ledger.store.Append(&ledger.Lease{Terms: forged, StorerSig: ledger.SignTerms(ka, forged), OwnerSig: ledger.SignTerms(ka, forged)}); err == nil {
		t.Fatal("a lease without the storer's signature was appended")
	}
}

// TestAdmissionOffByDefault: without Config.Admission nothing is refused,
// but bytes are still counted.
func TestAdmissionOffByDefault(t *testing.T) {
	psk := newPSK(t)
	pol := ledger.DefaultPolicy()
	pol.NewcomerStore = 1000
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), AdmissionPolicy: &pol})
	b := startMember(t, a, Config{StorageDir: t.TempDir()})
	waitFor(t, "b connected to a", func() bool { return b.host.Network().Connectedness(a.ID()) == network.Connected })
	cl := p2p.NewClient(b.host, a.ID(), p2p.ClientOptions{RequestTimeout: 10 * time.Second})
	data := bytes.Repeat([]byte{7}, 5000)
	for range 2 {
		if err := cl.WriteShare(context.Background(), randomSI(t), 0, int64(len(data)), bytes.NewReader(data), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("admission off, yet refused: %v", err)
		}
	}
	if s := serviceOf(t, a.Node, b.ID()); s.StoredBytes != 10000 || s.Refused != 0 {
		t.Fatalf("counters: %+v", s)
	}
}

// TestServiceCountersBounded: however many peer ids show up, the counters
// table stays bounded, and admission of a peer past the bound still works
// (it is judged on the ledger balance alone).
func TestServiceCountersBounded(t *testing.T) {
	pol := ledger.DefaultPolicy()
	pol.NewcomerStore = 100
	a := &accounting{admit: true, policy: pol, now: time.Now, peers: map[peer.ID]*PeerService{}}
	var last peer.ID
	for range maxServicePeers + 100 {
		last = peer.ID(newKeyID(t))
		a.add(last, 10, 10)
	}
	if len(a.peers) != maxServicePeers {
		t.Fatalf("%d counters kept, bound %d", len(a.peers), maxServicePeers)
	}
	if err := a.admitStore(last, 50); err != nil {
		t.Fatalf("peer past the bound, under the allowance: %v", err)
	}
	if err := a.admitStore(last, 500); !errors.Is(err, grid.ErrNoSpace) {
		t.Fatalf("peer past the bound, over the allowance: %v", err)
	}
}

func newKeyID(t testing.TB) string {
	id, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return string(id)
}

// BenchmarkAdmitStore: the cost admission and counting add to each share
// written by a member (accounts cached, as between ledger scans).
func BenchmarkAdmitStore(b *testing.B) {
	pol := ledger.DefaultPolicy()
	pol.NewcomerStore = 1 << 62
	a := &accounting{admit: true, policy: pol, now: time.Now, peers: map[peer.ID]*PeerService{}}
	p := peer.ID(newKeyID(b))
	const size = 1 << 20
	b.SetBytes(size)
	for b.Loop() {
		if err := a.admitStore(p, size); err != nil {
			b.Fatal(err)
		}
		a.add(p, size, 0)
	}
}
