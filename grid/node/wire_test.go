package node

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func testPeer(t testing.TB, addrs ...string) peer.AddrInfo {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range addrs {
		ai.Addrs = append(ai.Addrs, ma.StringCast(a))
	}
	return ai
}

func TestInviteRoundTrip(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, PSKSize)
	inv := Invite{PSK: psk, Peers: []peer.AddrInfo{
		testPeer(t, "/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"),
		testPeer(t, "/dns4/example.org/tcp/1234"),
	}}
	code := inv.String()
	if !strings.HasPrefix(code, InvitePrefix) || strings.ContainsAny(code, " \n") {
		t.Fatalf("code %q: want one word with prefix %q", code, InvitePrefix)
	}
	got, err := ParseInvite("  " + code + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.PSK, psk) || len(got.Peers) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i := range inv.Peers {
		if got.Peers[i].ID != inv.Peers[i].ID || len(got.Peers[i].Addrs) != len(inv.Peers[i].Addrs) {
			t.Fatalf("peer %d: got %v want %v", i, got.Peers[i], inv.Peers[i])
		}
		for j := range inv.Peers[i].Addrs {
			if !got.Peers[i].Addrs[j].Equal(inv.Peers[i].Addrs[j]) {
				t.Fatalf("peer %d addr %d: got %v want %v", i, j, got.Peers[i].Addrs[j], inv.Peers[i].Addrs[j])
			}
		}
	}
}

func TestInviteVector(t *testing.T) {
	// The spec's worked example (docs/spec/node.md): key 32×0x07, token
	// 16×0x09, expiry 1767225600 (2026-01-01), one peer with the
	// identity-multihash id of a fixed Ed25519 key and one address.
	priv, err := crypto.UnmarshalEd25519PrivateKey(bytes.Repeat([]byte{1}, 64))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	inv := Invite{PSK: bytes.Repeat([]byte{7}, PSKSize), Expires: 1767225600,
		Peers: []peer.AddrInfo{{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}}}}
	copy(inv.Token[:], bytes.Repeat([]byte{9}, TokenSize))
	b, err := inv.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// 1 version + 32 key + 16 token + 8 expiry + 2 count + 1 idLen + 38 id + 1 naddrs + 1 alen + 8 addr
	if len(b) != 108 {
		t.Fatalf("size %d, want 108", len(b))
	}
	if b[0] != 2 || b[57] != 0 || b[58] != 1 || b[59] != 38 || b[98] != 1 || b[99] != 8 {
		t.Fatalf("layout: % x", b)
	}
	const want = "sphere:invite:aidqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqocijbeeqscijbeeqscijbeeqsciaaaaaa2kvxeaaaajgaasaqaiseaaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaiiar7qaaabayh2c"
	if got := inv.String(); got != want {
		t.Fatalf("invite code:\n got %s\nwant %s", got, want)
	}
	t.Logf("binary: %x", b)
}

func TestInviteErrors(t *testing.T) {
	good := Invite{PSK: make([]byte, PSKSize), Peers: []peer.AddrInfo{testPeer(t, "/ip4/127.0.0.1/tcp/1")}}
	raw, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const fixed = 1 + PSKSize + TokenSize + 8
	enc := func(b []byte) string { return InvitePrefix + strings.ToLower(b32.EncodeToString(b)) }
	cases := map[string]string{
		"no prefix":     "hello",
		"bad base32":    InvitePrefix + "!!!",
		"empty":         InvitePrefix,
		"old version":   enc(append([]byte{1}, raw[1:]...)),
		"bad version":   enc(append([]byte{9}, raw[1:]...)),
		"short key":     enc(raw[:10]),
		"no expiry":     enc(raw[:fixed-3]),
		"truncated":     enc(raw[:len(raw)-3]),
		"trailing":      enc(append(append([]byte{}, raw...), 0)),
		"no peers":      enc(append(append([]byte{}, raw[:fixed]...), 0, 0)),
		"too many":      enc(append(append([]byte{}, raw[:fixed]...), 0xff, 0xff)),
		"too long code": InvitePrefix + strings.Repeat("a", maxInviteLen),
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseInvite(code); err == nil {
				t.Fatalf("ParseInvite(%.40q) succeeded", code)
			}
		})
	}
}

func FuzzParseInvite(f *testing.F) {
	inv := Invite{PSK: make([]byte, PSKSize), Expires: 1 << 40, Peers: []peer.AddrInfo{testPeer(f, "/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/2")}}
	f.Add(inv.String())
	f.Add(InvitePrefix + "aaaa")
	f.Add("")
	f.Fuzz(func(t *testing.T, code string) {
		got, err := ParseInvite(code)
		if err != nil {
			return
		}
		again, err := ParseInvite(got.String())
		if err != nil || !bytes.Equal(again.PSK, got.PSK) || again.Token != got.Token ||
			again.Expires != got.Expires || len(again.Peers) != len(got.Peers) {
			t.Fatalf("round trip of %q: %v", code, err)
		}
	})
}

func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 7})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := readMsg(bytes.NewReader(b), 1024)
		if err == nil && len(msg) > 1024 {
			t.Fatalf("message of %d bytes beyond the bound", len(msg))
		}
	})
}
