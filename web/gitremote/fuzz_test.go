package gitremote

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, ok := range []string{"", "capabilities", "list", "list for-push", "push refs/heads/main:refs/heads/main",
		"push +refs/heads/a:refs/heads/b", "fetch " + strings.Repeat("a", 40) + " refs/heads/main", "option verbosity 1"} {
		if _, err := ParseCommand(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"connect git-upload-pack", "list all", "push main", "fetch abc main", "option", "capabilities x", " "} {
		if _, err := ParseCommand(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	u, err := ParseRefspec("+refs/heads/a:refs/heads/b")
	if err != nil || !u.Force || u.Src != "refs/heads/a" || u.Dst != "refs/heads/b" {
		t.Fatalf("%+v %v", u, err)
	}
	if u, err := ParseRefspec(":refs/heads/gone"); err != nil || u.Src != "" {
		t.Fatalf("delete: %+v %v", u, err)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"capabilities", "list for-push", "push +a:b", "fetch " + strings.Repeat("0", 40) + " x", "option a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		if c.Name == "push" {
			if _, err := ParseRefspec(c.Args[0]); err != nil && !strings.HasSuffix(c.Args[0], ":") {
				t.Fatalf("accepted push %q whose refspec fails: %v", line, err)
			}
		}
	})
}
