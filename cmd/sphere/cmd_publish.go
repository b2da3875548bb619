package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/web"
	"github.com/sphere-grid/sphere/web/gitremote"
	"github.com/sphere-grid/sphere/web/site"
)

// remoteName is the git remote `sphere publish` adds.
const remoteName = "sphere"

func newPublishCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "publish DIR",
		Short: "Publish a git repository as a site; prints its address and URL",
		Long: `publish stores the git repository DIR in the grid as a site and prints its
address (a cap: share it, anyone holding it can open the site) and its URL on
this machine's gateway. It adds a git remote named "sphere" to DIR, so that
'git push sphere main' updates the site. Publishing again pushes the current
branch to the same site.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openHome()
			if err != nil {
				return err
			}
			repo, err := gitremote.OpenRepo(ctx, args[0])
			if err != nil {
				return usageError{err}
			}
			branch, err := repo.CurrentBranch(ctx)
			if err != nil {
				return err
			}
			c, closeFn, err := openClient(ctx, h)
			if err != nil {
				return err
			}
			defer closeFn()
			st := site.GridStore(c)
			reg := siteRegistry(h)
			var wc caps.Cap
			url, hasRemote := remoteURL(ctx, args[0])
			if hasRemote {
				if !strings.HasPrefix(url, "sphere::") {
					return fmt.Errorf("%s already has a remote %q (%s) that is not a Sphere site", args[0], remoteName, url)
				}
				ac, err := parseCap(strings.TrimPrefix(url, "sphere::"))
				if err != nil {
					return err
				}
				addr, err := site.Address(ac)
				if err != nil {
					return err
				}
				if wc, err = reg.WriteCap(web.SiteID(addr)); err != nil {
					return err
				}
			} else {
				if wc, err = site.New(ctx, st); err != nil {
					return err
				}
			}
			id, addr, err := reg.Add(wc)
			if err != nil {
				return err
			}
			res, stats, err := gitremote.Push(ctx, repo, st, wc, []gitremote.RefUpdate{{Src: branch, Dst: branch, Force: true}})
			if err != nil {
				return err
			}
			if res[0].Err != nil {
				return res[0].Err
			}
			if !hasRemote {
				if out, err := exec.CommandContext(ctx, "git", "-C", args[0], "remote", "add", remoteName, "sphere::"+addr.String()).CombinedOutput(); err != nil {
					return fmt.Errorf("git remote add: %v: %s", err, strings.TrimSpace(string(out)))
				}
			}
			helperNote := ensureRemoteHelper()
			u, running := siteURL(h, id)
			short := strings.TrimPrefix(branch, "refs/heads/")
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{
					"address": addr.String(), "url": u, "siteId": id, "branch": short,
					"objects": stats.Objects, "bytes": stats.BundleBytes, "gatewayRunning": running})
			}
			fmt.Fprintf(g.stdout, "Published %s (branch %s, %d new objects).\n", args[0], short, stats.Objects)
			fmt.Fprintf(g.stdout, "Update it with: git push %s %s\n", remoteName, short)
			if helperNote != "" {
				fmt.Fprintln(g.stdout, helperNote)
			}
			if !running {
				fmt.Fprintln(g.stdout, "(no gateway is running: start `sphere up` to serve it here)")
			}
			fmt.Fprintf(g.stdout, "Address: %s\n", addr.String())
			fmt.Fprintf(g.stdout, "URL:     %s\n", u)
			return nil
		},
	}
}

// remoteURL returns the URL of DIR's "sphere" remote, if any.
func remoteURL(ctx context.Context, dir string) (string, bool) {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "remote", "get-url", remoteName).Output()
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}

// ensureRemoteHelper makes git find git-remote-sphere: a symlink to this
// binary beside it (the binary acts as the helper under that name). It
// returns a note for the user when it cannot.
func ensureRemoteHelper() string {
	if p, err := exec.LookPath(helperName); err == nil && p != "" {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return "Note: put a link named " + helperName + " to sphere on your PATH for git push to work."
	}
	link := filepath.Join(filepath.Dir(exe), helperName)
	if _, err := os.Lstat(link); err == nil {
		return ""
	}
	if err := os.Symlink(exe, link); err != nil {
		return fmt.Sprintf("Note: could not create %s (%v); link it to %s on your PATH for git push to work.", link, err, exe)
	}
	return ""
}

var _ = home.ErrNoHome
