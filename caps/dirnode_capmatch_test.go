package caps

import (
	"errors"
	"testing"
)

// mismatchedTable encodes, bypassing Set's checks, a directory whose entry
// "sub" carries the read cap of one directory and the write cap of another.
func mismatchedTable(t testing.TB, parent MutableWriteCap) []byte {
	t.Helper()
	a, b := testWriteCap(t, 41, true), testWriteCap(t, 42, true)
	tb := &Table{entries: []Entry{{Name: "sub", Type: TypeDir, ReadCap: a.ReadCap().String(), WriteCap: b.String()}}}
	enc, err := tb.Encode(&parent)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func TestDirEntryCapsMustMatch(t *testing.T) {
	parent := testWriteCap(t, 40, true)
	enc := mismatchedTable(t, parent)
	if _, err := DecodeTable(enc, &parent); !errors.Is(err, ErrFormat) {
		t.Fatalf("decode of an entry whose write and read caps differ: %v, want ErrFormat", err)
	}
	a, b := testWriteCap(t, 41, true), testWriteCap(t, 42, false)
	for _, e := range []Entry{
		{Name: "x", Type: TypeDir, ReadCap: a.ReadCap().String(), WriteCap: testWriteCap(t, 43, true).String()},
		{Name: "y", Type: TypeFile, ReadCap: b.ReadCap().String(), WriteCap: testWriteCap(t, 44, false).String()},
	} {
		if err := NewTable().Set(e); !errors.Is(err, ErrFormat) {
			t.Errorf("Set %q with mismatched caps: %v, want ErrFormat", e.Name, err)
		}
	}
	// Matching caps still pass.
	for _, e := range []Entry{
		{Name: "x", Type: TypeDir, ReadCap: a.ReadCap().String(), WriteCap: a.String()},
		{Name: "y", Type: TypeFile, ReadCap: b.ReadCap().String(), WriteCap: b.String()},
	} {
		if err := NewTable().Set(e); err != nil {
			t.Errorf("Set %q: %v", e.Name, err)
		}
	}
}
