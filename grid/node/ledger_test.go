package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/ledger"
)

// TestLedgerExchange: three real nodes on 127.0.0.1 record observations of
// each other, fetch and verify each other's logs, and a fork proof one node
// holds spreads to the others.
func TestLedgerExchange(t *testing.T) {
	psk := newPSK(t)
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := func() Config {
		return Config{GridKey: psk, StorageDir: t.TempDir(), Logger: log, LedgerFile: filepath.Join(t.TempDir(), "ledger.db")}
	}
	a := startNode(t, cfg())
	b := startMember(t, a, cfg()) // only members speak the ledger protocol
	c := startMember(t, a, cfg())
	ctx := context.Background()
	for _, n := range []*running{a, b, c} {
		waitFor(t, "logs exchanged", func() bool {
			rep, err := n.ledger.store.Report(time.Now(), ledger.DefaultPolicy(), nil)
			return err == nil && rep.Length > 0 && len(rep.Logs) >= 2
		})
	}
	rep, _, err := b.ledgerVerify(ctx, a.ID().String())
	if err != nil || !rep.Verified || rep.Entries == 0 {
		t.Fatalf("b verifying a's log: %+v %v", rep, err)
	}
	if _, code, err := b.ledgerVerify(ctx, "12D3KooWNotAPeerAtAll"); err == nil || code == 200 {
		t.Fatal("verifying a bogus peer id succeeded")
	}
	// A stranger equivocates: a holds a proof; it reaches b and c.
	_, sk, _ := ed25519.GenerateKey(nil)
	e1, _ := ledger.NewEntry(sk, nil, time.Now(), &ledger.Observation{Subject: ledger.PeerID{1}, Samples: 1})
	e2, _ := ledger.NewEntry(sk, nil, time.Now(), &ledger.Observation{Subject: ledger.PeerID{2}, Samples: 1})
	p, err := ledger.NewForkProof(e1.Encode(), e2.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ledger.store.AddForkProof(p); err != nil {
		t.Fatal(err)
	}
	liar := ledger.PeerIDOf(sk.Public().(ed25519.PublicKey))
	for _, n := range []*running{b, c} {
		waitFor(t, "fork proof spread", func() bool { return n.ledger.store.Convicted(liar) })
	}
	if _, err := c.ledger.store.Import(liar, 0, [][]byte{e1.Encode()}); !errors.Is(err, ledger.ErrFork) {
		t.Fatalf("convicted author's log imported: %v", err)
	}
}

// TestLedgerFlood: many streams of garbage and oversized messages at once
// leave the node answering real exchanges.
func TestLedgerFlood(t *testing.T) {
	psk := newPSK(t)
	a := startNode(t, Config{GridKey: psk, StorageDir: t.TempDir(), LedgerFile: filepath.Join(t.TempDir(), "l.db")})
	b := startMember(t, a, Config{StorageDir: t.TempDir(), LedgerFile: filepath.Join(t.TempDir(), "l.db")})
	ctx := context.Background()
	done := make(chan struct{})
	for i := range 64 {
		go func() {
			defer func() { done <- struct{}{} }()
			s, err := b.host.NewStream(ctx, a.ID(), LedgerProtocol)
			if err != nil {
				return
			}
			defer s.Close()
			s.SetDeadline(time.Now().Add(5 * time.Second))
			if i%2 == 0 {
				s.Write([]byte{0xff, 0xff, 0xff, 0xff}) // claims 4 GiB
			} else {
				s.Write([]byte{0, 0, 0, 8, 1, 9, 0, 0, 0, 0, 0, 0}) // unknown type
			}
			buf := make([]byte, 16)
			s.Read(buf)
		}()
	}
	for range 64 {
		<-done
	}
	waitFor(t, "a normal exchange after the flood", func() bool { return b.ledger.exchange(ctx, a.ID()) == nil })
}

// TestLedgerEquivocationCaught: an author shows a and b different third
// entries; as soon as a and b compare heads, both hold a fork proof, and c,
// connected only through them, gets it within a few rounds.
func TestLedgerEquivocationCaught(t *testing.T) {
	psk := newPSK(t)
	cfg := func() Config {
		return Config{GridKey: psk, StorageDir: t.TempDir(), LedgerFile: filepath.Join(t.TempDir(), "l.db")}
	}
	a := startNode(t, cfg())
	b := startMember(t, a, cfg())
	c := startMember(t, a, cfg())
	_, sk, _ := ed25519.GenerateKey(nil)
	liar := ledger.PeerIDOf(sk.Public().(ed25519.PublicKey))
	var prev *ledger.Entry
	var common [][]byte
	for i := range 2 {
		e, _ := ledger.NewEntry(sk, prev, time.Now(), &ledger.Observation{Subject: ledger.PeerID{byte(i + 1)}, Samples: 1})
		common = append(common, e.Encode())
		prev = e
	}
	x, _ := ledger.NewEntry(sk, prev, time.Now(), &ledger.Observation{Subject: ledger.PeerID{7}, Samples: 1})
	y, _ := ledger.NewEntry(sk, prev, time.Now(), &ledger.Observation{Subject: ledger.PeerID{8}, Samples: 2})
	if _, err := a.ledger.store.Import(liar, 0, append(common, x.Encode())); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ledger.store.Import(liar, 0, append(common, y.Encode())); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*running{a, b, c} {
		waitFor(t, "fork proof everywhere", func() bool { return n.ledger.store.Convicted(liar) })
	}
}
