package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync/atomic"
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
	h, err := newHost(newKey(t), psk, []string{loopback}, false, nil)
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

// The vector in docs/spec/node.md (grid TLS).
func TestGridTLSMACVector(t *testing.T) {
	psk, ekm := make([]byte, 32), make([]byte, 32)
	for i := range 32 {
		psk[i], ekm[i] = byte(i), byte(32+i)
	}
	for role, want := range map[string]string{
		"client": "1ea955954573377abf3634c4b917f464938ab38746bbf5f64553b7de2ef19e67",
		"server": "80dfec9ddba597b81fd650315e3e71474de53a538c5cb96aac140aa1d037017a",
	} {
		if got := hex.EncodeToString(gridTLSMAC(psk, role, ekm)); got != want {
			t.Errorf("mac(%q) = %s, want %s", role, got, want)
		}
	}
}

// countConn counts Writes reaching the TCP connection.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(p) }

// One large Write on a grid TLS connection reaches TCP as a few writes
// (not one per 16 KiB record) and arrives intact, also past batchFlush.
func TestGridTLSBatchesRecords(t *testing.T) {
	psk := newPSK(t)
	serverKey := newKey(t)
	serverID, err := peer.IDFromPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	server, err := newGridTLS(psk)(GridTLSID, serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := newGridTLS(psk)(GridTLSID, newKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := make([]byte, 3*batchFlush+12345)
	for i := range msg {
		msg[i] = byte(i * 31)
	}
	type result struct {
		got []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		sc, err := server.SecureInbound(ctx, c, "")
		if err != nil {
			done <- result{err: err}
			return
		}
		got := make([]byte, 2*len(msg))
		_, err = io.ReadFull(sc, got)
		done <- result{got, err}
	}()
	tcp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countConn{Conn: tcp}
	defer cc.Close()
	sc, err := client.SecureOutbound(ctx, cc, serverID)
	if err != nil {
		t.Fatal(err)
	}
	before := cc.writes.Load()
	if _, err := sc.Write(msg[:200<<10]); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load() - before; n != 1 {
		t.Errorf("a 200 KiB write took %d TCP writes, want 1", n)
	}
	if _, err := sc.Write(msg[200<<10:]); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write(msg); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !bytes.Equal(r.got[:len(msg)], msg) || !bytes.Equal(r.got[len(msg):], msg) {
		t.Fatal("bytes differ after the grid TLS connection")
	}
}
