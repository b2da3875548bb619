package fusetest

import (
	"bytes"
	"os"
	"testing"

	"github.com/sphere-grid/sphere/grid/faultserver"
)

// TestUploadFailureSurfaces: when the grid cannot take a file, close(2)
// and fsync(2) report an error (never a silent loss, unlike Tahoe's SFTP
// frontend), the data stays readable in the mount, and once the grid is
// back, unmounting saves it.
func TestUploadFailureSurfaces(t *testing.T) {
	requireFUSE(t)
	if os.Getenv("SPHERE_FUSETEST_BACKEND") == "loopback" {
		t.Skip("needs Sphere's grid")
	}
	b, servers := newFaultGridBackend(t)
	w := &world{b: b}
	m := w.mount(t, "")
	if err := writeSync(m.p("before"), []byte("saved before the outage")); err != nil {
		t.Fatal(err)
	}
	setVanished := func(on bool) {
		// 4 of 10 gone: fewer than happy=7 remain, so no upload can succeed.
		for _, s := range servers[:4] {
			s.Update(func(f *faultserver.Faults) { f.Vanish = on })
		}
	}
	data := bytes.Repeat([]byte("sphere "), 30_000) // 210 kB: a real upload, not a literal cap
	setVanished(true)

	f, err := os.Create(m.p("during"))
	if err != nil {
		t.Fatalf("create during the outage: %v", err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatalf("write during the outage (goes to the local cache): %v", err)
	}
	if err := f.Sync(); err == nil {
		t.Errorf("fsync succeeded while the grid could not store the file")
	}
	if err := f.Close(); err == nil {
		t.Errorf("close succeeded while the grid could not store the file")
	} else {
		t.Logf("close during the outage: %v", err)
	}
	// Not lost: the mount still shows the written bytes.
	if got, err := os.ReadFile(m.p("during")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("during the outage, read back %d bytes, %v; want %d", len(got), err, len(data))
	}

	setVanished(false)
	m.remount(t) // unmount saves what is pending
	if got, err := os.ReadFile(m.p("during")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the outage and a remount, read %d bytes, %v; want %d", len(got), err, len(data))
	}
	if got, err := os.ReadFile(m.p("before")); err != nil || string(got) != "saved before the outage" {
		t.Fatalf("file saved before the outage: %q, %v", got, err)
	}
}
