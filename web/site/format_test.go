package site

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sphere-grid/sphere/caps"
)

func mustID(t testing.TB, s string) ID {
	id, err := ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func litCap(b string) caps.Cap { return caps.LitCap{Data: []byte(b)} }

func TestRefsRoundTrip(t *testing.T) {
	r := &Refs{Head: "refs/heads/main", Refs: map[string]ID{
		"refs/heads/main": mustID(t, strings.Repeat("ab", 20)),
		"refs/tags/v1":    mustID(t, strings.Repeat("01", 20)),
	}, Packs: []Pack{{Bundle: litCap("bundle"), Index: litCap("index")}}}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "sphere-site 1\nhead refs/heads/main\nref " + strings.Repeat("ab", 20) + " refs/heads/main\nref " +
		strings.Repeat("01", 20) + " refs/tags/v1\npack " + litCap("bundle").String() + " " + litCap("index").String() + "\n"
	if string(b) != want {
		t.Fatalf("encoded:\n%s\nwant:\n%s", b, want)
	}
	r2, err := ParseRefs(b)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := r2.HeadID(); !ok || id != r.Refs["refs/heads/main"] || len(r2.Packs) != 1 || len(r2.Refs) != 2 {
		t.Fatalf("parsed %+v", r2)
	}
}

func TestRefsRejects(t *testing.T) {
	id := strings.Repeat("ab", 20)
	for name, in := range map[string]string{
		"no magic":      "sphere-site 2\n",
		"no newline":    "sphere-site 1",
		"unknown":       "sphere-site 1\nfoo bar\n",
		"two heads":     "sphere-site 1\nhead refs/heads/a\nhead refs/heads/b\n",
		"short id":      "sphere-site 1\nref abc refs/heads/a\n",
		"upper id":      "sphere-site 1\nref " + strings.ToUpper(id) + " refs/heads/a\n",
		"dup ref":       "sphere-site 1\nref " + id + " refs/heads/a\nref " + id + " refs/heads/a\n",
		"bad ref name":  "sphere-site 1\nref " + id + " refs/../x\n",
		"not refs/":     "sphere-site 1\nhead HEADS\n",
		"dir cap pack":  "sphere-site 1\npack sphere:dir-ro:x sphere:lit:\n",
		"pack one cap":  "sphere-site 1\npack " + litCap("a").String() + "\n",
		"garbage cap":   "sphere-site 1\npack sphere:chk:zz sphere:lit:\n",
		"trailing line": "sphere-site 1\n\n",
	} {
		if _, err := ParseRefs([]byte(in)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err=%v, want ErrFormat", name, err)
		}
	}
}

func TestIndexRoundTrip(t *testing.T) {
	es := []IndexEntry{
		{ID: mustID(t, strings.Repeat("ff", 20)), Loc: Loc{Type: TypeBlob, Offset: 8, Size: 3}},
		{ID: mustID(t, strings.Repeat("00", 20)), Loc: Loc{Type: TypeTree, Offset: 11, Size: 0}},
	}
	b := EncodeIndex(es)
	got, err := ParseIndex(b, 11)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != TypeTree || got[1].Size != 3 {
		t.Fatalf("got %+v", got)
	}
	if _, err := ParseIndex(b, 10); !errors.Is(err, ErrFormat) {
		t.Fatalf("range past the bundle: %v", err)
	}
	bad := bytes.Clone(b)
	copy(bad[12:32], bad[12+37:12+37+20]) // duplicate id: not ascending
	if _, err := ParseIndex(bad, 11); !errors.Is(err, ErrFormat) {
		t.Fatalf("unsorted: %v", err)
	}
	if _, err := ParseIndex(b[:len(b)-1], 11); !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestTreeRoundTrip(t *testing.T) {
	es := []TreeEntry{{Mode: "100644", Name: "a.txt", ID: mustID(t, strings.Repeat("12", 20))},
		{Mode: "40000", Name: "dir", ID: mustID(t, strings.Repeat("34", 20))}}
	got, err := ParseTree(EncodeTree(es))
	if err != nil || len(got) != 2 || got[1] != es[1] || !got[1].IsDir() || got[0].IsDir() {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range [][]byte{
		[]byte("100644 a"), []byte("1x0644 a\x00" + strings.Repeat("x", 20)),
		[]byte("100644 ..\x00" + strings.Repeat("x", 20)), []byte("100644 a/b\x00" + strings.Repeat("x", 20)),
	} {
		if _, err := ParseTree(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestCommitTree(t *testing.T) {
	id := strings.Repeat("9a", 20)
	got, err := CommitTree([]byte("tree " + id + "\nauthor x\n\nmsg\n"))
	if err != nil || got.String() != id {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := CommitTree([]byte("parent " + id + "\n")); !errors.Is(err, ErrFormat) {
		t.Fatal(err)
	}
}

func TestSplitPath(t *testing.T) {
	ok := map[string][]string{
		"/": {""}, "/a": {"a"}, "/a/": {"a", ""}, "/a/b.html": {"a", "b.html"}, "/%2e%2e": {"%2e%2e"},
	}
	for in, want := range ok {
		got, err := SplitPath(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("SplitPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "/..", "/../etc/passwd", "/a/../b", "/./a", "//a", "/a//b", "/a\\..\\b", "/a\x00"} {
		if _, err := SplitPath(in); !errors.Is(err, ErrFormat) {
			t.Errorf("SplitPath(%q): %v, want ErrFormat", in, err)
		}
	}
}
