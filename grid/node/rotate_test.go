package node

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestOfflineHandOverPushed: an admin whose node is stopped signs its
// handover with HandOver; PushList gives it to a running member, which
// then refuses the old admin's identity and serves the new one.
func TestOfflineHandOverPushed(t *testing.T) {
	psk := newPSK(t)
	oldKey := newKey(t)
	admin := startNode(t, Config{Identity: oldKey, GridKey: psk, StorageDir: t.TempDir()})
	m := startMember(t, admin, Config{StorageDir: t.TempDir()})
	waitList(t, m.Node, serialOf(admin.Node))
	cur := admin.MemberList()
	admin.stop()

	if _, _, err := HandOver(cur, newKey(t), idOf(t, newKey(t)), time.Now().Unix()); err == nil {
		t.Fatal("a non-admin key signed a handover")
	}
	newAdmin := newKey(t)
	l, raw, err := HandOver(cur, oldKey, idOf(t, newAdmin), time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	if l.Admin != idOf(t, newAdmin) || l.Has(idOf(t, oldKey)) || !l.Has(m.ID()) {
		t.Fatalf("handover list: admin %s members %v", l.Admin, l.IDs())
	}
	h := hostFor(t, newAdmin, psk)
	target := peer.AddrInfo{ID: m.ID(), Addrs: m.Host().Addrs()}
	if got := PushList(context.Background(), h, raw, []peer.AddrInfo{target}); got != 1 {
		t.Fatalf("PushList: %d members took the list, want 1", got)
	}
	if serialOf(m.Node) != l.Serial || m.IsMember(idOf(t, oldKey)) || !m.IsMember(idOf(t, newAdmin)) {
		t.Fatalf("member after the push: serial %d, old member %v, new member %v", serialOf(m.Node),
			m.IsMember(idOf(t, oldKey)), m.IsMember(idOf(t, newAdmin)))
	}
	// The old identity can no longer store on the member.
	if werr, _ := tryStore(hostFor(t, oldKey, psk), m.Node, 1); werr == nil {
		t.Fatal("the old admin identity stored after the handover")
	}
	// A garbage list is pushed to no one.
	if got := PushList(context.Background(), h, []byte{1, 2, 3}, []peer.AddrInfo{target}); got != 0 {
		t.Fatalf("PushList of garbage: %d", got)
	}
}

// TestSwitchRequestChecked: the control API's switch refuses an invite of
// the node's own grid and a list that does not admit the node; a good
// request makes Serve return the *SwitchGrid.
func TestSwitchRequestChecked(t *testing.T) {
	a := startNode(t, Config{GridKey: newPSK(t)})
	other := startNode(t, Config{GridKey: newPSK(t)})
	own, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.requestSwitch(SwitchRequest{Invite: own.String()}); err != nil {
		t.Fatal(err) // no list: the new node redeems
	}
	if err := a.requestSwitch(SwitchRequest{Invite: own.String()}); err == nil {
		t.Fatal("switch to the node's own grid accepted")
	}
	// A list of a's grid, signed by a, that does not admit b.
	b := startNode(t, Config{GridKey: newPSK(t)})
	raw, err := a.MemberList().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.requestSwitch(SwitchRequest{Invite: own.String(), Members: raw}); err == nil {
		t.Fatal("switch with a list that does not admit the node accepted")
	}
	if err := b.requestSwitch(SwitchRequest{Invite: "sphere-invite-garbage"}); err == nil {
		t.Fatal("switch with a bad invite accepted")
	}
	select {
	case err := <-other.done:
		sw, ok := err.(*SwitchGrid)
		if !ok || sw.Invite.Admin().ID != a.ID() {
			t.Fatalf("Serve returned %v, want a switch to %s", err, a.ID())
		}
		other.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return for the switch")
	}
}

// TestSwitchOverControlWithLargeList: POST /v1/switch carries the member
// list that admitted the node; the list of a full grid (maxMembers members,
// some removed: over 64 KiB in base64) must fit the request's bound, and a body beyond
// that bound is refused with a clear error.
func TestSwitchOverControlWithLargeList(t *testing.T) {
	adminKey, psk := newKey(t), newPSK(t)
	a := startNode(t, Config{GridKey: psk, Identity: adminKey})
	b := startNode(t, Config{GridKey: newPSK(t)})
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewMemberList(psk, adminKey, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A full grid with churn: maxMembers members and 400 removed.
	newIDs := func(n int) []peer.ID {
		var out []peer.ID
		for range n {
			out = append(out, idOf(t, newKey(t)))
		}
		return out
	}
	gone := newIDs(400)
	full := first.Admit(2, b.ID()).Admit(2, gone...).Admit(2, newIDs(maxMembers-2-len(gone))...)
	l, err := first.Next(full.Remove(gone...).Admit(3, newIDs(len(gone))...), adminKey, 3)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	post := func(body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/switch", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		b.controlHandler("tok").ServeHTTP(w, req)
		return w
	}
	// Over the bound: refused, nothing switches.
	huge, _ := json.Marshal(SwitchRequest{Invite: inv.String(), Members: make([]byte, 4*maxMemberListLen)})
	if w := post(huge); w.Code != http.StatusBadRequest {
		t.Fatalf("oversized switch request: %d %s", w.Code, w.Body)
	}
	body, _ := json.Marshal(SwitchRequest{Invite: inv.String(), Members: raw})
	if len(body) <= maxControlBody {
		t.Fatalf("test list too small: %d bytes", len(body))
	}
	if w := post(body); w.Code != http.StatusOK {
		t.Fatalf("switch with a %d-member list: %d %s", len(l.Members), w.Code, w.Body)
	}
	select {
	case err := <-b.done:
		if sw, ok := err.(*SwitchGrid); !ok || !bytes.Equal(sw.Members, raw) {
			t.Fatalf("Serve returned %v, want the switch with the list", err)
		}
		b.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return for the switch")
	}
}
