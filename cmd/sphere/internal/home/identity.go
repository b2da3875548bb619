package home

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/grid"
)

// Identity loads the libp2p Ed25519 identity kept in dir/identity.key,
// creating it on first use. The same identity names a store whether it is
// opened in-process or served over libp2p by `sphere up`, so share
// placement does not change between the two.
func Identity(dir string) (crypto.PrivKey, grid.ServerID, error) {
	path := filepath.Join(dir, "identity.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		priv, _, gerr := crypto.GenerateEd25519Key(rand.Reader)
		if gerr != nil {
			return nil, "", fmt.Errorf("identity: %w", gerr)
		}
		if b, err = crypto.MarshalPrivateKey(priv); err != nil {
			return nil, "", fmt.Errorf("identity: %w", err)
		}
		if err = os.MkdirAll(dir, 0o700); err == nil {
			err = writeFileDurable(path, b, 0o600)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("identity %s: %w", path, err)
	}
	priv, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("identity %s: %w", path, err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("identity %s: %w", path, err)
	}
	return priv, grid.ServerID(id), nil
}
