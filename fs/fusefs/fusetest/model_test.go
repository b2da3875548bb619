package fusetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestModel drives the mount with a seeded random sequence of file
// operations (write, pwrite, truncate, append, rename, unlink, fsync, close,
// unmount+remount) and checks it against an in-memory model: the fsynced
// file after each fsync (through the mount, and straight from the grid when
// the backend can read it there), the whole tree every 250 operations and
// after each remount. SPHERE_MODEL_SEED=N replays a failing run;
// SPHERE_MODEL_OPS=N changes the length (default 5000).
func TestModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SPHERE_MODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SPHERE_MODEL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	ops := 5000
	if s := os.Getenv("SPHERE_MODEL_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("SPHERE_MODEL_OPS=%q: want a positive count", s)
		}
		ops = v
	}
	t.Logf("seed %d (replay with SPHERE_MODEL_SEED=%d)", seed, seed)
	w := newWorld(t)
	m := w.mount(t, "")
	mt := &modelTest{
		t: t, m: m, seed: seed,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		files: map[string][]byte{},
		open:  map[string]*os.File{},
		dirs:  []string{"", "d1", "d1/d2", "ü"},
	}
	for _, d := range mt.dirs[1:] {
		if err := os.MkdirAll(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer mt.closeAll()
	counts := map[string]int{}
	for i := 0; i < ops; i++ {
		mt.step = i
		name := mt.do()
		counts[name]++
		if i%250 == 249 {
			mt.checkTree("periodic check")
		}
	}
	mt.closeAll()
	mt.remount()
	t.Logf("%d ops: %v", ops, counts)
}

const (
	modelMaxSize = 400 << 10 // files stay below this, crossing a few segments
	modelNames   = 8         // names per directory
)

type modelTest struct {
	t     *testing.T
	m     *mnt
	seed  uint64
	step  int
	rng   *rand.Rand
	files map[string][]byte   // path -> contents
	open  map[string]*os.File // path -> an O_RDWR handle on it
	dirs  []string
	trail []string // last operations, printed on failure
}

func (mt *modelTest) fatalf(format string, args ...any) {
	mt.t.Helper()
	mt.t.Fatalf("seed %d, op %d: %s\nlast operations:\n%s", mt.seed, mt.step,
		fmt.Sprintf(format, args...), strings.Join(mt.trail, "\n"))
}

func (mt *modelTest) note(format string, args ...any) {
	mt.trail = append(mt.trail, fmt.Sprintf("%5d ", mt.step)+fmt.Sprintf(format, args...))
	if len(mt.trail) > 30 {
		mt.trail = mt.trail[1:]
	}
}

// randPath picks any name in any directory; existing picks an existing file.
func (mt *modelTest) randPath() string {
	d := mt.dirs[mt.rng.IntN(len(mt.dirs))]
	return filepath.ToSlash(filepath.Join(d, "f"+strconv.Itoa(mt.rng.IntN(modelNames))))
}

func (mt *modelTest) existing() (string, bool) {
	if len(mt.files) == 0 {
		return "", false
	}
	names := make([]string, 0, len(mt.files))
	for p := range mt.files {
		names = append(names, p)
	}
	sort.Strings(names)
	return names[mt.rng.IntN(len(names))], true
}

func (mt *modelTest) randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(mt.rng.Uint32())
	}
	return b
}

// randSize favours small sizes but reaches a few segments.
func (mt *modelTest) randSize() int {
	switch mt.rng.IntN(4) {
	case 0:
		return mt.rng.IntN(16)
	case 1, 2:
		return mt.rng.IntN(8 << 10)
	default:
		return mt.rng.IntN(modelMaxSize / 2)
	}
}

// handle returns an open handle on existing file p.
func (mt *modelTest) handle(p string) *os.File {
	if f, ok := mt.open[p]; ok {
		return f
	}
	f, err := os.OpenFile(mt.m.p(p), os.O_RDWR, 0)
	if err != nil {
		mt.fatalf("open %s: %v", p, err)
	}
	mt.open[p] = f
	return f
}

