package site

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestIndexVector is the worked example of docs/spec/site.md.
func TestIndexVector(t *testing.T) {
	id := mustID(t, "ce013625030ba8dba906f756967f9e9ca394464a") // git's id of the blob "hello\n"
	got := hex.EncodeToString(EncodeIndex([]IndexEntry{{ID: id, Loc: Loc{Type: TypeBlob, Offset: 8, Size: 6}}}))
	want := strings.Join([]string{
		"53504849445831" + "0a", // "SPHIDX1\n"
		"00000001",
		"ce013625030ba8dba906f756967f9e9ca394464a", "03", "0000000000000008", "0000000000000006",
	}, "")
	if got != want {
		t.Fatalf("index:\n got %s\nwant %s", got, want)
	}
}
