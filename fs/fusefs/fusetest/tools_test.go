package fusetest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mixedTree builds the tree a user's drive holds: empty, 1-byte and
// multi-segment files, sizes on and beside segment boundaries, nested
// directories, relative symlinks (also dangling), unicode names, and (unless
// -short) a 200 MiB file.
func mixedTree(t testing.TB, root string) {
	t.Helper()
	dirs := []string{"a/b/c/d", "ünï cødé", "日本語/サブ", "emoji 🎉", "empty-dir", "caf\u0065\u0301"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sizes := map[string]int64{
		"empty":             0,
		"one":               1,
		"a/4k":              4096,
		"a/b/128k":          128 << 10,
		"a/b/128k+1":        128<<10 + 1,
		"a/b/c/1m-1":        1<<20 - 1,
		"a/b/c/d/multi":     3_000_000,
		"ünï cødé/note.txt": 3,
		"日本語/サブ/ファイル":       70_000,
		"emoji 🎉/🎉.bin":     12345,
		"caf\u00e9":         7,
		".hidden":           100,
		"name with spaces":  10,
	}
	if !testing.Short() {
		sizes["a/big-200m"] = 200 << 20
	}
	seed := uint64(1)
	for p, n := range sizes {
		writeRandom(t, filepath.Join(root, p), seed, n)
		seed++
	}
	if err := os.Chmod(filepath.Join(root, "one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "a/4k"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"link-multi":   "a/b/c/d/multi",
		"a/link-up":    "../one",
		"dangling":     "does/not/exist",
		"ünï cødé/dir": "../日本語",
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCopyTreeRoundTrip copies a mixed tree into the mount with cp -a and
// back out, and compares hashes at each step, after a remount too.
func TestCopyTreeRoundTrip(t *testing.T) {
	w := newWorld(t)
	m := w.mount(t, "")
	src := t.TempDir()
	mixedTree(t, src)
	want := manifest(t, src, true)

	runCmd(t, src, "cp", "-a", src+"/.", m.p("tree"))
	runCmd(t, src, "sync")
	sameManifest(t, "tree in the mount", want, manifest(t, m.p("tree"), true))

	back := filepath.Join(t.TempDir(), "back")
	runCmd(t, src, "cp", "-a", m.p("tree")+"/.", back)
	sameManifest(t, "tree copied back out", want, manifest(t, back, true))

	m.remount(t)
	sameManifest(t, "tree after remount", want, manifest(t, m.p("tree"), true))
}

// TestGitInsideMount runs git's ordinary workflow in a repository that
// lives in the mount.
func TestGitInsideMount(t *testing.T) {
	requireTool(t, "git")
	w := newWorld(t)
	m := w.mount(t, "")
	repo := m.p("repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		return runCmd(t, repo, "git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
	}
	git("init", "-q", "-b", "main")
	for i, content := range []string{"one\n", "two\n", "three\n"} {
		if err := os.WriteFile(filepath.Join(repo, "file.txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "f"+string(rune('a'+i))), bytes.Repeat([]byte(content), 5000), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", "commit "+strings.TrimSpace(content))
	}
	log := git("log", "--oneline")
	for _, want := range []string{"commit one", "commit two", "commit three"} {
		if !strings.Contains(log, want) {
			t.Fatalf("git log lacks %q:\n%s", want, log)
		}
	}
	if st := git("status", "--porcelain"); st != "" {
		t.Fatalf("git status not clean after commit:\n%s", st)
	}
	git("fsck", "--full", "--strict")
	git("gc", "-q")
	git("fsck", "--full", "--strict")

	m.remount(t)
	if got := git("show", "HEAD~1:file.txt"); got != "two\n" {
		t.Fatalf("after remount, HEAD~1:file.txt = %q, want %q", got, "two\n")
	}
	git("fsck", "--full", "--strict")
	if st := git("status", "--porcelain"); st != "" {
		t.Fatalf("git status not clean after remount:\n%s", st)
	}
}

// TestGitClone clones a local repository into the mount and checks it.
func TestGitClone(t *testing.T) {
	requireTool(t, "git")
	w := newWorld(t)
	m := w.mount(t, "")
	src := t.TempDir()
	git := func(dir string, args ...string) string {
		return runCmd(t, dir, "git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
	}
	git(src, "init", "-q", "-b", "main")
	mixedTreeSmall(t, src)
	git(src, "add", "-A")
	git(src, "commit", "-q", "-m", "first")
	writeRandom(t, filepath.Join(src, "second.bin"), 99, 300_000)
	git(src, "add", "-A")
	git(src, "commit", "-q", "-m", "second")

	git(m.dir, "clone", "-q", "--no-local", src, m.p("clone"))
	git(m.p("clone"), "fsck", "--full", "--strict")
	checkout := manifest(t, m.p("clone"), false)
	delete(checkout, ".git")
	for p := range checkout {
		if strings.HasPrefix(p, ".git/") {
			delete(checkout, p)
		}
	}
	want := manifest(t, src, false)
	for p := range want {
		if p == ".git" || strings.HasPrefix(p, ".git/") {
			delete(want, p)
		}
	}
	sameManifest(t, "clone's checkout", want, checkout)
	if a, b := git(src, "rev-parse", "HEAD"), git(m.p("clone"), "rev-parse", "HEAD"); a != b {
		t.Fatalf("clone HEAD %s, source HEAD %s", b, a)
	}
	m.remount(t)
	git(m.p("clone"), "fsck", "--full", "--strict")
}

// mixedTreeSmall is a few files and a symlink for git and rsync tests.
func mixedTreeSmall(t testing.TB, root string) {
	t.Helper()
	for _, d := range []string{"dir/sub", "ünï"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeRandom(t, filepath.Join(root, "dir/sub/multi"), 7, 1_000_000)
	writeRandom(t, filepath.Join(root, "ünï/small"), 8, 10)
	if err := os.WriteFile(filepath.Join(root, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/sub/multi", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
}

// TestRsync copies with rsync -a in and out; a second rsync must find
// nothing to do (sizes, modes and mtimes were kept).
func TestRsync(t *testing.T) {
	requireTool(t, "rsync")
	w := newWorld(t)
	m := w.mount(t, "")
	src := t.TempDir()
	mixedTreeSmall(t, src)
	writeRandom(t, filepath.Join(src, "dir/big"), 11, 5_000_000)
	want := manifest(t, src, true)

	runCmd(t, src, "rsync", "-a", src+"/", m.p("r")+"/")
	sameManifest(t, "rsync into the mount", want, manifest(t, m.p("r"), true))
	if out := runCmd(t, src, "rsync", "-a", "-n", "-i", src+"/", m.p("r")+"/"); strings.TrimSpace(out) != "" {
		t.Errorf("second rsync into the mount would transfer again (mtime/size/mode not kept):\n%s", out)
	}

	// Change one file in place and rsync again: only it moves.
	writeRandom(t, filepath.Join(src, "dir/sub/multi"), 12, 1_000_001)
	want = manifest(t, src, true)
	runCmd(t, src, "rsync", "-a", src+"/", m.p("r")+"/")
	sameManifest(t, "rsync update into the mount", want, manifest(t, m.p("r"), true))

	back := t.TempDir()
	runCmd(t, src, "rsync", "-a", m.p("r")+"/", back+"/")
	sameManifest(t, "rsync out of the mount", want, manifest(t, back, true))

	m.remount(t)
	sameManifest(t, "rsync'd tree after remount", want, manifest(t, m.p("r"), true))
	if out := runCmd(t, src, "rsync", "-a", "-n", "-i", src+"/", m.p("r")+"/"); strings.TrimSpace(out) != "" {
		t.Errorf("after remount, rsync would transfer again:\n%s", out)
	}
}

// TestEditorSave saves the way editors do: write a temporary file, fsync,
// rename it over the original (vim also keeps a backup~ it removes).
func TestEditorSave(t *testing.T) {
	w := newWorld(t)
	m := w.mount(t, "")
	doc := m.p("doc.txt")
	if err := os.WriteFile(doc, []byte("version 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 5; i++ {
		content := []byte(strings.Repeat("version "+string(rune('0'+i))+"\n", i*1000))
		// vim: rename the original to a backup, write anew, drop the backup.
		if i%2 == 0 {
			if err := os.Rename(doc, doc+"~"); err != nil {
				t.Fatalf("rename to backup: %v", err)
			}
			if err := writeSync(doc, content); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(doc + "~"); err != nil {
				t.Fatalf("remove backup: %v", err)
			}
		} else {
			// gedit/emacs/VS Code: temp file in the same dir, rename over.
			tmp := filepath.Join(m.dir, ".doc.txt.swp")
			if err := writeSync(tmp, content); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, doc); err != nil {
				t.Fatalf("rename over: %v", err)
			}
		}
		got, err := os.ReadFile(doc)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("save %d: read back %d bytes (err %v), want %d", i, len(got), err, len(content))
		}
	}
	want := manifest(t, m.dir, false)
	if len(want) != 1 {
		t.Fatalf("want only doc.txt after saves, have %v", want)
	}
	m.remount(t)
	sameManifest(t, "after remount", want, manifest(t, m.dir, false))
}

// writeSync creates p with content and fsyncs it before closing.
func writeSync(p string, content []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