func (mt *modelTest) closeHandle(p string) {
	if f, ok := mt.open[p]; ok {
		delete(mt.open, p)
		if err := f.Close(); err != nil {
			mt.fatalf("close %s: %v", p, err)
		}
	}
}

func (mt *modelTest) closeAll() {
	names := make([]string, 0, len(mt.open))
	for p := range mt.open {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		mt.closeHandle(p)
	}
}

// do runs one random operation and returns its name.
func (mt *modelTest) do() string {
	r := mt.rng.IntN(100)
	p, ok := mt.existing()
	switch {
	case r < 15 || !ok: // write a whole file (create or replace contents)
		p = mt.randPath()
		data := mt.randBytes(mt.randSize())
		mt.note("write %s %d", p, len(data))
		f, err := os.OpenFile(mt.m.p(p), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			mt.fatalf("create %s: %v", p, err)
		}
		if _, err := f.Write(data); err != nil {
			mt.fatalf("write %s: %v", p, err)
		}
		if err := f.Close(); err != nil {
			mt.fatalf("close %s: %v", p, err)
		}
		mt.files[p] = data
		return "write"
	case r < 35: // pwrite through a kept handle, maybe past the end
		cur := mt.files[p]
		off := mt.rng.IntN(len(cur) + 4096)
		data := mt.randBytes(1 + mt.rng.IntN(64<<10))
		if off+len(data) > modelMaxSize {
			return mt.truncate(p, mt.rng.IntN(len(cur)+1))
		}
		mt.note("pwrite %s off=%d len=%d", p, off, len(data))
		if _, err := mt.handle(p).WriteAt(data, int64(off)); err != nil {
			mt.fatalf("pwrite %s: %v", p, err)
		}
		if off+len(data) > len(cur) {
			grown := make([]byte, off+len(data))
			copy(grown, cur)
			cur = grown
		}
		copy(cur[off:], data)
		mt.files[p] = cur
		return "pwrite"
	case r < 45:
		return mt.truncate(p, mt.rng.IntN(len(mt.files[p])+8192))
	case r < 55: // append
		data := mt.randBytes(1 + mt.rng.IntN(16<<10))
		if len(mt.files[p])+len(data) > modelMaxSize {
			return mt.truncate(p, 0)
		}
		mt.note("append %s %d", p, len(data))
		f, err := os.OpenFile(mt.m.p(p), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			mt.fatalf("open append %s: %v", p, err)
		}
		if _, err := f.Write(data); err != nil {
			mt.fatalf("append %s: %v", p, err)
		}
		if err := f.Close(); err != nil {
			mt.fatalf("close append %s: %v", p, err)
		}
		mt.files[p] = append(append([]byte(nil), mt.files[p]...), data...)
		return "append"
	case r < 63: // rename, possibly over an existing file, possibly across dirs
		dst := mt.randPath()
		if dst == p {
			return "rename-self"
		}
		mt.note("rename %s -> %s", p, dst)
		mt.closeHandle(dst) // its inode is about to become unreachable
		if err := os.Rename(mt.m.p(p), mt.m.p(dst)); err != nil {
			mt.fatalf("rename %s -> %s: %v", p, dst, err)
		}
		mt.files[dst] = mt.files[p]
		delete(mt.files, p)
		if f, ok := mt.open[p]; ok {
			delete(mt.open, p)
			mt.open[dst] = f
		}
		return "rename"
	case r < 68:
		mt.note("unlink %s", p)
		mt.closeHandle(p)
		if err := os.Remove(mt.m.p(p)); err != nil {
			mt.fatalf("unlink %s: %v", p, err)
		}
		delete(mt.files, p)
		if _, err := os.Lstat(mt.m.p(p)); !os.IsNotExist(err) {
			mt.fatalf("after unlink, lstat %s: %v, want ENOENT", p, err)
		}
		return "unlink"
	case r < 80: // fsync, then the file must match through the mount and on the grid
		mt.note("fsync %s", p)
		if err := mt.handle(p).Sync(); err != nil {
			mt.fatalf("fsync %s: %v", p, err)
		}
		mt.checkFile(p)
		if gv, ok := mt.m.w.b.(gridReader); ok {
			got, err := gv.readFromGrid(mt.t, p)
			if err != nil {
				mt.fatalf("after fsync, read %s from the grid: %v", p, err)
			}
			if !bytes.Equal(got, mt.files[p]) {
				mt.fatalf("after fsync, %s on the grid: %s", p, diffBytes(mt.files[p], got))
			}
		}
		return "fsync"
	case r < 88:
		mt.note("close %s", p)
		mt.closeHandle(p)
		return "close"
	case r < 98: // read back through a kept handle
		mt.note("pread %s", p)
		cur := mt.files[p]
		off := mt.rng.IntN(len(cur) + 1)
		n := mt.rng.IntN(len(cur) - off + 1)
		got := make([]byte, n)
		if n > 0 {
			if _, err := mt.handle(p).ReadAt(got, int64(off)); err != nil {
				mt.fatalf("pread %s off=%d len=%d: %v", p, off, n, err)
			}
		}
		if !bytes.Equal(got, cur[off:off+n]) {
			mt.fatalf("pread %s off=%d len=%d: %s", p, off, n, diffBytes(cur[off:off+n], got))
		}
		return "pread"
	default:
		mt.note("remount")
		mt.closeAll()
		mt.remount()
		return "remount"
	}
}

