package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeHome makes a fresh home with a small local grid for the tree verbs.
func treeHome(t *testing.T) {
	t.Helper()
	t.Setenv("SPHERE_HOME", filepath.Join(t.TempDir(), "home"))
	mustRun(t, "init")
}

// sph runs the CLI in-process and returns its output and exit code.
func sph(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// mustRun runs the CLI and fails t unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := sph(t, args...)
	if code != 0 {
		t.Fatalf("sphere %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// mustFail runs the CLI and fails t unless it exits with want; it returns
// stderr.
func mustFail(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, errs, code := sph(t, args...)
	if code != want {
		t.Fatalf("sphere %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return errs
}

func randFile(t *testing.T, p string, seed uint64, n int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func lsNames(t *testing.T, args ...string) []string {
	t.Helper()
	out := mustRun(t, append([]string{"ls"}, args...)...)
	return strings.Fields(out)
}

func TestParseTreeArg(t *testing.T) {
	for _, tc := range []struct {
		in      string
		plain   bool
		isTree  bool
		path    string
		wantErr error
	}{
		{"sphere:/photos/a.jpg", false, true, "photos/a.jpg", nil},
		{"sphere:", false, true, "", nil},
		{"sphere:/", false, true, "", nil},
		{"sphere://a//b/./c/", false, true, "a/b/c", nil},
		{"/photos", true, true, "photos", nil},
		{"photos", true, true, "photos", nil},
		{"", true, true, "", nil},
		{"photos", false, false, "", nil},
		{"./local/file", false, false, "", nil},
		{"sphere:/a/../b", false, true, "", usageError{}},
		{"../x", true, true, "", usageError{}},
		{"sphere:nonsense:AAAA/x", false, true, "", errBadCap},
		{"sphere:dir-rw:", false, true, "", errBadCap},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ref, isTree, err := parseTreeArg(tc.in, tc.plain)
			switch want := tc.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("err %v", err)
				}
			case usageError:
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("err %v, want a usage error", err)
				}
				return
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err %v, want %v", err, want)
				}
				return
			}
			if isTree != tc.isTree || ref.path != tc.path || ref.capStr != "" {
				t.Fatalf("got (%+v, %v), want path %q isTree %v", ref, isTree, tc.path, tc.isTree)
			}
		})
	}
}

func TestTreeVerbsUsage(t *testing.T) {
	treeHome(t)
	for _, args := range [][]string{
		{"mkdir"}, {"rm"}, {"mv", "a"}, {"cp", "a"}, {"share"}, {"ls", "a", "b"},
		{"cp", "local1", "local2"},         // no grid path
		{"rm", "sphere:/"},                 // the root
		{"mv", "sphere:/a", "sphere:/a/b"}, // into itself is checked after stat; a is missing -> error 1
	} {
		want := exitUsage
		if args[0] == "mv" && len(args) == 3 {
			want = exitError
		}
		mustFail(t, want, args...)
	}
	mustFail(t, exitBadCap, "ls", "sphere:dir-rw:NOTACAP")
	if errs := mustFail(t, exitError, "ls", "sphere:lit:nbuqu"); !strings.Contains(errs, "sphere get") {
		t.Fatalf("ls of a file cap: want a hint to use sphere get, got %s", errs)
	}
}

