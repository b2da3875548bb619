package main

// sphere recovery --rotate: new secrets, the tree re-linked under new
// directory caps, leases moved to the new lease secret.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/node"
)

// rotation is what --rotate did.
type rotation struct {
	Directories  int    `json:"directories"`  // re-created under new write caps
	Files        int    `json:"files"`        // leases renewed under the new secret
	RenewFailed  int    `json:"renewFailed"`  // files whose new lease failed (old lease kept)
	Cancelled    int    `json:"cancelled"`    // old-secret leases dropped
	CancelFailed int    `json:"cancelFailed"` // servers that could not drop one
	Replaced     string `json:"replaced"`     // where the old secrets went
	Membership   string `json:"membership"`   // what became of the node identity
	// IdentityFailed: the secrets were rotated but not the identity.
	IdentityFailed bool `json:"identityFailed,omitempty"`
}

func (r *rotation) print(w io.Writer) {
	fmt.Fprintf(w, "Rotated: %d directories re-linked under new caps, %d files' leases moved to the new secret", r.Directories, r.Files)
	if r.RenewFailed > 0 {
		fmt.Fprintf(w, " (%d could not be renewed and keep their old lease: run 'sphere recovery --rotate' again when more servers are up)", r.RenewFailed)
	}
	fmt.Fprintf(w, ".\nDropped %d old-secret leases", r.Cancelled)
	if r.CancelFailed > 0 {
		fmt.Fprintf(w, "; %d servers could not drop theirs (those run out at the end of their term)", r.CancelFailed)
	}
	fmt.Fprintf(w, ".\nThe old secrets are in %s (delete it once the new code is safe).\n", r.Replaced)
	if r.IdentityFailed {
		fmt.Fprintf(w, "WARNING: %s\n", r.Membership)
	} else {
		fmt.Fprintf(w, "Identity: %s\n", r.Membership)
	}
	fmt.Fprintln(w, "Rotation cannot undo what the old code already gave: whoever held it could read the files and keep their caps.")
	fmt.Fprintln(w)
}

// maxRotateEntries bounds the tree --rotate walks.
const maxRotateEntries = 1 << 20

// rotator re-links a tree: reads with old, creates with new.
type rotator struct {
	old, new *grid.Client
	files    []caps.Cap // files to move to the new lease secret
	oldDirs  []caps.Cap // directories of the old tree (their leases are dropped)
	seen     map[string]caps.MutableWriteCap
	entries  int
}

// relink re-creates the directory wc (and every directory below it that
// it holds a write cap of) under new write caps; files keep their caps.
func (r *rotator) relink(ctx context.Context, wc caps.MutableWriteCap, depth int) (caps.MutableWriteCap, error) {
	if nc, ok := r.seen[wc.String()]; ok { // the same directory linked twice stays one
		return nc, nil
	}
	if depth > maxRenewDepth {
		return caps.MutableWriteCap{}, fmt.Errorf("rotate: directories nested deeper than %d", maxRenewDepth)
	}
	t, _, err := r.old.ReadDir(ctx, wc)
	if err != nil {
		return caps.MutableWriteCap{}, fmt.Errorf("rotate: %w", err)
	}
	r.oldDirs = append(r.oldDirs, wc)
	nt := caps.NewTable()
	for _, e := range t.Entries() {
		if r.entries++; r.entries > maxRotateEntries {
			return caps.MutableWriteCap{}, fmt.Errorf("rotate: more than %d entries", maxRotateEntries)
		}
		if e.Type == caps.TypeDir && e.WriteCap != "" {
			c, err := caps.Parse(e.WriteCap)
			if err != nil {
				return caps.MutableWriteCap{}, fmt.Errorf("rotate: entry %q: %w", e.Name, err)
			}
			if cw, ok := c.(caps.MutableWriteCap); ok && cw.Dir {
				ncw, err := r.relink(ctx, cw, depth+1)
				if err != nil {
					return caps.MutableWriteCap{}, err
				}
				e.WriteCap, e.ReadCap = ncw.String(), ncw.ReadCap().String()
			}
		} else if e.ReadCap != "" {
			cp := e.ReadCap
			if e.WriteCap != "" {
				cp = e.WriteCap
			}
			c, err := caps.Parse(cp)
			if err != nil {
				return caps.MutableWriteCap{}, fmt.Errorf("rotate: entry %q: %w", e.Name, err)
			}
			r.files = append(r.files, c)
		}
		if err := nt.Set(e); err != nil {
			return caps.MutableWriteCap{}, fmt.Errorf("rotate: entry %q: %w", e.Name, err)
		}
	}
	nc, err := r.new.CreateDir(ctx, nt)
	if err != nil {
		return caps.MutableWriteCap{}, fmt.Errorf("rotate: %w", err)
	}
	if r.seen == nil {
		r.seen = map[string]caps.MutableWriteCap{}
	}
	r.seen[wc.String()] = nc
	return nc, nil
}

