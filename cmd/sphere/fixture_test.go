package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs"
)

// The home fixture: a home (config, secrets, the local grid's bolt stores,
// root.cap) written by the code of main on 2026-12-04, before mutable
// format v2, with a small drive written through the mount. Every later
// version must read it back byte-identical (TestHomeFixtureV1).
const homeFixture = "testdata/home-2026-12-04.tar.gz"

// fixtureManifest lists what the fixture's drive holds.
type fixtureManifest struct {
	Files []fixtureFile `json:"files"`
	// MutableCap is a mut-rw file made with grid.Client.CreateMutable and
	// published twice; MutableSHA256 is its last content's hash.
	MutableCap    string `json:"mutableCap"`
	MutableSHA256 string `json:"mutableSha256"`
}

type fixtureFile struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // file, dir, symlink
	Mode   uint32 `json:"mode,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Target string `json:"target,omitempty"`
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestMakeHomeFixture regenerates the fixture when SPHERE_MAKE_FIXTURE=1.
// It was run once with the code of the day; rerunning it with later code
// would defeat its purpose.
func TestMakeHomeFixture(t *testing.T) {
	if os.Getenv("SPHERE_MAKE_FIXTURE") != "1" {
		t.Skip("set SPHERE_MAKE_FIXTURE=1 to regenerate " + homeFixture)
	}
	requireFuse(t)
	dst := filepath.Join(t.TempDir(), "home")
	t.Setenv("SPHERE_HOME", dst)
	mustRun(t, "init")
	mnt := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	done := startMount(t, mnt)
	w := func(p string, b []byte) {
		t.Helper()
		full := filepath.Join(mnt, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("hello.txt", []byte("hello, sphere\n"))
	w("empty", nil)
	w("docs/notes/deep/a.bin", randFile(t, filepath.Join(t.TempDir(), "a"), 1, 3_000))
	w("docs/notes/b.bin", randFile(t, filepath.Join(t.TempDir(), "b"), 2, 131_200)) // two 128 KiB segments
	w("docs/readme.md", []byte("# docs\n"))
	for i := range 5 {
		w(filepath.Join("many", "f"+string(rune('0'+i))), bytes.Repeat([]byte{byte(i)}, 4096))
	}
	// A file edited in place three times: its directory entry is rewritten
	// each time (new seq of the directory's mutable slot).
	w("edit.txt", []byte("version 1\n"))
	w("edit.txt", []byte("version 2, longer\n"))
	f, err := os.OpenFile(filepath.Join(mnt, "edit.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("appended\n")
	f.Close()
	if err := os.Chmod(filepath.Join(mnt, "docs/readme.md"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("docs/readme.md", filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sync").CombinedOutput(); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	var m fixtureManifest
	filepath.WalkDir(mnt, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(mnt, p)
		if rel == "." {
			return nil
		}
		fi, _ := d.Info()
		ff := fixtureFile{Path: filepath.ToSlash(rel), Mode: uint32(fi.Mode().Perm())}
		switch {
		case d.IsDir():
			ff.Type = "dir"
		case fi.Mode()&iofs.ModeSymlink != 0:
			ff.Type, ff.Mode = "symlink", 0
			ff.Target, _ = os.Readlink(p)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			ff.Type, ff.Size, ff.SHA256 = "file", int64(len(b)), sha(b)
		}
		m.Files = append(m.Files, ff)
		return nil
	})
	stopMount(t, mnt, done)

	// A standalone mutable file with two versions.
	h, err := home.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, closeFn, err := openClient(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := c.CreateMutable(ctx, []byte("mutable v1"), false)
	if err != nil {
		t.Fatal(err)
	}
	final := []byte("mutable v2: the newest version")
	if _, err := c.Publish(ctx, mc.(caps.MutableWriteCap), final); err != nil {
		t.Fatal(err)
	}
	closeFn()
	m.MutableCap, m.MutableSHA256 = mc.String(), sha(final)
	os.RemoveAll(filepath.Join(dst, "cache"))
	os.RemoveAll(filepath.Join(dst, "run"))
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile("testdata/home-2026-12-04.json", append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(homeFixture)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	if err := tw.AddFS(os.DirFS(dst)); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(tw.Close(), zw.Close(), out.Close()); err != nil {
		t.Fatal(err)
	}
}

// copyFixture copies the fixture home into a fresh temporary directory (the
// stores are opened read-write) and points SPHERE_HOME at it.
func copyFixture(t *testing.T) (string, fixtureManifest) {
	t.Helper()
	var m fixtureManifest
	b, err := os.ReadFile("testdata/home-2026-12-04.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "home")
	f, err := os.Open(homeFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, filepath.FromSlash(hd.Name))
		if hd.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o700)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o700)
		b, err := io.ReadAll(io.LimitReader(tr, 8<<20))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SPHERE_HOME", dst)
	return dst, m
}

// TestHomeFixtureV1 reads the home written by the code of 2026-12-04 and
// checks every file, directory, symlink and the mutable file byte by byte.
func TestHomeFixtureV1(t *testing.T) {
	dst, m := copyFixture(t)
	h, err := home.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, closeFn, err := openClient(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	g := fs.FromClient(c)
	root, err := userRootCap(ctx, h, g)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := fs.New(ctx, g, root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close(ctx)
	checkFixtureTree(t, ctx, tree, m)

	mc, err := caps.Parse(m.MutableCap)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := c.Retrieve(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	if sha(got) != m.MutableSHA256 {
		t.Fatalf("mutable file: got %q", got)
	}
}

// checkFixtureTree compares the tree with the manifest: the same paths and
// nothing else, same types, modes, sizes and bytes.
func checkFixtureTree(t *testing.T, ctx context.Context, tree *fs.FS, m fixtureManifest) {
	t.Helper()
	want := map[string]fixtureFile{}
	for _, f := range m.Files {
		want[f.Path] = f
	}
	var seen []string
	var walk func(dir string)
	walk = func(dir string) {
		infos, err := tree.ReadDir(ctx, dir)
		if err != nil {
			t.Fatalf("readdir %q: %v", dir, err)
		}
		for _, in := range infos {
			p := path.Join(dir, in.Name)
			seen = append(seen, p)
			w, ok := want[p]
			if !ok {
				t.Errorf("%s: not in the manifest", p)
				continue
			}
			mode := in.FileMode()
			switch {
			case mode.IsDir():
				if w.Type != "dir" {
					t.Errorf("%s: a directory, want %s", p, w.Type)
				}
				walk(p)
			case mode&iofs.ModeSymlink != 0:
				target, err := tree.Readlink(ctx, p)
				if err != nil || w.Type != "symlink" || target != w.Target {
					t.Errorf("%s: symlink to %q (%v), want %s %q", p, target, err, w.Type, w.Target)
				}
			default:
				b, err := iofs.ReadFile(tree.IOFS(ctx), p)
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				if w.Type != "file" || int64(len(b)) != w.Size || sha(b) != w.SHA256 {
					t.Errorf("%s: %d bytes sha256 %s, want %s of %d bytes %s", p, len(b), sha(b)[:12], w.Type, w.Size, w.SHA256)
				}
			}
			if w.Type != "symlink" && uint32(mode.Perm()) != w.Mode {
				t.Errorf("%s: mode %o, want %o", p, mode.Perm(), w.Mode)
			}
		}
	}
	walk("")
	sort.Strings(seen)
	if len(seen) != len(m.Files) {
		t.Errorf("tree has %d entries, manifest %d: %v", len(seen), len(m.Files), seen)
	}
}

// slotVersions returns the format version byte of every share of cp's slot
// on the home's local stores.
func slotVersions(t *testing.T, h *home.Home, cp caps.Cap) []byte {
	t.Helper()
	ctx := context.Background()
	servers, closeFn, err := openLocalServers(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	vc, ok := caps.MutableVerifyCapOf(cp)
	if !ok {
		t.Fatalf("%s is not mutable", cp.Kind())
	}
	var out []byte
	for _, s := range servers {
		ss, err := s.ReadSlot(ctx, vc.SI)
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range ss {
			out = append(out, sh.Data[0])
		}
	}
	if len(out) == 0 {
		t.Fatalf("no shares of %v", cp)
	}
	return out
}

func allVersion(vs []byte, want byte) bool {
	for _, v := range vs {
		if v != want {
			return false
		}
	}
	return true
}

// TestHomeFixtureUpgrade: in the home of 2026-12-04 every directory and
// mutable file is format v1; a write rewrites exactly what it touches as
// v2 (the root directory, the changed directory, the mutable file), and the
// untouched v1 directories are still read beside them.
func TestHomeFixtureUpgrade(t *testing.T) {
	dst, m := copyFixture(t)
	h, err := home.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mc, err := caps.Parse(m.MutableCap)
	if err != nil {
		t.Fatal(err)
	}
	c, closeFn, err := openClient(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	g := fs.FromClient(c)
	root, err := userRootCap(ctx, h, g)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := fs.New(ctx, g, root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	docs, _, err := tree.Caps(ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	many, _, err := tree.Caps(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	tree.Close(ctx)
	closeFn()
	for _, cp := range []caps.Cap{root, docs, many, mc} {
		if vs := slotVersions(t, h, cp); !allVersion(vs, caps.MutableVersion1) {
			t.Fatalf("fixture %s: share versions %v, want all 1", cp.Kind(), vs)
		}
	}

	c, closeFn, err = openClient(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	tree, err = fs.New(ctx, fs.FromClient(c), root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"many/new", "top"} {
		if err := tree.Mkdir(ctx, d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := tree.Close(ctx); err != nil {
		t.Fatal(err)
	}
	newer := []byte("rewritten by the new code")
	if _, err := c.Publish(ctx, mc.(caps.MutableWriteCap), newer); err != nil {
		t.Fatal(err)
	}
	closeFn()
	for name, cp := range map[string]caps.Cap{"root": root, "many": many, "mutable": mc} {
		if vs := slotVersions(t, h, cp); !allVersion(vs, caps.MutableVersion2) {
			t.Errorf("%s after a write: share versions %v, want all 2", name, vs)
		}
	}
	if vs := slotVersions(t, h, docs); !allVersion(vs, caps.MutableVersion1) {
		t.Errorf("docs, untouched: share versions %v, want all 1", vs)
	}

	// Everything reads back, old and new side by side.
	c, closeFn, err = openClient(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	tree, err = fs.New(ctx, fs.FromClient(c), root, fs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close(ctx)
	m.Files = append(m.Files, fixtureFile{Path: "many/new", Type: "dir", Mode: 0o755}, fixtureFile{Path: "top", Type: "dir", Mode: 0o755})
	checkFixtureTree(t, ctx, tree, m)
	got, _, err := c.Retrieve(ctx, mc)
	if err != nil || !bytes.Equal(got, newer) {
		t.Fatalf("mutable file after upgrade: %q, %v", got, err)
	}
}
