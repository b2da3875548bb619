package node

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// Membership is enforced twice: the connection gater refuses peers the
// member list removed before any stream exists, and every storage and
// member-exchange stream is served only to listed members (joiners, who
// hold the grid key but are not members yet, can reach only JoinProtocol).

// gater refuses connections with peers the member list removed.
type gater struct {
	m atomic.Pointer[membership]
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func (g *gater) refuse(p peer.ID) bool {
	m := g.m.Load()
	return m != nil && m.removed(p)
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return !g.refuse(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.refuse(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.refuse(p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// gatedHost is a host whose stream handlers run only for allowed peers;
// the storage service is given one so it never serves a non-member.
type gatedHost struct {
	host.Host
	allow func(peer.ID) bool
}

func (g gatedHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	g.Host.SetStreamHandler(pid, func(s network.Stream) {
		if !g.allow(s.Conn().RemotePeer()) {
			_ = s.Reset()
			return
		}
		handler(s)
	})
}

func (g gatedHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	g.Host.SetStreamHandlerMatch(pid, match, func(s network.Stream) {
		if !g.allow(s.Conn().RemotePeer()) {
			_ = s.Reset()
			return
		}
		handler(s)
	})
}

// ErrHomeLocked means another node runs on the home.
var ErrHomeLocked = errors.New("another node is running for this home")

// LockHome takes an exclusive lock on path (created 0600) without
// waiting, and writes this process's pid into it. Only one node per home
// runs: the lock is taken before anything listens, and the kernel drops it
// when the process dies, however it dies.
func LockHome(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		raw, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(raw))
			if _, perr := strconv.Atoi(pid); perr == nil {
				return nil, fmt.Errorf("%w (pid %s, lock %s)", ErrHomeLocked, pid, path)
			}
			return nil, fmt.Errorf("%w (lock %s)", ErrHomeLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// HomeLocked reports whether a live process holds the lock at path.
func HomeLocked(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
