package gitremote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/web/site"
)

// Command is one line of the remote helper protocol git sends.
type Command struct {
	Name string // capabilities, list, push, fetch, option, "" (end)
	Args []string
}

// maxLine bounds one protocol line.
const maxLine = 64 << 10

// ParseCommand parses one line (without its newline).
func ParseCommand(line string) (Command, error) {
	if len(line) > maxLine {
		return Command{}, fmt.Errorf("helper: line of %d bytes", len(line))
	}
	if line == "" {
		return Command{}, nil
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return Command{}, fmt.Errorf("helper: blank command %q", line)
	}
	c := Command{Name: f[0], Args: f[1:]}
	switch c.Name {
	case "capabilities":
		if len(c.Args) != 0 {
			return Command{}, fmt.Errorf("helper: capabilities takes no arguments")
		}
	case "list":
		if len(c.Args) > 1 || (len(c.Args) == 1 && c.Args[0] != "for-push") {
			return Command{}, fmt.Errorf("helper: list %q", strings.Join(c.Args, " "))
		}
	case "push":
		if len(c.Args) != 1 || !strings.Contains(c.Args[0], ":") {
			return Command{}, fmt.Errorf("helper: push wants one SRC:DST refspec, have %q", line)
		}
	case "fetch":
		if len(c.Args) != 2 {
			return Command{}, fmt.Errorf("helper: fetch wants SHA NAME, have %q", line)
		}
		if _, err := site.ParseID(c.Args[0]); err != nil {
			return Command{}, fmt.Errorf("helper: %w", err)
		}
	case "option":
		if len(c.Args) < 1 {
			return Command{}, fmt.Errorf("helper: option without a name")
		}
	default:
		return Command{}, fmt.Errorf("helper: unknown command %q", c.Name)
	}
	return c, nil
}

// ParseRefspec parses a push refspec "[+]SRC:DST".
func ParseRefspec(s string) (RefUpdate, error) {
	var u RefUpdate
	if strings.HasPrefix(s, "+") {
		u.Force, s = true, s[1:]
	}
	src, dst, ok := strings.Cut(s, ":")
	if !ok || dst == "" {
		return u, fmt.Errorf("refspec %q: want SRC:DST", s)
	}
	u.Src, u.Dst = src, dst
	return u, nil
}

// Helper is the remote helper for one remote: git runs
// `git-remote-sphere NAME URL` and talks to it on stdin/stdout.
type Helper struct {
	Repo     *Repo
	Store    site.Store
	Address  caps.Cap // the site's address
	WriteCap caps.Cap // nil: pushes are refused
	Log      io.Writer
}

// Serve answers git's commands until the end of input or an empty line at
// top level.
func (h *Helper) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriter(out)
	read := func() (Command, bool, error) {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return Command{}, false, nil
		}
		if err != nil && err != io.EOF {
			return Command{}, false, err
		}
		c, err := ParseCommand(strings.TrimSuffix(line, "\n"))
		return c, true, err
	}
	for {
		c, ok, err := read()
		if err != nil {
			return err
		}
		if !ok || c.Name == "" {
			return w.Flush()
		}
		switch c.Name {
		case "capabilities":
			fmt.Fprint(w, "push\nfetch\noption\n\n")
		case "option":
			fmt.Fprint(w, "unsupported\n")
		case "list":
			if err := h.list(ctx, w); err != nil {
				return err
			}
		case "push":
			var ups []RefUpdate
			for c.Name == "push" {
				u, err := ParseRefspec(c.Args[0])
				if err != nil {
					return err
				}
				ups = append(ups, u)
				if c, _, err = read(); err != nil {
					return err
				}
			}
			if err := h.push(ctx, w, ups); err != nil {
				return err
			}
		case "fetch":
			for c.Name == "fetch" {
				if c, _, err = read(); err != nil {
					return err
				}
			}
			n, err := Fetch(ctx, h.Repo, h.Store, h.Address)
			if err != nil {
				return err
			}
			if h.Log != nil && n > 0 {
				fmt.Fprintf(h.Log, "sphere: fetched %d objects\n", n)
			}
			fmt.Fprint(w, "\n")
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

func (h *Helper) list(ctx context.Context, w io.Writer) error {
	rd := site.NewReader(ctx, h.Store)
	rd.RefsTTL = 0
	snap, err := rd.Snapshot(ctx, h.Address)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(snap.Refs.Refs))
	for n := range snap.Refs.Refs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "%s %s\n", snap.Refs.Refs[n], n)
	}
	if _, ok := snap.Refs.HeadID(); ok {
		fmt.Fprintf(w, "@%s HEAD\n", snap.Refs.Head)
	}
	fmt.Fprint(w, "\n")
	return nil
}

func (h *Helper) push(ctx context.Context, w io.Writer, ups []RefUpdate) error {
	if h.WriteCap == nil {
		for _, u := range ups {
			fmt.Fprintf(w, "error %s this home holds only the site's address, not its write cap\n", u.Dst)
		}
		fmt.Fprint(w, "\n")
		return nil
	}
	res, stats, err := Push(ctx, h.Repo, h.Store, h.WriteCap, ups)
	if err != nil {
		return err
	}
	if h.Log != nil {
		fmt.Fprintf(h.Log, "sphere: sent %d objects (%d bytes)\n", stats.Objects, stats.BundleBytes)
	}
	for _, r := range res {
		if r.Err != nil {
			fmt.Fprintf(w, "error %s %s\n", r.Dst, strings.ReplaceAll(r.Err.Error(), "\n", " "))
		} else {
			fmt.Fprintf(w, "ok %s\n", r.Dst)
		}
	}
	fmt.Fprint(w, "\n")
	return nil
}
