package fusetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/fs/journal"
)

var journalStat = journal.Stat

// Environment of the crash test's child process.
const (
	envChild = "SPHERE_FUSETEST_CHILD"   // "mount": serve a mount until killed
	envStore = "SPHERE_FUSETEST_STORE"   // directory of the bolt stores
	envMnt   = "SPHERE_FUSETEST_MNT"     // where to mount
	envRoot  = "SPHERE_FUSETEST_ROOT"    // root directory cap
	envJrnl  = "SPHERE_FUSETEST_JOURNAL" // write-back journal directory ("" for none)
)

// TestMain runs the crash test's child when TestCrash starts this binary
// with envChild=mount: it mounts the tree in envStore at envMnt, says READY
// on stdout and serves until it is killed.
func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "mount" {
		os.Exit(m.Run())
	}
	t := &childTB{}
	b := openBoltBackend(t, os.Getenv(envStore))
	un, err := b.mount(t, os.Getenv(envMnt), os.Getenv(envRoot), mountOpts{journal: os.Getenv(envJrnl)})
	if err != nil {
		t.Fatalf("child mount: %v", err)
	}
	fmt.Println("READY")
	// Serve until killed; bounded so a lost parent cannot leave us forever.
	time.Sleep(5 * time.Minute)
	_ = un()
	t.Fatalf("child was not killed within 5 minutes")
}

// childTB is the little of testing.TB the crash child's helpers use.
type childTB struct{ testing.TB }

