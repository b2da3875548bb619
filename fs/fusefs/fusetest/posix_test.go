package fusetest

import (
	"os"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are go-fuse POSIX cases Sphere does not aim to pass, each with
// its reason. Everything else in posixtest.All must pass.
var posixSkips = map[string]string{
	"Link":                "no hard links: a directory entry names an immutable file by cap, so two names cannot share later writes",
	"LinkUnlinkRename":    "uses link(2); no hard links (see Link)",
	"XAttr":               "arbitrary user.* attributes are not stored: only user.sphere.cap and user.sphere.readcap, read-only (setxattr gives ENOTSUP)",
	"FcntlFlockLocksFile": "byte-range locks are not kept by the mount (go-fuse EnableLocks off); locks are local to one machine anyway",
}

// TestPOSIX runs every case in go-fuse's posixtest.All, each in a fresh
// directory of one mount.
func TestPOSIX(t *testing.T) {
	w := newWorld(t)
	m := w.mount(t, "")
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			dir := m.p(name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			fn(t, dir)
		})
	}
}
