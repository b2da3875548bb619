package ledger

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// testKey returns a deterministic key for tests.
func testKey(i byte) ed25519.PrivateKey {
	seed := bytes.Repeat([]byte{i}, 32)
	return ed25519.NewKeyFromSeed(seed)
}

func pid(k ed25519.PrivateKey) PeerID { return PeerIDOf(k.Public().(ed25519.PublicKey)) }

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// sampleBodies returns one body of each kind authored by a with peer b.
func sampleBodies(a, b ed25519.PrivateKey, i int) []Body {
	terms := LeaseTerms{ID: [16]byte{byte(i)}, Storer: pid(b), Owner: pid(a), Bytes: 1 << 20, Start: t0.Unix(), Until: t0.Unix() + 31*86400}
	lease := &Lease{Terms: terms, StorerSig: SignTerms(b, terms), OwnerSig: SignTerms(a, terms)}
	renew := terms
	renew.Start, renew.Until = terms.Until-86400, terms.Until+31*86400
	rt := ReceiptTerms{Provider: pid(b), Receiver: pid(a), Op: OpServed, Bytes: 4096, Time: t0.UnixMilli(), Ref: [32]byte{byte(i)}}
	return []Body{
		lease,
		&Lease{Terms: renew, StorerSig: SignTerms(b, renew), OwnerSig: SignTerms(a, renew), Renewal: true},
		&Receipt{Terms: rt, ReceiverSig: SignReceipt(a, rt)},
		&Observation{Subject: pid(b), Samples: 3, LatencyMicro: 1500, Throughput: 50 << 20, Availability: 9990},
		&End{ID: terms.ID, Storer: pid(b), Owner: pid(a), Time: t0.Unix() + 86400, Reason: EndCancelled},
	}
}

// buildLog returns n encoded entries of a's log, mixing every kind.
func buildLog(t testing.TB, a, b ed25519.PrivateKey, n int) [][]byte {
	t.Helper()
	var prev *Entry
	out := make([][]byte, 0, n)
	for i := range n {
		bodies := sampleBodies(a, b, i/5)
		e, err := NewEntry(a, prev, t0.Add(time.Duration(i)*time.Second), bodies[i%len(bodies)])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Encode())
		prev = e
	}
	return out
}

