// Package home manages a Sphere node's home directory: its configuration,
// secrets, identity and the embedded local grid's stores.
package home

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sphere-grid/sphere/caps"
)

// ConfigVersion is the version of config.json this code writes.
const ConfigVersion = 1

// Config is config.json in the home directory. Fields are added by the
// parts of Sphere that need them; unknown fields are kept by JSON's rules.
type Config struct {
	Version int         `json:"version"`
	Params  caps.Params `json:"params"`
	// LocalServers is the number of disk-backed servers of the embedded
	// local grid under servers/ (used when no node is running and the home
	// has not joined a grid).
	LocalServers int `json:"localServers"`
	// Node holds the libp2p node's settings.
	Node NodeConfig `json:"node"`
}

// NodeConfig is the node part of Config.
type NodeConfig struct {
	// Listen are libp2p multiaddrs the node listens on (ports chosen at init).
	Listen []string `json:"listen,omitempty"`
	// Quota is the bytes this node offers to store for others (0: no limit).
	Quota int64 `json:"quota,omitempty"`
	// Peers are peers joined via invites: "<multiaddr>/p2p/<peer id>".
	Peers []string `json:"peers,omitempty"`
	// GridKey is the hex private-network key of the grid this node joined
	// (empty: the node's own grid, key in secrets/grid.key).
	GridKey string `json:"gridKey,omitempty"`
	// Admin is the peer id of the grid's admin, whose signature on the
	// member list this node trusts (set by join; empty: this home founded
	// its grid and its node is the admin).
	Admin string `json:"admin,omitempty"`
	// DHT switches on Kademlia discovery among grid members.
	DHT bool `json:"dht,omitempty"`
	// HolePunching switches on libp2p NAT hole punching.
	HolePunching bool `json:"holePunching,omitempty"`
}

// Home is an opened home directory.
type Home struct {
	Dir    string
	Config Config
}

// ErrNoHome means the directory has not been initialised with `sphere init`.
var ErrNoHome = errors.New("no sphere home here (run `sphere init`)")

// DefaultDir returns $SPHERE_HOME, else $XDG_DATA_HOME/sphere, else
// ~/.local/share/sphere.
func DefaultDir() (string, error) {
	if d := os.Getenv("SPHERE_HOME"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "sphere"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("home directory: %w", err)
	}
	return filepath.Join(h, ".local", "share", "sphere"), nil
}

// Path joins elem under the home directory.
func (h *Home) Path(elem ...string) string {
	return filepath.Join(append([]string{h.Dir}, elem...)...)
}

// ServerDir returns the directory of local server i.
func (h *Home) ServerDir(i int) string { return h.Path("servers", fmt.Sprintf("%02d", i)) }

// Init creates a home in dir. It fails if one exists already.
func Init(dir string, localServers int) (*Home, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return nil, fmt.Errorf("init %s: already initialised", dir)
	}
	h := &Home{Dir: dir, Config: Config{
		Version: ConfigVersion, Params: caps.DefaultParams(), LocalServers: localServers,
	}}
	for _, d := range []string{dir, h.Path("secrets"), h.Path("servers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	for _, name := range []string{"convergence", "lease"} {
		if err := writeRandom(h.Path("secrets", name), 32); err != nil {
			return nil, err
		}
	}
	for i := 0; i < localServers; i++ {
		if err := os.MkdirAll(h.ServerDir(i), 0o700); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	if err := h.Save(); err != nil {
		return nil, err
	}
	return h, nil
}

// Open opens the home in dir.
func Open(dir string) (*Home, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoHome)
	}
	if err != nil {
		return nil, fmt.Errorf("open home: %w", err)
	}
	h := &Home{Dir: dir}
	if err := json.Unmarshal(b, &h.Config); err != nil {
		return nil, fmt.Errorf("open home: config.json: %w", err)
	}
	if h.Config.Version != ConfigVersion {
		return nil, fmt.Errorf("open home: config.json version: want=%d have=%d", ConfigVersion, h.Config.Version)
	}
	return h, nil
}

// Save writes config.json atomically.
func (h *Home) Save() error {
	b, err := json.MarshalIndent(h.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	tmp := h.Path("config.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(tmp, h.Path("config.json")); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}

// Secret reads secrets/<name>.
func (h *Home) Secret(name string) ([]byte, error) {
	b, err := os.ReadFile(h.Path("secrets", name))
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return b, nil
}

func writeRandom(path string, n int) error {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("random secret: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	return nil
}