func (mt *modelTest) truncate(p string, n int) string {
	mt.note("truncate %s %d", p, n)
	var err error
	if f, ok := mt.open[p]; ok && mt.rng.IntN(2) == 0 {
		err = f.Truncate(int64(n))
	} else {
		err = os.Truncate(mt.m.p(p), int64(n))
	}
	if err != nil {
		mt.fatalf("truncate %s to %d: %v", p, n, err)
	}
	cur := mt.files[p]
	if n <= len(cur) {
		mt.files[p] = cur[:n:n]
	} else {
		grown := make([]byte, n)
		copy(grown, cur)
		mt.files[p] = grown
	}
	return "truncate"
}

func (mt *modelTest) remount() {
	mt.m.remount(mt.t)
	mt.checkTree("after remount")
}

// checkFile compares p through a fresh open of the mount with the model.
func (mt *modelTest) checkFile(p string) {
	got, err := os.ReadFile(mt.m.p(p))
	if err != nil {
		mt.fatalf("read %s: %v", p, err)
	}
	if !bytes.Equal(got, mt.files[p]) {
		mt.fatalf("%s: %s", p, diffBytes(mt.files[p], got))
	}
}

// checkTree compares every directory listing and every file with the model.
func (mt *modelTest) checkTree(why string) {
	for _, d := range mt.dirs {
		ents, err := os.ReadDir(mt.m.p(d))
		if err != nil {
			mt.fatalf("%s: readdir %q: %v", why, d, err)
		}
		var got, want []string
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			got = append(got, filepath.ToSlash(filepath.Join(d, e.Name())))
		}
		for p := range mt.files {
			if filepath.ToSlash(filepath.Dir(p)) == d || (d == "" && !strings.Contains(p, "/")) {
				want = append(want, p)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			mt.fatalf("%s: dir %q lists %v, model has %v", why, d, got, want)
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			p := filepath.ToSlash(filepath.Join(d, e.Name()))
			info, err := e.Info()
			if err != nil {
				mt.fatalf("%s: stat %s: %v", why, p, err)
			}
			if info.Size() != int64(len(mt.files[p])) {
				mt.fatalf("%s: %s size %d, model %d", why, p, info.Size(), len(mt.files[p]))
			}
			mt.checkFile(p)
		}
	}
}

// diffBytes describes how got differs from want.
func diffBytes(want, got []byte) string {
	if len(want) != len(got) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Sprintf("first difference at byte %d (got %#x want %#x)", i, got[i], want[i])
		}
	}
	return "equal"
}

// gridReader is an optional backend ability: read a path of the owner's
// tree straight from the grid, bypassing the mount and its caches.
type gridReader interface {
	readFromGrid(t testing.TB, path string) ([]byte, error)
}