func TestEntryRoundTrip(t *testing.T) {
	a, b := testKey(1), testKey(2)
	for _, raw := range buildLog(t, a, b, 10) {
		e, err := DecodeEntry(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Encode(), raw) {
			t.Fatalf("%v entry does not re-encode to the same bytes", e.Kind())
		}
		if err := VerifyEntry(e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyChainAccepts(t *testing.T) {
	a, b := testKey(1), testKey(2)
	raw := buildLog(t, a, b, 700) // crosses batch boundaries
	es, err := VerifyChain(pid(a), 0, Hash{}, time.Time{}, raw, ChainOptions{})
	if err != nil || len(es) != len(raw) {
		t.Fatalf("verify: %d entries, %v", len(es), err)
	}
	// A suffix verifies from the hash of the entry before it.
	_, err = VerifyChain(pid(a), 300, es[299].Hash(), es[299].Time, raw[300:], ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// failIndex runs VerifyChain and returns the index it failed at.
func failIndex(t *testing.T, author PeerID, raw [][]byte) uint64 {
	t.Helper()
	es, err := VerifyChain(author, 0, Hash{}, time.Time{}, raw, ChainOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *VerifyError, have %v", err)
	}
	if uint64(len(es)) != ve.Index {
		t.Fatalf("returned %d verified entries before failing at %d", len(es), ve.Index)
	}
	return ve.Index
}

func TestVerifyChainFailsAtExactIndex(t *testing.T) {
	a, b := testKey(1), testKey(2)
	orig := buildLog(t, a, b, 300)
	clone := func() [][]byte {
		c := make([][]byte, len(orig))
		for i := range orig {
			c[i] = bytes.Clone(orig[i])
		}
		return c
	}
	for _, at := range []int{0, 1, 255, 256, 257, 299} {
		cases := map[string]func() [][]byte{
			"reordered": func() [][]byte {
				c := clone()
				if at == len(c)-1 {
					c[at-1], c[at] = c[at], c[at-1]
					return c
				}
				c[at], c[at+1] = c[at+1], c[at]
				return c
			},
			"dropped": func() [][]byte {
				c := clone()
				if at == len(c)-1 {
					return append(c[:at-1], c[at])
				}
				return append(c[:at], c[at+1:]...)
			},
			"duplicated": func() [][]byte {
				c := clone()
				return append(c[:at+1], c[at:]...)
			},
			"altered body": func() [][]byte {
				c := clone()
				c[at][headerSize+20] ^= 1
				return c
			},
			"altered signature": func() [][]byte {
				c := clone()
				c[at][len(c[at])-1] ^= 0x40
				return c
			},
			"altered time": func() [][]byte {
				c := clone()
				c[at][81] ^= 1
				return c
			},
		}
		for name, mk := range cases {
			want := uint64(at)
			switch {
			case name == "duplicated":
				want = uint64(at) + 1
			case (name == "reordered" || name == "dropped") && at == len(orig)-1:
				want = uint64(at) - 1
			}
			if got := failIndex(t, pid(a), mk()); got != want {
				t.Errorf("%s at %d: failed at %d, want %d", name, at, got, want)
			}
		}
	}
}

func TestVerifyChainRejectsForeignAndMisdirected(t *testing.T) {
	a, b := testKey(1), testKey(2)
	raw := buildLog(t, a, b, 5)
	if got := failIndex(t, pid(b), raw); got != 0 {
		t.Fatalf("log of a verified as b's up to %d", got)
	}
	// An entry signature made with a different tag never verifies.
	e, _ := DecodeEntry(raw[0])
	copy(e.Sig[:], ed25519.Sign(a, e.signedBytes()))
	if VerifyEntry(e) == nil {
		t.Fatal("signature without the domain tag verified")
	}
	// A countersignature by the wrong party fails the entry.
	bad := sampleBodies(a, b, 0)[0].(*Lease)
	bad.StorerSig = SignTerms(a, bad.Terms)
	ee, err := NewEntry(a, nil, t0, bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(pid(a), 0, Hash{}, time.Time{}, [][]byte{ee.Encode()}, ChainOptions{}); !errors.Is(err, ErrSignature) {
		t.Fatalf("lease with a forged storer signature: %v", err)
	}
}

func TestBatchAgreesWithSingle(t *testing.T) {
	a, b := testKey(1), testKey(2)
	raw := buildLog(t, a, b, 40)
	var cs []sigCheck
	for _, r := range raw {
		e, s, err := decodeEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		cs = entrySigs(cs, e, s)
	}
	if !batchVerify(cs) {
		t.Fatal("batch rejects valid signatures")
	}
	for i := range cs {
		if !verifyOne(cs[i]) {
			t.Fatalf("single rejects valid signature %d", i)
		}
		bad := append([]sigCheck(nil), cs...)
		bad[i].msg = append(bytes.Clone(bad[i].msg), 0)
		if batchVerify(bad) || verifyOne(bad[i]) {
			t.Fatalf("altered message %d verified", i)
		}
	}
}

func TestForkProof(t *testing.T) {
	a, b := testKey(1), testKey(2)
	e1, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 0)[3])
	e2, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 1)[2])
	p, err := NewForkProof(e1.Encode(), e2.Encode())
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodeForkProof(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	who, idx, err := q.Verify()
	if err != nil || who != pid(a) || idx != 0 {
		t.Fatalf("proof convicts %v at %d: %v", who, idx, err)
	}
	if _, err := NewForkProof(e1.Encode(), e1.Encode()); err == nil {
		t.Fatal("an entry and itself made a fork proof")
	}
	f, _ := NewEntry(b, nil, t0, sampleBodies(b, a, 0)[3])
	if _, err := NewForkProof(e1.Encode(), f.Encode()); err == nil {
		t.Fatal("entries of two authors made a fork proof")
	}
	forged := e2.Encode()
	forged[len(forged)-2] ^= 1
	if _, err := NewForkProof(e1.Encode(), forged); err == nil {
		t.Fatal("a forged entry made a fork proof")
	}
}

func openStore(t *testing.T, k ed25519.PrivateKey) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"), k, Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStoreAppendImportFork(t *testing.T) {
	a, b := testKey(1), testKey(2)
	sa, sb := openStore(t, a), openStore(t, b)
	for _, body := range sampleBodies(a, b, 0) {
		if _, err := sa.Append(body); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := sa.Head(pid(a))
	if h.Length != 5 {
		t.Fatalf("head length %d, want 5", h.Length)
	}
	raw, _ := sa.Raw(pid(a), 0, 100)
	if n, err := sb.Import(pid(a), 0, raw[:3]); err != nil || n != 3 {
		t.Fatalf("import: %d %v", n, err)
	}
	if n, err := sb.Import(pid(a), 1, raw[1:]); err != nil || n != 2 {
		t.Fatalf("import overlapping: %d %v", n, err)
	}
	hb, _ := sb.Head(pid(a))
	if hb != h {
		t.Fatalf("copied head %+v, want %+v", hb, h)
	}
	// a signs a different entry 3: b catches the fork and keeps the proof.
	prev, _ := DecodeEntry(raw[2])
	other, _ := NewEntry(a, prev, t0.Add(time.Minute), &Observation{Subject: pid(b), Samples: 1, Availability: 1})
	_, err := sb.Import(pid(a), 3, [][]byte{other.Encode()})
	var ve *VerifyError
	if !errors.Is(err, ErrFork) || !errors.As(err, &ve) || ve.Index != 3 {
		t.Fatalf("forked entry: %v", err)
	}
	if !sb.Convicted(pid(a)) {
		t.Fatal("fork proof not kept")
	}
	ps, _ := sb.ForkProofs()
	if len(ps) != 1 {
		t.Fatalf("%d proofs", len(ps))
	}
	// The proof convinces a third store, offline.
	sc := openStore(t, testKey(3))
	if isNew, err := sc.AddForkProof(ps[0]); !isNew || err != nil {
		t.Fatalf("third store: %v %v", isNew, err)
	}
	if _, err := sc.Import(pid(a), 0, raw); !errors.Is(err, ErrFork) {
		t.Fatalf("convicted author imported: %v", err)
	}
}

func TestStoreKeepsVerifiedPrefix(t *testing.T) {
	a, b := testKey(1), testKey(2)
	raw := buildLog(t, a, b, 20)
	raw[12] = bytes.Clone(raw[12])
	raw[12][100] ^= 1
	sb := openStore(t, b)
	n, err := sb.Import(pid(a), 0, raw)
	var ve *VerifyError
	if n != 12 || !errors.As(err, &ve) || ve.Index != 12 {
		t.Fatalf("imported %d, err %v", n, err)
	}
	h, _ := sb.Head(pid(a))
	if h.Length != 12 {
		t.Fatalf("head length %d", h.Length)
	}
}

func TestStorePersists(t *testing.T) {
	a, b := testKey(1), testKey(2)
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range sampleBodies(a, b, 0) {
		if _, err := s.Append(body); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = Open(path, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Append(sampleBodies(a, b, 1)[3])
	if err != nil || e.Index != 5 {
		t.Fatalf("append after reopen: %v %v", e, err)
	}
	raw, _ := s.Raw(pid(a), 0, 100)
	if _, err := VerifyChain(pid(a), 0, Hash{}, time.Time{}, raw, ChainOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestMsgRoundTrip(t *testing.T) {
	a, b := testKey(1), testKey(2)
	raw := buildLog(t, a, b, 5)
	for _, m := range []*Msg{
		{Type: MsgHeads, Items: raw[4:]},
		WantMsg([]Want{{Author: pid(a), From: 2, Count: 3}}),
		EntriesMsg(pid(a), 0, raw),
	} {
		enc, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeMsg(enc)
		if err != nil {
			t.Fatal(err)
		}
		if d.Type != m.Type || len(d.Items) != len(m.Items) {
			t.Fatalf("round trip of %d", m.Type)
		}
	}
	if _, err := DecodeMsg(append([]byte{Version, byte(MsgWant), 0, 1, 0, 3}, 1, 2, 3)); err == nil {
		t.Fatal("short want decoded")
	}
	if _, err := DecodeMsg([]byte{Version, byte(MsgWant), 0xff, 0xff}); err == nil {
		t.Fatal("a message claiming 65535 items decoded")
	}
}

func TestLogFile(t *testing.T) {
	a := testKey(1)
	raw := buildLog(t, a, testKey(2), 30)
	author, start, got, err := DecodeLogFile(EncodeLogFile(pid(a), 0, raw))
	if err != nil || author != pid(a) || start != 0 || len(got) != 30 {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := VerifyChain(author, start, Hash{}, time.Time{}, got, ChainOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := DecodeLogFile([]byte("hello")); err == nil {
		t.Fatal("garbage decoded")
	}
}
