package main

// When run as git-remote-sphere (a link `sphere publish` makes beside the
// binary), sphere is git's remote helper for sphere::ADDRESS remotes.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/web"
	"github.com/sphere-grid/sphere/web/gitremote"
	"github.com/sphere-grid/sphere/web/site"
)

const helperName = "git-remote-sphere"

// isRemoteHelper reports whether the binary was started as the helper.
func isRemoteHelper(argv0 string) bool { return filepath.Base(argv0) == helperName }

// runRemoteHelper serves git: args are the remote's name and URL.
func runRemoteHelper(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := remoteHelper(ctx, args, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "git-remote-sphere: %v\n", err)
		return exitCode(err)
	}
	return exitOK
}

func remoteHelper(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return usageError{fmt.Errorf("usage: %s REMOTE sphere::ADDRESS (git runs this)", helperName)}
	}
	c, err := parseCap(strings.TrimPrefix(args[1], "sphere::"))
	if err != nil {
		return err
	}
	addr, err := site.Address(c)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadCap, err)
	}
	h, err := openHome()
	if err != nil {
		return err
	}
	var wc caps.Cap
	if site.IsWriteCap(c) {
		wc = c
	} else if w, err := siteRegistry(h).WriteCap(web.SiteID(addr)); err == nil {
		wc = w
	}
	gitDir := os.Getenv("GIT_DIR")
	var repo *gitremote.Repo
	if gitDir != "" {
		abs, err := filepath.Abs(gitDir)
		if err != nil {
			return err
		}
		repo = &gitremote.Repo{GitDir: abs}
	} else if repo, err = gitremote.OpenRepo(ctx, "."); err != nil {
		return err
	}
	cl, closeFn, err := openClient(ctx, h)
	if err != nil {
		return err
	}
	defer closeFn()
	hp := &gitremote.Helper{Repo: repo, Store: site.GridStore(cl), Address: addr, WriteCap: wc, Log: stderr}
	return hp.Serve(ctx, stdin, stdout)
}