func TestMkdirLsRmMv(t *testing.T) {
	treeHome(t)
	if got := lsNames(t); len(got) != 0 {
		t.Fatalf("fresh drive lists %v", got)
	}
	mustRun(t, "mkdir", "/photos")
	mustFail(t, exitError, "mkdir", "/photos")            // exists
	mustFail(t, exitError, "mkdir", "/a/b/c")             // no parent
	mustRun(t, "mkdir", "-p", "/a/b/c", "sphere:/photos") // -p: parents, existing ok
	if got := strings.Join(lsNames(t), " "); got != "a/ photos/" {
		t.Fatalf("ls / = %q", got)
	}
	if got := strings.Join(lsNames(t, "sphere:/a/b"), " "); got != "c/" {
		t.Fatalf("ls /a/b = %q", got)
	}
	mustFail(t, exitError, "ls", "/nope")

	// mv renames, and moves into an existing directory.
	mustRun(t, "mv", "/a/b/c", "/a/b/d")
	mustRun(t, "mv", "/a/b", "/photos")
	if got := strings.Join(lsNames(t, "/photos/b"), " "); got != "d/" {
		t.Fatalf("after mv, ls /photos/b = %q", got)
	}
	mustFail(t, exitUsage, "mv", "/photos", "/photos/b/d")
	if got := strings.Join(lsNames(t, "/a"), " "); got != "" {
		t.Fatalf("after mv, /a still holds %q", got)
	}

	// rm needs -r for a directory; -f ignores missing paths.
	mustFail(t, exitError, "rm", "/photos")
	mustRun(t, "rm", "-r", "/photos")
	mustFail(t, exitError, "rm", "/photos")
	mustRun(t, "rm", "-f", "/photos")
	if got := strings.Join(lsNames(t), " "); got != "a/" {
		t.Fatalf("after rm, ls / = %q", got)
	}

	// --json
	out := mustRun(t, "--json", "ls")
	var ents []lsEntry
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if len(ents) != 1 || ents[0].Name != "a" || ents[0].Type != "dir" || !strings.HasPrefix(ents[0].ReadCap, "sphere:") {
		t.Fatalf("ls --json = %+v", ents)
	}
	if strings.Contains(out, "-rw:") {
		t.Fatalf("ls --json leaks a write cap:\n%s", out)
	}
}

