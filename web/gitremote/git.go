// Package gitremote moves git objects between a local repository (through
// the git binary) and a site in the grid: push, fetch, and the git remote
// helper protocol (gitremote-helpers(7)) that `git push sphere main` runs.
package gitremote

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/web/site"
)

// Repo is a local git repository driven through the git binary.
type Repo struct {
	GitDir string // absolute path of the .git directory
}

// OpenRepo finds the git directory of dir.
func OpenRepo(ctx context.Context, dir string) (*Repo, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--absolute-git-dir").Output()
	if err != nil {
		return nil, fmt.Errorf("%s is not a git repository: %w", dir, gitErr(err))
	}
	return &Repo{GitDir: strings.TrimSpace(string(out))}, nil
}

func gitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

func (r *Repo) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "git", append([]string{"--git-dir", r.GitDir}, args...)...)
	c.Env = append(os.Environ(), "GIT_DIR="+r.GitDir)
	return c
}

func (r *Repo) output(ctx context.Context, args ...string) (string, error) {
	out, err := r.cmd(ctx, args...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), gitErr(err))
	}
	return string(out), nil
}

// Resolve returns the commit a revision names.
func (r *Repo) Resolve(ctx context.Context, rev string) (site.ID, error) {
	out, err := r.output(ctx, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil {
		return site.ID{}, fmt.Errorf("%s names no commit: %w", rev, err)
	}
	return site.ParseID(strings.TrimSpace(out))
}

// CurrentBranch returns the full name of the checked-out branch.
func (r *Repo) CurrentBranch(ctx context.Context) (string, error) {
	out, err := r.output(ctx, "symbolic-ref", "-q", "HEAD")
	if err != nil {
		return "", fmt.Errorf("no branch checked out: %w", err)
	}
	return strings.TrimSpace(out), nil
}

// present returns which ids exist locally.
func (r *Repo) present(ctx context.Context, ids []site.ID) (map[site.ID]bool, error) {
	out := map[site.ID]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	var in bytes.Buffer
	for _, id := range ids {
		in.WriteString(id.String() + "\n")
	}
	c := r.cmd(ctx, "cat-file", "--batch-check")
	c.Stdin = &in
	b, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("git cat-file --batch-check: %w", gitErr(err))
	}
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(ln)
		if len(f) == 3 {
			if id, err := site.ParseID(f[0]); err == nil {
				out[id] = true
			}
		}
	}
	return out, nil
}

// isAncestor reports whether old is an ancestor of new.
func (r *Repo) isAncestor(ctx context.Context, old, new site.ID) bool {
	return r.cmd(ctx, "merge-base", "--is-ancestor", old.String(), new.String()).Run() == nil
}

