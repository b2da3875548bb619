package home

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/grid"
)

// GridKeySize is the size of a grid key (the secret that admits hosts to
// a grid; see docs/spec/node.md).
const GridKeySize = 32

// InitNode prepares the node part of a home: listen addresses on a free
// loopback TCP port (so several homes run nodes on one machine without
// flags), the node's identity and the home's own grid key. It keeps what
// is already there and saves the config.
func InitNode(h *Home) error {
	if _, _, err := h.NodeIdentity(); err != nil {
		return fmt.Errorf("init node: %w", err)
	}
	if _, err := os.Stat(h.Path("secrets", "grid.key")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(h.Path("secrets"), 0o700); err != nil {
			return fmt.Errorf("init node: %w", err)
		}
		if err := writeRandom(h.Path("secrets", "grid.key"), GridKeySize); err != nil {
			return fmt.Errorf("init node: %w", err)
		}
	}
	if len(h.Config.Node.Listen) == 0 {
		port, err := freeTCPPort()
		if err != nil {
			return fmt.Errorf("init node: %w", err)
		}
		h.Config.Node.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
	}
	return h.Save()
}

// NodeReady reports whether InitNode has run on the home.
func (h *Home) NodeReady() bool {
	_, err := os.Stat(h.Path("secrets", "grid.key"))
	return err == nil && len(h.Config.Node.Listen) > 0
}

// freeTCPPort asks the kernel for a free port on 127.0.0.1. Another
// process may take it before the node binds it; the node then fails with
// "address in use" and the user edits config.json.
func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// NodeIdentity is the node's libp2p identity (identity.key in the home).
func (h *Home) NodeIdentity() (crypto.PrivKey, grid.ServerID, error) {
	return Identity(h.Dir)
}

// GridKey returns the key of the grid the node belongs to: the one joined
// by invite (config node.gridKey), else the home's own (secrets/grid.key).
func (h *Home) GridKey() ([]byte, error) {
	if h.Config.Node.GridKey != "" {
		k, err := hex.DecodeString(h.Config.Node.GridKey)
		if err != nil || len(k) != GridKeySize {
			return nil, fmt.Errorf("config node.gridKey: want %d hex bytes", GridKeySize)
		}
		return k, nil
	}
	k, err := h.Secret("grid.key")
	if err != nil {
		return nil, err
	}
	if len(k) != GridKeySize {
		return nil, fmt.Errorf("secrets/grid.key: size: want=%d have=%d", GridKeySize, len(k))
	}
	return k, nil
}

// ControlFile is node.json: the running node's control address and token.
func (h *Home) ControlFile() string { return h.Path("node.json") }

// PeersFile is peers.json: the members' signed address records.
func (h *Home) PeersFile() string { return h.Path("peers.json") }

// MembersFile is the grid's signed member list the node holds.
func (h *Home) MembersFile() string { return h.Path("members") }

// InvitesFile is invites.json: the invites this home issued as admin
// (hashes of their tokens).
func (h *Home) InvitesFile() string { return h.Path("invites.json") }

// LockFile is held by the running node (one node per home).
func (h *Home) LockFile() string { return h.Path("node.lock") }

// JoinFile holds an invite the node redeems when it starts.
func (h *Home) JoinFile() string { return h.Path("join.pending") }

// AdminID returns the grid admin's peer id from config ("" : this home's
// own node is the admin of its own grid).
func (h *Home) AdminID() (peer.ID, error) {
	if h.Config.Node.Admin == "" {
		return "", nil
	}
	id, err := peer.Decode(h.Config.Node.Admin)
	if err != nil {
		return "", fmt.Errorf("config node.admin: %w", err)
	}
	return id, nil
}

// StorageDir is where the node stores shares for the grid.
func (h *Home) StorageDir() string { return h.Path("storage") }

// CapsFile lists caps this home put, one a line (renewed by `sphere renew`).
func (h *Home) CapsFile() string { return h.Path("caps") }