func TestCpRoundTrip(t *testing.T) {
	treeHome(t)
	src := filepath.Join(t.TempDir(), "src")
	files := map[string][]byte{
		"empty":           nil,
		"one":             {'x'},
		"sub/multi":       randFile(t, filepath.Join(src, "sub/multi"), 1, 1_000_003),
		"sub/deeper/tiny": randFile(t, filepath.Join(src, "sub/deeper/tiny"), 2, 40),
		"ünï cødé/日本":     randFile(t, filepath.Join(src, "ünï cødé/日本"), 3, 5000),
	}
	for _, name := range []string{"empty", "one"} {
		if err := os.WriteFile(filepath.Join(src, name), files[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/multi", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}

	// A directory needs -r.
	mustFail(t, exitError, "cp", src, "sphere:/")
	out := mustRun(t, "--json", "cp", "-r", src, "sphere:/")
	var sum struct{ Files, Dirs, Symlinks int }
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Files != 5 || sum.Symlinks != 1 || sum.Dirs != 5 {
		t.Fatalf("cp --json = %s (%v), want 5 files, 1 symlink, 5 dirs", out, err)
	}
	if got := strings.Join(lsNames(t, "/src"), " "); got != "empty emptydir/ link one sub/ ünï cødé/" {
		t.Fatalf("ls /src = %q", got)
	}
	long := mustRun(t, "ls", "-l", "/src")
	if !strings.Contains(long, "link -> sub/multi") || !strings.Contains(long, "-rw------- ") {
		t.Fatalf("ls -l /src lacks the symlink target or the mode:\n%s", long)
	}

	// Back out: byte-identical, symlink kept.
	back := filepath.Join(t.TempDir(), "back")
	mustRun(t, "cp", "-r", "sphere:/src", back)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(back, name))
		if err != nil || sha256.Sum256(got) != sha256.Sum256(want) {
			t.Fatalf("%s: copied back %d bytes (err %v), want %d", name, len(got), err, len(want))
		}
	}
	if target, err := os.Readlink(filepath.Join(back, "link")); err != nil || target != "sub/multi" {
		t.Fatalf("link copied back as %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(back, "one")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode of one not kept: %v %v", fi.Mode(), err)
	}

	// Single files both ways, into a directory and to a new name.
	mustRun(t, "cp", filepath.Join(src, "sub/multi"), "sphere:/src/emptydir")
	mustRun(t, "cp", "sphere:/src/emptydir/multi", filepath.Join(back, "again"))
	if got, _ := os.ReadFile(filepath.Join(back, "again")); !bytes.Equal(got, files["sub/multi"]) {
		t.Fatalf("single-file round trip differs (%d bytes)", len(got))
	}
	// Grid to grid.
	mustRun(t, "cp", "sphere:/src/one", "sphere:/one-copy")
	mustRun(t, "cp", "sphere:/one-copy", filepath.Join(back, "one-copy"))
	if got, _ := os.ReadFile(filepath.Join(back, "one-copy")); string(got) != "x" {
		t.Fatalf("grid-to-grid copy = %q", got)
	}
	mustFail(t, exitError, "cp", "sphere:/missing", filepath.Join(back, "x"))
}

func TestShare(t *testing.T) {
	treeHome(t)
	src := filepath.Join(t.TempDir(), "s")
	want := randFile(t, filepath.Join(src, "inner/file"), 9, 200_000)
	if err := os.WriteFile(filepath.Join(src, "top-secret"), []byte("owner only"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "cp", "-r", src, "sphere:/")
	rc := strings.TrimSpace(mustRun(t, "share", "/s/inner"))
	if !strings.HasPrefix(rc, "sphere:") || strings.Contains(rc, "-rw") || strings.ContainsAny(rc, " \n") {
		t.Fatalf("share printed %q, want one read cap", rc)
	}
	// The read cap lists the subfolder only, reads the file, refuses writes.
	if got := strings.Join(lsNames(t, rc), " "); got != "file" {
		t.Fatalf("ls READCAP = %q, want only the subfolder's file", got)
	}
	out := filepath.Join(t.TempDir(), "got")
	mustRun(t, "cp", rc+"/file", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatalf("file through the read cap differs (%d bytes)", len(got))
	}
	errs := mustFail(t, exitError, "mkdir", rc+"/new")
	if !strings.Contains(errs, "read-only") {
		t.Fatalf("mkdir under a read cap: want a read-only error, got %s", errs)
	}
	mustFail(t, exitError, "cp", filepath.Join(src, "top-secret"), rc+"/")
	mustFail(t, exitError, "rm", rc+"/file")
	// A file's read cap too, and --json.
	var js struct{ Path, Readcap string }
	if err := json.Unmarshal([]byte(mustRun(t, "--json", "share", "sphere:/s/top-secret")), &js); err != nil ||
		!strings.HasPrefix(js.Readcap, "sphere:") || js.Path != "sphere:/s/top-secret" {
		t.Fatalf("share --json = %+v, %v", js, err)
	}
	// A local path outside any mount has no read cap.
	mustFail(t, exitError, "share", src)
	// "/" exists locally but is not in a mount: it means the drive's top.
	if a, b := mustRun(t, "share", "/"), mustRun(t, "share", "sphere:/"); a != b || !strings.HasPrefix(a, "sphere:") {
		t.Fatalf("share / = %q, share sphere:/ = %q", a, b)
	}
}

// FuzzParseTreeArg: any argument parses or errs, never panics, and a parsed
// path is clean (no empty, "." or ".." elements) and round-trips.
func FuzzParseTreeArg(f *testing.F) {
	for _, s := range []string{"sphere:/a/b", "sphere:", "/x/../y", "sphere:dir-ro:aaaa/b", "a//b/./c", "sphere:lit:nbuqu/x"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, plain bool) {
		ref, isTree, err := parseTreeArg(s, plain)
		if err != nil || !isTree {
			return
		}
		if ref.path != "" {
			for _, el := range strings.Split(ref.path, "/") {
				if el == "" || el == "." || el == ".." {
					t.Fatalf("parseTreeArg(%q) path %q has element %q", s, ref.path, el)
				}
			}
		}
		again, _, err := parseTreeArg(ref.String(), false)
		if err != nil || again != ref {
			t.Fatalf("round trip of %q: %q -> %+v, %v", s, ref.String(), again, err)
		}
	})
}
