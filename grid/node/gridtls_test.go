package node

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

func listeningHost(t *testing.T, psk []byte) host.Host {
	t.Helper()
	h, err := newHost(newKey(t), psk, []string{loopback}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func hostInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

// connSecurity connects a to b and returns the security protocol chosen.
func connSecurity(t *testing.T, a, b host.Host) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, hostInfo(b)); err != nil {
		t.Fatalf("connect: %v", err)
	}
	conns := a.Network().ConnsToPeer(b.ID())
	if len(conns) == 0 {
		t.Fatal("no connection after Connect")
	}
	return string(conns[0].ConnState().Security)
}

func TestGridTLSIsPreferred(t *testing.T) {
	psk := newPSK(t)
	a, b := listeningHost(t, psk), listeningHost(t, psk)
	if got := connSecurity(t, a, b); got != string(GridTLSID) {
		t.Fatalf("security %q, want %q", got, GridTLSID)
	}
	// Streams work over it.
	b.SetStreamHandler("/test/echo", func(s network.Stream) { _, _ = io.Copy(s, s); s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.NewStream(ctx, b.ID(), "/test/echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func TestNoiseOnlyPeerStillConnects(t *testing.T) {
	psk := newPSK(t)
	a := listeningHost(t, psk)
	t.Setenv("SPHERE_GRID_SECURITY", "noise")
	old := listeningHost(t, psk)
	if got := connSecurity(t, old, a); got != "/noise" {
		t.Fatalf("security %q, want /noise", got)
	}
}

func TestGridTLSWithoutGridKeyRefused(t *testing.T) {
	a := listeningHost(t, newPSK(t))
	b := listeningHost(t, newPSK(t)) // another grid
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Connect(ctx, hostInfo(a)); err == nil {
		t.Fatal("a host with another grid key connected")
	}
	if n := len(a.Network().ConnsToPeer(b.ID())); n != 0 {
		t.Fatalf("%d connections to a host with another grid key", n)
	}
}

func TestPlainTLSPeerRefused(t *testing.T) {
	a := listeningHost(t, newPSK(t))
	h, err := libp2p.New(libp2p.Identity(newKey(t)), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, hostInfo(a)); err == nil {
		t.Fatal("a plain TLS host without the grid key connected")
	}
}

// A peer without the key that completes TLS and echoes our confirmation
// back (a reflection) must be refused: the MACs are bound to the role.
func TestGridTLSReflectionRefused(t *testing.T) {
	serverKey := newKey(t)
	serverID, err := peer.IDFromPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	server, err := newGridTLS(newPSK(t))(GridTLSID, serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := libp2ptls.New(GridTLSID, newKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = server.SecureInbound(ctx, c, "")
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := attacker.SecureOutbound(ctx, c, serverID)
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	mac := make([]byte, 32)
	if _, err := io.ReadFull(sc, mac); err != nil {
		t.Fatalf("read server confirmation: %v", err)
	}
	if _, err := sc.Write(mac); err != nil {
		t.Fatalf("reflect: %v", err)
	}
	if err := <-done; !errors.Is(err, errGridKey) {
		t.Fatalf("server accepted a reflected confirmation: err=%v", err)
	}
}

func TestGridTLSMACBindsRoleAndKey(t *testing.T) {
	ekm := make([]byte, 32)
	k1, k2 := newPSK(t), newPSK(t)
	c, s := gridTLSMAC(k1, "client", ekm), gridTLSMAC(k1, "server", ekm)
	if string(c) == string(s) {
		t.Fatal("client and server MACs equal: a peer could reflect ours")
	}
	if string(c) == string(gridTLSMAC(k2, "client", ekm)) {
		t.Fatal("MAC does not depend on the grid key")
	}
	ekm[0] ^= 1
	if string(c) == string(gridTLSMAC(k1, "client", ekm)) {
		t.Fatal("MAC does not depend on the session")
	}
}
