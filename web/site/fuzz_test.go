package site

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseRefs(f *testing.F) {
	id := strings.Repeat("ab", 20)
	f.Add([]byte("sphere-site 1\n"))
	f.Add([]byte("sphere-site 1\nhead refs/heads/main\nref " + id + " refs/heads/main\n"))
	f.Add([]byte("sphere-site 1\npack sphere:lit:mfrgg sphere:lit:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRefs(b)
		if err != nil {
			return
		}
		out, err := r.Encode()
		if err != nil {
			t.Fatalf("parsed refs do not encode: %v", err)
		}
		r2, err := ParseRefs(out)
		if err != nil {
			t.Fatalf("re-encoded refs do not parse: %v", err)
		}
		out2, _ := r2.Encode()
		if !bytes.Equal(out, out2) {
			t.Fatal("encoding not stable")
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add(EncodeIndex([]IndexEntry{{Loc: Loc{Type: TypeBlob, Offset: 8, Size: 1}}}), uint64(9))
	f.Add([]byte(IndexMagic+"\x00\x00\x00\x00"), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, size uint64) {
		es, err := ParseIndex(b, size)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Offset+e.Size > size || e.Offset+e.Size < e.Offset {
				t.Fatalf("entry %+v outside %d", e, size)
			}
		}
		if !bytes.Equal(EncodeIndex(es), b) {
			t.Fatal("index does not round-trip")
		}
	})
}

func FuzzParseTree(f *testing.F) {
	f.Add(EncodeTree([]TreeEntry{{Mode: "100644", Name: "index.html"}, {Mode: "40000", Name: "d"}}))
	f.Add([]byte("100644 a\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseTree(b)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Name == "" || e.Name == "." || e.Name == ".." || strings.Contains(e.Name, "/") {
				t.Fatalf("bad name %q accepted", e.Name)
			}
		}
		if !bytes.Equal(EncodeTree(es), b) {
			t.Fatal("tree does not round-trip")
		}
	})
}

func FuzzCommitTree(f *testing.F) {
	f.Add([]byte("tree " + strings.Repeat("0", 40) + "\nauthor a\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = CommitTree(b) })
}

func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/%2e%2e/x", "/a/", "//", "/a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		els, err := SplitPath(p)
		if err != nil {
			return
		}
		for i, el := range els {
			if el == "." || el == ".." || strings.ContainsAny(el, "/\\\x00") || (el == "" && i != len(els)-1) {
				t.Fatalf("SplitPath(%q) gave element %q", p, el)
			}
		}
	})
}
