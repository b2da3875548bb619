package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs"
)

// xattrReadCap is the extended attribute the mount shows on every file and
// directory, holding its read cap.
const xattrReadCap = "user.sphere.readcap"

func newShareCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "share PATH",
		Short: "Print the read cap of a file or directory, to give to a friend",
		Long: `share prints the read cap of PATH: a path in your drive ("/photos",
"sphere:/photos"), a path below a cap, or a local path inside a mounted
Sphere folder (read from its user.sphere.readcap attribute). Whoever holds
the read cap of a directory can read everything below it, and nothing above
it; they can never change it. Send it over a channel you trust: the cap is
the key.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := args[0]
			rc, where, err := shareArg(cmd, g, arg)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"path": where, "readcap": rc})
			}
			_, err = fmt.Fprintln(g.stdout, rc)
			return err
		},
	}
	return cmd
}

// shareArg finds the read cap arg names. A local path that exists is read
// from the mount's xattr; a path without the attribute (or none that
// exists) is then a path in the user's drive, so "share /" and "share
// /photos" mean the drive's unless they are inside a mount.
func shareArg(cmd *cobra.Command, g *globals, arg string) (rc, where string, err error) {
	var localErr error
	if !strings.HasPrefix(arg, treePrefix) {
		if _, serr := os.Lstat(arg); serr == nil {
			rc, err := readCapXattr(arg)
			if err == nil {
				return rc, arg, nil
			}
			if !errors.Is(err, errNoXattr) {
				return "", "", err
			}
			localErr = err
		}
	}
	ref, _, err := parseTreeArg(arg, true)
	if err != nil {
		return "", "", err
	}
	ts := newTrees(cmd.Context(), g)
	rc, err = func() (string, error) {
		t, err := ts.get(ref)
		if err != nil {
			return "", fmt.Errorf("share %s: %w", ref, err)
		}
		_, r, err := t.Caps(ts.ctx, ref.path)
		if err != nil {
			return "", fmt.Errorf("share: %w", err)
		}
		return r.String(), nil
	}()
	if err = errors.Join(err, ts.close()); err != nil {
		if localErr != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, home.ErrNoHome)) {
			return "", "", localErr // the local path is what the user meant
		}
		return "", "", err
	}
	return rc, ref.String(), nil
}

// errNoXattr: a local path has no read cap attribute (not in a mount).
var errNoXattr = errors.New("not inside a mounted Sphere folder")

// readCapXattr reads the read cap the mount exposes on a local path.
func readCapXattr(p string) (string, error) {
	buf := make([]byte, 1024)
	for range 4 {
		n, err := unix.Getxattr(p, xattrReadCap, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return "", fmt.Errorf("share %s: %w (no %s attribute); for a path in your drive write sphere:/PATH", p, errNoXattr, xattrReadCap)
		case err != nil:
			return "", fmt.Errorf("share %s: read %s: %w", p, xattrReadCap, err)
		}
		rc := strings.TrimSpace(string(buf[:n]))
		if _, err := parseCap(rc); err != nil {
			return "", fmt.Errorf("share %s: the %s attribute: %w", p, xattrReadCap, err)
		}
		return rc, nil
	}
	return "", fmt.Errorf("share %s: %s attribute too large", p, xattrReadCap)
}