func (childTB) Helper()                           {}
func (childTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (childTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (childTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
func (childTB) Fatal(args ...any) { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (childTB) Cleanup(func())    {}
func (childTB) TempDir() string {
	d, err := os.MkdirTemp(os.Getenv(envStore), "child-") // removed with the store
	if err != nil {
		panic(err)
	}
	return d
}

// TestCrash kills the process holding the mount in the middle of a write.
// After a fresh mount on the same stores, every file fsynced before the kill
// is intact and the whole tree is readable. With the write-back journal
// (as `sphere mount` runs), also every file merely closed before the kill,
// though not yet uploaded, is there after the restart, uploaded, and
// byte-identical.
func TestCrash(t *testing.T) {
	t.Run("no-journal", func(t *testing.T) { testCrash(t, false) })
	t.Run("journal", func(t *testing.T) { testCrash(t, true) })
}

func testCrash(t *testing.T, withJournal bool) {
	requireFUSE(t)
	if os.Getenv("SPHERE_FUSETEST_BACKEND") == "loopback" {
		t.Skip("the crash test needs Sphere's on-disk grid")
	}
	store := t.TempDir()
	b := openBoltBackend(t, store)
	root := b.rootCapString()
	b.close(t) // the child takes the stores' locks

	mntDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	jdir := ""
	if withJournal {
		jdir = filepath.Join(t.TempDir(), "journal")
	}
	cmd.Env = append(os.Environ(), envChild+"=mount", envStore+"="+store, envMnt+"="+mntDir, envRoot+"="+root, envJrnl+"="+jdir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var childErr bytes.Buffer
	cmd.Stderr = &childErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		_ = exec.Command("umount", "-l", mntDir).Run()
	})
	ready := make(chan error, 1)
	var childOut bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			childOut.WriteString(sc.Text() + "\n")
			if sc.Text() == "READY" {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("child exited before READY: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\nstdout: %s\nstderr: %s", err, childOut.String(), childErr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("child not READY after 2 minutes\nstderr: %s", childErr.String())
	}

	// Files made durable before the kill.
	want := map[string][]byte{}
	if err := os.MkdirAll(filepath.Join(mntDir, "d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, size := range []int{0, 1, 4096, 200_000, 1_500_000} {
		p := fmt.Sprintf("d/e/synced-%d", i)
		data := bytes.Repeat([]byte{byte('a' + i)}, size)
		for j := range data {
			data[j] ^= byte(j / 251)
		}
		if err := writeSync(filepath.Join(mntDir, p), data); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		want[p] = data
	}
	// A rename, then an fsync of another file, makes the rename durable.
	if err := os.Rename(filepath.Join(mntDir, "d/e/synced-1"), filepath.Join(mntDir, "renamed")); err != nil {
		t.Fatal(err)
	}
	want["renamed"] = want["d/e/synced-1"]
	delete(want, "d/e/synced-1")
	if err := writeSync(filepath.Join(mntDir, "top"), []byte("top file")); err != nil {
		t.Fatal(err)
	}
	want["top"] = []byte("top file")

	// With the journal: many small files, closed and never fsynced, in new
	// and old directories, some renamed, removed or chmodded after close,
	// all before the upload batch (1 s after the first close) can be sure
	// to have run; the kill comes right after.
	closedOnly := map[string][]byte{}
	if withJournal {
		if err := os.MkdirAll(filepath.Join(mntDir, "small/sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			p := fmt.Sprintf("small/sub/f%03d", i)
			if i%2 == 0 {
				p = fmt.Sprintf("d/e/g%03d", i)
			}
			data := bytes.Repeat([]byte{byte(i)}, 100+i*37)
			if err := os.WriteFile(filepath.Join(mntDir, p), data, 0o644); err != nil {
				t.Fatalf("write %s: %v", p, err)
			}
			closedOnly[p] = data
		}
		if err := os.Rename(filepath.Join(mntDir, "small/sub/f001"), filepath.Join(mntDir, "small/moved")); err != nil {
			t.Fatal(err)
		}
		closedOnly["small/moved"] = closedOnly["small/sub/f001"]
		delete(closedOnly, "small/sub/f001")
		if err := os.Remove(filepath.Join(mntDir, "small/sub/f003")); err != nil {
			t.Fatal(err)
		}
		delete(closedOnly, "small/sub/f003")
		if err := os.Chmod(filepath.Join(mntDir, "small/sub/f005"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Overwrite a synced file, close only.
		over := []byte("overwritten after the sync, closed, never fsynced")
		if err := os.WriteFile(filepath.Join(mntDir, "d/e/synced-2"), over, 0o644); err != nil {
			t.Fatal(err)
		}
		want["d/e/synced-2"] = over
	}

	// Mid-write: a large file streaming in, never fsynced, and an
	// overwrite of a synced file that is never fsynced either.
	written := make(chan int64, 1)
	go func() {
		f, err := os.Create(filepath.Join(mntDir, "inflight"))
		if err != nil {
			written <- -1
			return
		}
		defer f.Close()
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		var n int64
		for i := 0; i < 200; i++ {
			if _, err := f.Write(chunk); err != nil {
				break
			}
			n += int64(len(chunk))
			if n%(8<<20) == 0 {
				// fsync now and then, so the kill may land mid-upload.
				if err := f.Sync(); err != nil {
					break
				}
				if n == 8<<20 {
					written <- n
				}
			}
		}
		select {
		case written <- n:
		default:
		}
	}()
	select {
	case n := <-written:
		if n < 0 {
			t.Fatal("could not create the in-flight file")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("in-flight write did not reach 8 MiB in 2 minutes")
	}
	if withJournal {
		// Kill before the first upload batch could finish, so the files
		// are in the journal only (the batch may have started: then some
		// are on the grid already, which the checks below allow).
		rec, _, err := journalStat(jdir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("journal holds %d records at the kill", rec)
		if rec == 0 {
			t.Fatal("journal empty before the kill: nothing tests the replay")
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	killed = true
	_ = cmd.Wait()
	if out, err := exec.Command("umount", "-l", mntDir).CombinedOutput(); err != nil {
		t.Logf("umount -l %s: %v %s", mntDir, err, out)
	}

	// Fresh mount on the same stores.
	b2 := openBoltBackend(t, store)
	defer b2.close(t)
	w := &world{b: b2}
	m := w.mountWith(t, root, mountOpts{journal: jdir})
	if withJournal {
		for p, data := range closedOnly {
			want[p] = data
		}
		// Uploaded by the restart (before the mount served): a fresh tree
		// on the grid alone, without the journal, sees every file.
		for p, data := range closedOnly {
			got, err := b2.readFromGrid(t, p)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("after the restart, %s not on the grid: %v", p, err)
			}
		}
		if rec, _, err := journalStat(jdir); err != nil || rec != 0 {
			t.Errorf("journal after the replay: %d records (%v), want 0", rec, err)
		}
		if fi, err := os.Stat(m.p("small/sub/f005")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("chmod after close lost: %v %v", fi, err)
		}
		if _, err := os.Stat(m.p("small/sub/f003")); !os.IsNotExist(err) {
			t.Errorf("removed after close, back after the restart: %v", err)
		}
		if _, err := os.Stat(m.p("small/sub/f001")); !os.IsNotExist(err) {
			t.Errorf("renamed after close, old name back after the restart: %v", err)
		}
	}
	for p, data := range want {
		got, err := os.ReadFile(m.p(p))
		if err != nil {
			t.Errorf("after the crash, %s: %v", p, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("after the crash, %s: %s", p, diffBytes(data, got))
		}
	}
	// The in-flight file may hold any prefix of what was written, but only
	// bytes that were written.
	if got, err := os.ReadFile(m.p("inflight")); err == nil {
		if i := bytes.IndexFunc(got, func(r rune) bool { return r != 'x' }); i >= 0 {
			t.Errorf("after the crash, inflight (%d bytes) holds a byte never written at %d", len(got), i)
		}
		t.Logf("after the crash, inflight holds %d bytes", len(got))
	} else if !os.IsNotExist(err) {
		t.Errorf("after the crash, read inflight: %v", err)
	}
	// The whole tree is readable, whatever state the in-flight file is in.
	var seen []string
	err = filepath.WalkDir(m.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.dir, p)
		seen = append(seen, rel)
		if d.Type().IsRegular() {
			if _, err := hashFile(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the crash, the tree is not readable: %v (saw %s)", err, strings.Join(seen, " "))
	}
	t.Logf("after the crash the tree holds: %s", strings.Join(seen, " "))
}
