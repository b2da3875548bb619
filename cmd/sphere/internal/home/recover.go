package home

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/recovery"
)

// RootCapFile is the file in the home holding the drive's root directory
// write cap.
const RootCapFile = "root.cap"

// ErrOtherGrid: a recovery code is for another grid than the home's.
var ErrOtherGrid = errors.New("the recovery code is for another grid")

// RecoveryCode gathers what a recovery code holds from the home: its
// secrets, identity, grid key and encoding, the root write cap root and
// contacts (multiaddrs ending in /p2p/<id>; those that do not fit the
// code are skipped, at most recovery.MaxContacts kept).
func (h *Home) RecoveryCode(root caps.MutableWriteCap, contacts []string) (*recovery.Code, error) {
	c := &recovery.Code{RootSeed: root.Seed}
	p := h.Config.Params
	if p.K > 255 || p.Happy > 255 || p.N > 255 || p.SegmentSize < 0 || int64(p.SegmentSize) > 1<<32-1 {
		return nil, fmt.Errorf("recovery code: encoding k=%d happy=%d n=%d does not fit", p.K, p.Happy, p.N)
	}
	c.Params = recovery.Params{K: uint8(p.K), Happy: uint8(p.Happy), N: uint8(p.N), SegmentSize: uint32(p.SegmentSize)}
	for name, dst := range map[string]*[recovery.SecretSize]byte{"convergence": &c.Convergence, "lease": &c.LeaseSecret} {
		b, err := h.Secret(name)
		if err != nil {
			return nil, err
		}
		if len(b) != recovery.SecretSize {
			return nil, fmt.Errorf("recovery code: secrets/%s: size: want=%d have=%d", name, recovery.SecretSize, len(b))
		}
		copy(dst[:], b)
	}
	priv, _, err := h.NodeIdentity()
	if err != nil {
		return nil, err
	}
	if priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("recovery code: node identity is %v, want Ed25519", priv.Type())
	}
	raw, err := priv.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("recovery code: node identity: %v", err)
	}
	copy(c.Identity[:], raw[:ed25519.SeedSize])
	gk, err := h.GridKey()
	if err != nil {
		return nil, err
	}
	copy(c.GridKey[:], gk)
	if h.Config.Node.GridKey == "" {
		c.Flags |= recovery.FlagFounder
	} else if h.Config.Node.Admin != "" {
		if err := adminKey(h.Config.Node.Admin, &c.Admin); err != nil {
			return nil, err
		}
	}
	self, _ := peer.IDFromPrivateKey(priv)
	infos := map[peer.ID]*recovery.Contact{}
	var order []peer.ID
	for _, s := range contacts {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil || ai.ID == self {
			continue
		}
		pub, err := ai.ID.ExtractPublicKey()
		if err != nil || pub.Type() != crypto.Ed25519 {
			continue
		}
		ct, ok := infos[ai.ID]
		if !ok {
			if len(order) == recovery.MaxContacts {
				continue
			}
			pr, err := pub.Raw()
			if err != nil || len(pr) != recovery.SecretSize {
				continue
			}
			ct = &recovery.Contact{}
			copy(ct.PubKey[:], pr)
			infos[ai.ID] = ct
			order = append(order, ai.ID)
		}
		for _, a := range ai.Addrs {
			if b := a.Bytes(); len(ct.Addrs) < recovery.MaxContactAddrs && len(b) <= recovery.MaxAddrLen &&
				!slices.ContainsFunc(ct.Addrs, func(x []byte) bool { return bytes.Equal(x, b) }) {
				ct.Addrs = append(ct.Addrs, b)
			}
		}
	}
	for _, id := range order {
		if len(infos[id].Addrs) > 0 {
			c.Contacts = append(c.Contacts, *infos[id])
		}
	}
	return c, nil
}

// ContactAddrs turns a code's contacts into "<multiaddr>/p2p/<id>"
// strings, refusing addresses that are not valid multiaddrs.
func ContactAddrs(c *recovery.Code) ([]string, error) {
	var out []string
	for i, ct := range c.Contacts {
		pub, err := crypto.UnmarshalEd25519PublicKey(ct.PubKey[:])
		if err != nil {
			return nil, fmt.Errorf("recovery code: contact %d: %w", i+1, err)
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("recovery code: contact %d: %w", i+1, err)
		}
		for _, b := range ct.Addrs {
			a, err := ma.NewMultiaddrBytes(b)
			if err != nil {
				return nil, fmt.Errorf("recovery code: contact %d: address: %w: %w", i+1, err, recovery.ErrFormat)
			}
			out = append(out, a.String()+"/p2p/"+id.String())
		}
	}
	return out, nil
}

// identityKey returns the libp2p private key of an Ed25519 seed.
func identityKey(seed [recovery.SecretSize]byte) (crypto.PrivKey, error) {
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
}

