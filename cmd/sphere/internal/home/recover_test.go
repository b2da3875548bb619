package home

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/recovery"
)

func newHome(t *testing.T) *Home {
	t.Helper()
	h, err := Init(filepath.Join(t.TempDir(), "h"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitNode(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// peerAddr is "<multiaddr>/p2p/<id>" of another home's node.
func peerAddr(t *testing.T, port string) (string, peer.ID) {
	t.Helper()
	_, id, err := Identity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return "/ip4/127.0.0.1/tcp/" + port + "/p2p/" + peer.ID(id).String(), peer.ID(id)
}

func TestRecoveryCodeRoundTrip(t *testing.T) {
	h := newHome(t)
	root := caps.MutableWriteCap{Dir: true, Seed: [32]byte{1, 2, 3}}
	a1, id1 := peerAddr(t, "4001")
	a2, _ := peerAddr(t, "4002")
	_, self, _ := h.NodeIdentity()
	selfAddr := "/ip4/127.0.0.1/tcp/4009/p2p/" + peer.ID(self).String()
	c, err := h.RecoveryCode(root, []string{a1, selfAddr, "garbage", a2, a1})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Founder() || len(c.Contacts) != 2 {
		t.Fatalf("founder %v, %d contacts; want a founder naming 2 (not itself, no duplicates)", c.Founder(), len(c.Contacts))
	}
	text, err := recovery.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := recovery.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "new")
	nh, existed, err := Recover(dir, back)
	if err != nil || existed {
		t.Fatalf("recover into a new dir: %v, existed %v", err, existed)
	}
	for _, f := range []string{"secrets/convergence", "secrets/lease", "secrets/grid.key", "identity.key"} {
		a, _ := os.ReadFile(h.Path(f))
		b, _ := os.ReadFile(nh.Path(f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs after recovery", f)
		}
	}
	rb, err := os.ReadFile(nh.Path(RootCapFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseRootCap(rb); err != nil || got != root {
		t.Fatalf("root cap: %v, %v", got, err)
	}
	if len(nh.Config.Node.Peers) != 2 || nh.Config.Node.Peers[0] != a1 || nh.Config.Node.GridKey != "" {
		t.Fatalf("config: %+v", nh.Config.Node)
	}
	if !reflect.DeepEqual(nh.Config.Params, h.Config.Params) || nh.Config.Node.Listen[0] == "" {
		t.Fatalf("params %+v, listen %v", nh.Config.Params, nh.Config.Node.Listen)
	}

	// A member's code carries the admin; recovering it records gridKey and admin.
	h.Config.Node.GridKey = "aa" + string(bytes.Repeat([]byte("11"), 31))
	h.Config.Node.Admin = id1.String()
	mc, err := h.RecoveryCode(root, nil)
	if err != nil || mc.Founder() {
		t.Fatalf("member code: %v, founder %v", err, mc.Founder())
	}
	mh, _, err := Recover(filepath.Join(t.TempDir(), "m"), mc)
	if err != nil {
		t.Fatal(err)
	}
	if mh.Config.Node.Admin != id1.String() || mh.Config.Node.GridKey != h.Config.Node.GridKey {
		t.Fatalf("member home: admin %q gridKey %q", mh.Config.Node.Admin, mh.Config.Node.GridKey)
	}
}

func TestRecoverExistingHome(t *testing.T) {
	h := newHome(t)
	c, err := h.RecoveryCode(caps.MutableWriteCap{Dir: true, Seed: [32]byte{9}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another grid's home is refused and left alone.
	other := newHome(t)
	before, _ := os.ReadFile(other.Path("secrets", "lease"))
	if _, _, err := Recover(other.Dir, c); !errors.Is(err, ErrOtherGrid) {
		t.Fatalf("recover into another grid's home: %v, want ErrOtherGrid", err)
	}
	if after, _ := os.ReadFile(other.Path("secrets", "lease")); !bytes.Equal(before, after) {
		t.Fatal("a refused recovery changed the home")
	}
	// The same grid's home: the replaced files move aside.
	same := newHome(t)
	gk, _ := h.GridKey()
	if err := os.WriteFile(same.Path("secrets", "grid.key"), gk, 0o600); err != nil {
		t.Fatal(err)
	}
	oldLease, _ := os.ReadFile(same.Path("secrets", "lease"))
	nh, existed, err := Recover(same.Dir, c)
	if err != nil || !existed {
		t.Fatalf("recover into the same grid's home: %v, existed %v", err, existed)
	}
	moved, _ := filepath.Glob(nh.Path("replaced-*", "secrets", "lease"))
	if len(moved) != 1 {
		t.Fatalf("old lease secret not kept aside: %v", moved)
	}
	if b, _ := os.ReadFile(moved[0]); !bytes.Equal(b, oldLease) {
		t.Fatal("the kept-aside lease secret is not the old one")
	}
	if b, _ := os.ReadFile(nh.Path("secrets", "lease")); !bytes.Equal(b, c.LeaseSecret[:]) {
		t.Fatal("lease secret not replaced")
	}
}

func TestContactAddrsRefusesBadMultiaddr(t *testing.T) {
	c := &recovery.Code{Contacts: []recovery.Contact{{PubKey: [32]byte{1}, Addrs: [][]byte{{0xff, 0xff, 0xff}}}}}
	if _, err := ContactAddrs(c); !errors.Is(err, recovery.ErrFormat) {
		t.Fatalf("bad multiaddr: %v, want ErrFormat", err)
	}
}
