package web

import (
	"strings"
	"testing"
)

func FuzzParseSiteID(f *testing.F) {
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add(strings.Repeat("7", 26))
	f.Add("../../etc/passwd")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSiteID(s)
		if err != nil {
			return
		}
		if len(id) != SiteIDLen || strings.ContainsAny(id, "./\\\x00") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzCleanTreePath(f *testing.F) {
	for _, s := range []string{"", "a/b", "../x", "a/../b", "/a/", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := cleanTreePath(s)
		if err != nil || p == "" {
			return
		}
		for _, el := range strings.Split(p, "/") {
			if el == "" || el == "." || el == ".." {
				t.Fatalf("cleanTreePath(%q) = %q", s, p)
			}
		}
	})
}