// Recover makes dir the home a recovery code describes. A new dir gets a
// fresh home (listen port, no local grid). An existing home must be in the
// code's grid (else ErrOtherGrid); the files the code replaces (secrets,
// identity, root cap) are first moved to replaced-<time>/ in the home, so
// nothing is lost. The caller makes sure no node runs on dir.
func Recover(dir string, c *recovery.Code) (h *Home, existed bool, err error) {
	contacts, err := ContactAddrs(c)
	if err != nil {
		return nil, false, err
	}
	priv, err := identityKey(c.Identity)
	if err != nil {
		return nil, false, fmt.Errorf("recovery code: identity: %w", err)
	}
	params := caps.Params{K: int(c.Params.K), Happy: int(c.Params.Happy), N: int(c.Params.N), SegmentSize: int(c.Params.SegmentSize)}
	if err := params.Validate(); err != nil {
		return nil, false, fmt.Errorf("recovery code: %w", err)
	}
	h, err = Open(dir)
	switch {
	case err == nil:
		existed = true
		gk, err := h.GridKey()
		if err != nil {
			return nil, true, err
		}
		if !bytes.Equal(gk, c.GridKey[:]) {
			return nil, true, fmt.Errorf("%s is a home in grid %s; the code is for grid %s (recover into a new home, e.g. SPHERE_HOME=DIR sphere recover): %w",
				dir, recovery.GridID(gk), recovery.GridID(c.GridKey[:]), ErrOtherGrid)
		}
		if err := h.moveAside(); err != nil {
			return nil, true, err
		}
	case errors.Is(err, ErrNoHome):
		if h, err = Init(dir, 0); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, err
	}
	h.Config.Params = params
	if err := h.writeSecret("convergence", c.Convergence[:]); err != nil {
		return nil, existed, err
	}
	if err := h.writeSecret("lease", c.LeaseSecret[:]); err != nil {
		return nil, existed, err
	}
	kb, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, existed, fmt.Errorf("recover: identity: %w", err)
	}
	if err := writeFileSync(h.Path("identity.key"), kb); err != nil {
		return nil, existed, err
	}
	if c.Founder() {
		if err := h.writeSecret("grid.key", c.GridKey[:]); err != nil {
			return nil, existed, err
		}
		h.Config.Node.GridKey, h.Config.Node.Admin = "", ""
	} else {
		h.Config.Node.GridKey = hex.EncodeToString(c.GridKey[:])
		h.Config.Node.Admin = ""
		if c.Admin != ([recovery.SecretSize]byte{}) { // zero: made before member lists
			pub, err := crypto.UnmarshalEd25519PublicKey(c.Admin[:])
			if err != nil {
				return nil, existed, fmt.Errorf("recovery code: admin: %w", err)
			}
			id, err := peer.IDFromPublicKey(pub)
			if err != nil {
				return nil, existed, fmt.Errorf("recovery code: admin: %w", err)
			}
			h.Config.Node.Admin = id.String()
		}
	}
	root := caps.MutableWriteCap{Dir: true, Seed: c.RootSeed}
	if err := writeFileSync(h.Path(RootCapFile), []byte(root.String()+"\n")); err != nil {
		return nil, existed, err
	}
	for _, a := range contacts {
		if !slices.Contains(h.Config.Node.Peers, a) {
			h.Config.Node.Peers = append(h.Config.Node.Peers, a)
		}
	}
	if err := InitNode(h); err != nil { // listen port, own grid key if a member; saves
		return nil, existed, err
	}
	return h, existed, nil
}

// moveAside moves the files a recovery replaces into replaced-<time>/.
func (h *Home) moveAside() error {
	dst := h.Path("replaced-" + time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(filepath.Join(dst, "secrets"), 0o700); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, f := range []string{"identity.key", RootCapFile, "secrets/convergence", "secrets/lease", "secrets/grid.key", "caps"} {
		err := os.Rename(h.Path(f), filepath.Join(dst, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("recover: move %s aside: %w", f, err)
		}
	}
	return nil
}

func (h *Home) writeSecret(name string, b []byte) error {
	if err := os.MkdirAll(h.Path("secrets"), 0o700); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	return writeFileSync(h.Path("secrets", name), b)
}

// writeFileSync writes path atomically (temp file, fsync, rename), mode 0600.
func writeFileSync(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ParseRootCap reads a root.cap file's content.
func ParseRootCap(b []byte) (caps.MutableWriteCap, error) {
	c, err := caps.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return caps.MutableWriteCap{}, err
	}
	w, ok := c.(caps.MutableWriteCap)
	if !ok {
		if p, ok := c.(*caps.MutableWriteCap); ok {
			w = *p
		}
	}
	if !w.Dir {
		return caps.MutableWriteCap{}, fmt.Errorf("root cap: want a dir-rw cap, have %s", c.Kind())
	}
	return w, nil
}

// adminKey puts the Ed25519 public key of the peer id s into dst.
func adminKey(s string, dst *[recovery.SecretSize]byte) error {
	id, err := peer.Decode(s)
	if err != nil {
		return fmt.Errorf("config node.admin: %w", err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("config node.admin: %w", err)
	}
	raw, err := pub.Raw()
	if err != nil || pub.Type() != crypto.Ed25519 || len(raw) != recovery.SecretSize {
		return fmt.Errorf("config node.admin: want an Ed25519 peer id")
	}
	copy(dst[:], raw)
	return nil
}

// ControlFileIn is ControlFile for a home not opened (it may not exist).
func ControlFileIn(dir string) string { return (&Home{Dir: dir}).ControlFile() }

// ReplaceSecrets puts new convergence and lease secrets and a new root
// write cap in the home (each file replaced atomically), as rotation does.
func (h *Home) ReplaceSecrets(convergence, lease []byte, root caps.MutableWriteCap) error {
	if err := h.writeSecret("convergence", convergence); err != nil {
		return err
	}
	if err := h.writeSecret("lease", lease); err != nil {
		return err
	}
	return writeFileSync(h.Path(RootCapFile), []byte(root.String()+"\n"))
}