// renewNew adds the new secret's lease to c; ok means it may lose the old.
func (r *rotator) renewNew(ctx context.Context, c caps.Cap) bool {
	switch c.Kind() {
	case "lit":
		return false
	case caps.KindMutableWrite, caps.KindMutableRead, caps.KindDirRead, caps.KindDirWrite:
		_, err := r.new.RenewMutable(ctx, c)
		return err == nil
	}
	return r.new.RenewLeases(ctx, c) == nil
}

// rotateHome does --rotate on h (its node stopped) and leaves h holding
// the new secrets and root.
func rotateHome(ctx context.Context, g *globals, h *home.Home) (*rotation, error) {
	if _, err := node.DialControl(ctx, h.ControlFile()); err == nil {
		return nil, errors.New("rotate: a node is running on this home and holds the old secrets: stop it, rotate, then start it again")
	} else if !errors.Is(err, node.ErrNotRunning) {
		return nil, err
	}
	oldRoot, err := ensureRootCap(ctx, h)
	if err != nil {
		return nil, err
	}
	oldC, closeFn, err := openClient(ctx, h)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	conv, err := newSecret()
	if err != nil {
		return nil, err
	}
	lease, err := newSecret()
	if err != nil {
		return nil, err
	}
	var ls [32]byte
	copy(ls[:], lease)
	newC, err := grid.NewClient(grid.ClientConfig{Servers: oldC.Servers(), Params: oldC.Params(),
		Convergence: conv, LeaseSecret: ls, Logger: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	r := &rotator{old: oldC, new: newC}
	newRoot, err := r.relink(ctx, oldRoot, 0)
	if err != nil {
		return nil, err // nothing switched yet: the home still has the old secrets and root
	}
	putCaps, err := readCapsFile(h.CapsFile())
	if err != nil {
		return nil, err
	}
	r.files = append(r.files, putCaps...)
	rot := &rotation{Directories: len(r.oldDirs)}
	var drop []caps.Cap
	seen := map[string]bool{}
	for _, c := range r.files {
		if seen[c.String()] {
			continue
		}
		seen[c.String()] = true
		if c.Kind() == "lit" {
			continue
		}
		if r.renewNew(ctx, c) {
			rot.Files++
			drop = append(drop, c)
		} else {
			rot.RenewFailed++
		}
	}
	// Switch the home over before dropping anything, so a crash here
	// leaves a home that works with the new code.
	dst := h.Path("replaced-" + time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dst+"/secrets", 0o700); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	for _, f := range []string{home.RootCapFile, "secrets/convergence", "secrets/lease"} {
		if err := copyFile(h.Path(f), dst+"/"+f); err != nil {
			return nil, fmt.Errorf("rotate: keep old %s: %w", f, err)
		}
	}
	if err := h.ReplaceSecrets(conv, lease, newRoot); err != nil {
		return nil, err
	}
	rot.Replaced = dst
	// The old root shows nothing any more, even on servers that cannot
	// drop leases; then the old secret's leases go.
	if t, _, err := oldC.ReadDir(ctx, oldRoot); err == nil && t.Len() > 0 {
		var changes []caps.Change
		for _, e := range t.Entries() {
			changes = append(changes, caps.Change{Name: e.Name, Prev: e.Ident()})
		}
		if _, err := oldC.ModifyDir(ctx, oldRoot, changes); err != nil {
			fmt.Fprintf(g.stderr, "sphere: rotate: emptying the old root: %v\n", err)
		}
	}
	for _, c := range append(drop, r.oldDirs...) {
		n, failed, err := oldC.CancelLeases(ctx, c)
		if err != nil {
			return nil, err
		}
		rot.Cancelled += n
		rot.CancelFailed += failed
	}
	msg, err := rotateIdentity(ctx, h, dst)
	if err != nil {
		// The secrets are rotated and the home works; only the identity
		// is the old one. Say so and let the user run --rotate again.
		msg = fmt.Sprintf("the node identity was NOT rotated (%v): the old code still admits its holder to the grid, though to nothing of the drive; run 'sphere recovery --rotate' again when the grid's admin is reachable", err)
		rot.IdentityFailed = true
	}
	rot.Membership = msg
	return rot, nil
}

// rotateIdentity gives the home's node a new identity: the admin (this
// node, or the admin node asked over the join protocol) signs a member
// list admitting it and removing the old one (if this node is the admin,
// the list hands the role over), the list is pushed to the members it
// knows, and the new identity, the list and a fresh storage directory (a
// store is bound to its server id) are saved. The old identity and store
// go to dst. It returns what it did, for the user.
func rotateIdentity(ctx context.Context, h *home.Home, dst string) (string, error) {
	oldKey, oldSID, err := h.NodeIdentity()
	if err != nil {
		return "", err
	}
	oldID := peer.ID(oldSID)
	gridKey, err := h.GridKey()
	if err != nil {
		return "", err
	}
	var cur *node.MemberList
	if raw, err := os.ReadFile(h.MembersFile()); err == nil {
		if l, err := node.UnmarshalMemberList(raw); err == nil && l.Grid == node.GridID(gridKey) {
			cur = l
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("rotate: %w", err)
	}
	newKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	newID, err := peer.IDFromPrivateKey(newKey)
	if err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	kb, err := crypto.MarshalPrivateKey(newKey)
	if err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	// Kept before anyone learns of it: a crash after the admin's answer
	// must not lose the key the grid now knows this node by.
	pending := h.Path("identity.key.rotating")
	if err := writePrivate(pending, kb); err != nil {
		return "", err
	}
	targets := knownMembers(h)
	var list []byte
	what := ""
	switch {
	case cur == nil || !cur.Has(oldID):
		what = "this node is on no member list yet, so it just has a new identity"
	case cur.Admin == oldID:
		_, raw, err := node.HandOver(cur, oldKey, newID, time.Now().Unix())
		if err != nil {
			os.Remove(pending)
			return "", err
		}
		list, what = raw, "this node, the grid's admin, handed the admin role over to its new identity and removed the old one"
	default:
		admin := peer.AddrInfo{ID: cur.Admin}
		for _, ai := range targets {
			if ai.ID == cur.Admin {
				admin = ai
			}
		}
		ch, err := node.NewClientHost(oldKey, gridKey)
		if err != nil {
			os.Remove(pending)
			return "", err
		}
		rctx, cancel := context.WithTimeout(ctx, redeemTimeout)
		_, raw, err := node.RequestRotation(rctx, ch, gridKey, admin, newKey)
		cancel()
		ch.Close()
		if err != nil {
			os.Remove(pending)
			return "", err
		}
		list, what = raw, "the grid's admin admitted the new identity and removed the old one"
	}
	pushed := 0
	if list != nil {
		nh, err := node.NewClientHost(newKey, gridKey)
		if err != nil {
			return "", err // pending is kept: see above
		}
		var to []peer.AddrInfo
		for _, ai := range targets {
			if ai.ID != oldID && ai.ID != newID {
				to = append(to, ai)
			}
		}
		pushed = node.PushList(ctx, nh, list, to)
		nh.Close()
		if err := writePrivate(h.MembersFile(), list); err != nil {
			return "", err
		}
	}
	// The old identity and its store go aside; the node starts on an
	// empty store under the new id.
	if err := copyFile(h.Path("identity.key"), dst+"/identity.key"); err != nil {
		return "", fmt.Errorf("rotate: keep the old identity: %w", err)
	}
	if err := os.Rename(h.StorageDir(), dst+"/storage"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("rotate: move the old store aside: %w", err)
	}
	if err := os.Rename(pending, h.Path("identity.key")); err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	return fmt.Sprintf("node identity rotated to %s: %s; %d member(s) took the new list now, the rest get it from the node. "+
		"The old identity is refused by the grid. The shares this node stored for the grid were in the old store, now in %s/storage: their owners' repair puts them back.",
		newID, what, pushed, dst), nil
}

// knownMembers are the grid members whose addresses the home knows: the
// node's saved records and the peers of the invite it joined by.
func knownMembers(h *home.Home) []peer.AddrInfo {
	addrs, _ := node.LoadKnownPeers(h.PeersFile())
	addrs = append(addrs, h.Config.Node.Peers...)
	var out []peer.AddrInfo
	seen := map[peer.ID]int{}
	for _, a := range addrs {
		ais, err := node.ParseAddrs([]string{a})
		if err != nil {
			continue
		}
		for _, ai := range ais {
			if i, ok := seen[ai.ID]; ok {
				out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
				continue
			}
			seen[ai.ID] = len(out)
			out = append(out, ai)
		}
	}
	return out
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
