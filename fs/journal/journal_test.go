package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rec(name string) Record {
	return Record{Dir: "sphere:dir-rw:x", Name: name, New: &Entry{Type: 1, Cap: "sphere:lit:", Size: 3, Mode: 0o644, Mtime: 42}}
}

func TestAppendRotateDrop(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := j.PutBlob(bytes.NewReader([]byte("content")), 7)
	if err != nil {
		t.Fatal(err)
	}
	r := rec("a")
	r.Blob = id
	for _, r := range []Record{r, rec("b")} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	gen, err := j.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(rec("c")); err != nil {
		t.Fatal(err)
	}
	recs, _, err := j.Records()
	if err != nil || len(recs) != 3 || recs[0].Blob != id || recs[2].Name != "c" {
		t.Fatalf("Records: %+v, %v", recs, err)
	}
	if n, b, _ := Stat(dir); n != 3 || b != 7 {
		t.Fatalf("Stat: %d records %d bytes, want 3 and 7", n, b)
	}
	if err := j.Drop(gen, []string{id}); err != nil {
		t.Fatal(err)
	}
	if n, b, _ := Stat(dir); n != 1 || b != 0 {
		t.Fatalf("Stat after Drop: %d records %d bytes, want 1 and 0", n, b)
	}
	if j.Pending() != 1 {
		t.Fatalf("Pending %d, want 1", j.Pending())
	}
	j.Close()
	// Reopened (as after a crash): the record of the live generation is there.
	j, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	recs, _, err = j.Records()
	if err != nil || len(recs) != 1 || recs[0].Name != "c" {
		t.Fatalf("after reopen: %+v, %v", recs, err)
	}
}

func TestParseLog(t *testing.T) {
	good := `{"v":1,"d":"D","n":"a","new":{"t":1}}` + "\n"
	for _, tc := range []struct {
		name, in string
		n        int
		bad      bool
	}{
		{"empty", "", 0, false},
		{"one", good, 1, false},
		{"torn last line ignored", good + `{"v":1,"d":"D","n":"b"`, 1, false},
		{"garbage line", good + "xx\n" + good, 0, true},
		{"newer version", `{"v":2,"d":"D","n":"a"}` + "\n", 0, true},
		{"no version", `{"d":"D","n":"a"}` + "\n", 0, true},
		{"no name", `{"v":1,"d":"D"}` + "\n", 0, true},
		{"blob without entry", `{"v":1,"d":"D","n":"a","b":"1"}` + "\n", 0, true},
		{"blob id path", `{"v":1,"d":"D","n":"a","new":{"t":1},"b":"../x"}` + "\n", 0, true},
		{"huge line", `{"v":1,"d":"` + strings.Repeat("x", MaxRecord) + `","n":"a"}` + "\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ParseLog([]byte(tc.in))
			if tc.bad {
				if err == nil || !errors.Is(err, ErrFormat) {
					t.Fatalf("error %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || len(recs) != tc.n {
				t.Fatalf("%d records, %v; want %d", len(recs), err, tc.n)
			}
		})
	}
}

// FuzzParseLog: never panics; what it accepts re-encodes to records it
// accepts again, and a blob reference is never a path.
func FuzzParseLog(f *testing.F) {
	f.Add([]byte(`{"v":1,"d":"D","n":"a","new":{"t":1,"c":"sphere:lit:","s":3},"b":"1f"}` + "\n"))
	f.Add([]byte(`{"v":1,"d":"D","n":"a"}` + "\n" + `{"v":1,"d":"D","n":"b","prev":{"t":2}}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ParseLog(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		dir := t.TempDir()
		j, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for _, r := range recs {
			if strings.ContainsAny(r.Blob, "/.") {
				t.Fatalf("blob id %q accepted", r.Blob)
			}
			if err := j.Append(r); err != nil && !strings.Contains(err.Error(), "at most") {
				t.Fatal(err)
			}
		}
		again, _, err := j.Records()
		if err != nil || len(again) > len(recs) {
			t.Fatalf("re-read %d of %d records: %v", len(again), len(recs), err)
		}
		_ = os.Remove(filepath.Join(dir, "lock"))
	})
}

// TestDropKeepsInflightBlobs: a blob stored but not yet named by a record
// (a close between PutBlob and Append) survives a concurrent Drop.
func TestDropKeepsInflightBlobs(t *testing.T) {
	j, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	id, err := j.PutBlob(bytes.NewReader([]byte("x")), 1)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := j.Rotate()
	if err := j.Drop(gen, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(j.BlobPath(id)); err != nil {
		t.Fatalf("in-flight blob removed by Drop: %v", err)
	}
	r := rec("a")
	r.Blob = id
	if err := j.Append(r); err != nil {
		t.Fatal(err)
	}
	gen, _ = j.Rotate()
	if err := j.Drop(gen, []string{id}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(j.BlobPath(id)); !os.IsNotExist(err) {
		t.Fatalf("blob named by a dropped generation kept: %v", err)
	}
	j.Release("nothing") // harmless
}