// objectsFor lists the objects reachable from tips but not from have.
func (r *Repo) objectsFor(ctx context.Context, tips, have []site.ID) ([]site.ID, error) {
	args := []string{"rev-list", "--objects", "--stdin"}
	var in bytes.Buffer
	for _, t := range tips {
		in.WriteString(t.String() + "\n")
	}
	for _, h := range have {
		in.WriteString("^" + h.String() + "\n")
	}
	c := r.cmd(ctx, args...)
	c.Stdin = &in
	b, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("git rev-list: %w", gitErr(err))
	}
	var ids []site.ID
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		hexID, _, _ := strings.Cut(sc.Text(), " ")
		id, err := site.ParseID(hexID)
		if err != nil {
			return nil, fmt.Errorf("git rev-list: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}

// writeBundle streams the objects' contents out of git into bw.
func (r *Repo) writeBundle(ctx context.Context, ids []site.ID, bw *site.BundleWriter) error {
	c := r.cmd(ctx, "cat-file", "--batch")
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return fmt.Errorf("git cat-file: %w", err)
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, id := range ids {
			w.WriteString(id.String() + "\n")
		}
		w.Flush()
		stdin.Close()
	}()
	br := bufio.NewReaderSize(stdout, 1<<20)
	var rerr error
	for _, want := range ids {
		hdr, err := br.ReadString('\n')
		if err != nil {
			rerr = fmt.Errorf("git cat-file: %w", err)
			break
		}
		f := strings.Fields(hdr)
		if len(f) != 3 || f[0] != want.String() {
			rerr = fmt.Errorf("git cat-file: unexpected %q for %s", strings.TrimSpace(hdr), want)
			break
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			rerr = fmt.Errorf("git cat-file: bad size in %q", hdr)
			break
		}
		if err := bw.Add(want, site.TypeOf(f[1]), br, size); err != nil {
			rerr = err
			break
		}
		if _, err := br.Discard(1); err != nil { // the LF after the content
			rerr = err
			break
		}
	}
	if rerr != nil {
		_ = c.Process.Kill()
	}
	if err := c.Wait(); err != nil && rerr == nil {
		rerr = fmt.Errorf("git cat-file: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return rerr
}

// writeLoose stores an object in the repository as a loose object after
// checking that its content hashes to id (the site's owner is not trusted).
func (r *Repo) writeLoose(id site.ID, typ byte, content []byte) error {
	hdr := fmt.Sprintf("%s %d\x00", site.TypeName(typ), len(content))
	h := sha1.New()
	h.Write([]byte(hdr))
	h.Write(content)
	if !bytes.Equal(h.Sum(nil), id[:]) {
		return fmt.Errorf("object %s: content does not match its id: %w", id, site.ErrFormat)
	}
	hexID := id.String()
	dir := filepath.Join(r.GitDir, "objects", hexID[:2])
	dst := filepath.Join(dir, hexID[2:])
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "tmp_obj_")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	zw := zlib.NewWriter(tmp)
	zw.Write([]byte(hdr))
	zw.Write(content)
	if err := zw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// RefUpdate is one push: Src ("" deletes) to Dst, Force allowing a
// non-fast-forward.
type RefUpdate struct {
	Src, Dst string
	Force    bool
}

// Result says what became of one RefUpdate (Err nil: done).
type Result struct {
	Dst string
	Err error
}

// Stats describe one push.
type Stats struct {
	Objects     int   // objects sent
	BundleBytes int64 // bytes of the new bundle
}

// Push sends the updates' objects that the site lacks as one new pack and
// moves its refs, in one update of the refs file. The first ref pushed to
// an empty site becomes its default branch.
func Push(ctx context.Context, repo *Repo, st site.Store, wc caps.Cap, updates []RefUpdate) ([]Result, Stats, error) {
	var stats Stats
	addr, err := site.Address(wc)
	if err != nil {
		return nil, stats, err
	}
	rd := site.NewReader(ctx, st)
	rd.RefsTTL = 0
	snap, err := rd.Snapshot(ctx, addr)
	if err != nil {
		return nil, stats, err
	}
	results := make([]Result, len(updates))
	newIDs := map[string]site.ID{}
	expect := map[string]*site.ID{}
	var tips []site.ID
	for i, u := range updates {
		results[i].Dst = u.Dst
		old, had := snap.Refs.Refs[u.Dst]
		if had {
			o := old
			expect[u.Dst] = &o
		} else {
			expect[u.Dst] = nil
		}
		if u.Src == "" {
			continue // a delete
		}
		id, err := repo.Resolve(ctx, u.Src)
		if err != nil {
			results[i].Err = err
			continue
		}
		if had && !u.Force && old != id && !repo.isAncestor(ctx, old, id) {
			results[i].Err = errors.New("non-fast-forward (fetch first, or push with --force)")
			continue
		}
		newIDs[u.Dst] = id
		tips = append(tips, id)
	}
	// Skip what the site has: remote tips we hold locally bound the walk,
	// then every object already in a pack is dropped.
	var remoteTips []site.ID
	for _, id := range snap.Refs.Refs {
		remoteTips = append(remoteTips, id)
	}
	have, err := repo.present(ctx, remoteTips)
	if err != nil {
		return nil, stats, err
	}
	var haveList []site.ID
	for id := range have {
		haveList = append(haveList, id)
	}
	var ids []site.ID
	if len(tips) > 0 {
		all, err := repo.objectsFor(ctx, tips, haveList)
		if err != nil {
			return nil, stats, err
		}
		for _, id := range all {
			if !snap.Has(id) {
				ids = append(ids, id)
			}
		}
	}
	tmp, err := os.CreateTemp("", "sphere-bundle-")
	if err != nil {
		return nil, stats, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw, err := site.NewBundleWriter(tmp)
	if err != nil {
		return nil, stats, err
	}
	if err := repo.writeBundle(ctx, ids, bw); err != nil {
		return nil, stats, err
	}
	index, err := bw.Finish()
	if err != nil {
		return nil, stats, err
	}
	stats.Objects, stats.BundleBytes = bw.Len(), bw.Size()
	_, err = site.Commit(ctx, st, wc, tmp, bw.Size(), index, func(r *site.Refs) error {
		for i, u := range updates {
			if results[i].Err != nil {
				continue
			}
			cur, had := r.Refs[u.Dst]
			if e := expect[u.Dst]; !u.Force && ((e == nil && had) || (e != nil && (!had || cur != *e))) {
				results[i].Err = errors.New("the site's ref changed during the push; fetch and retry")
				continue
			}
			if u.Src == "" {
				delete(r.Refs, u.Dst)
				if r.Head == u.Dst {
					r.Head = ""
				}
				continue
			}
			r.Refs[u.Dst] = newIDs[u.Dst]
			if r.Head == "" {
				r.Head = u.Dst
			}
		}
		return nil
	})
	if err != nil {
		return nil, stats, err
	}
	return results, stats, nil
}

// Fetch copies every object of the site that the repository lacks into
// it as loose objects (checking each against its id).
func Fetch(ctx context.Context, repo *Repo, st site.Store, address caps.Cap) (int, error) {
	rd := site.NewReader(ctx, st)
	rd.RefsTTL = 0
	snap, err := rd.Snapshot(ctx, address)
	if err != nil {
		return 0, err
	}
	ids := snap.IDs()
	have, err := repo.present(ctx, ids)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if have[id] {
			continue
		}
		sec, loc, err := snap.Section(id)
		if err != nil {
			return n, err
		}
		if loc.Size > 1<<31 {
			return n, fmt.Errorf("object %s of %d bytes: too large to fetch", id, loc.Size)
		}
		b := make([]byte, loc.Size)
		if _, err := io.ReadFull(sec, b); err != nil {
			return n, fmt.Errorf("read object %s: %w", id, err)
		}
		if err := repo.writeLoose(id, loc.Type, b); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
