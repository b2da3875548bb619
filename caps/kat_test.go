package caps

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Known-answer vectors (docs/spec/chk.md, "Test vectors"). Regenerate only
// on a deliberate format change: go test ./caps -run KnownAnswer -update
var update = flag.Bool("update", false, "rewrite caps/testdata known-answer files")

const vectorFile = "testdata/chk-v1-vectors.json"

// katVector is one known answer. Content is content(Size): byte i is i mod 251.
type katVector struct {
	Name        string   `json:"name"`
	Secret      string   `json:"secret,omitempty"` // convergence secret (text); empty: Key is given
	KeyHex      string   `json:"key"`              // read key, hex
	K           int      `json:"k"`
	N           int      `json:"n"`
	SegmentSize int      `json:"segmentSize"`
	Size        int      `json:"size"`
	SI          string   `json:"storageIndex"` // base32
	Cap         string   `json:"cap"`
	VerifyCap   string   `json:"verifyCap"`
	ShareSHA256 []string `json:"shareSha256"` // SHA-256 of each complete share, hex
}

func katContent(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

const katSecret = "sphere known-answer secret v1"

// katInputs are the vectors' inputs; the outputs are computed.
var katInputs = []katVector{
	{Name: "empty-3of10-1MiB", Secret: katSecret, K: 3, N: 10, SegmentSize: 1 << 20, Size: 0},
	{Name: "56B-3of10-1MiB", Secret: katSecret, K: 3, N: 10, SegmentSize: 1 << 20, Size: 56},
	{Name: "1000B-3of10-256B", Secret: katSecret, K: 3, N: 10, SegmentSize: 256, Size: 1000},
	{Name: "100B-1of1-64B", Secret: katSecret, K: 1, N: 1, SegmentSize: 64, Size: 100},
	{Name: "5000B-3of5-1KiB-random-key", KeyHex: "000102030405060708090a0b0c0d0e0f", K: 3, N: 5, SegmentSize: 1024, Size: 5000},
	{Name: "200000B-3of10-64KiB", Secret: katSecret, K: 3, N: 10, SegmentSize: 1 << 16, Size: 200000},
}

func computeVector(t *testing.T, in katVector) katVector {
	t.Helper()
	p := Params{K: in.K, Happy: in.K, N: in.N, SegmentSize: in.SegmentSize}
	data := katContent(in.Size)
	var key [16]byte
	if in.Secret != "" {
		h := NewKeyHasher([]byte(in.Secret), p)
		h.Write(data)
		key = h.Key()
	} else {
		b, err := hex.DecodeString(in.KeyHex)
		if err != nil || len(b) != 16 {
			t.Fatalf("%s: bad key %q", in.Name, in.KeyHex)
		}
		copy(key[:], b)
	}
	shares, c := encodeShares(t, key, p, data)
	out := in
	out.KeyHex = hex.EncodeToString(key[:])
	out.SI = c.StorageIndex().String()
	out.Cap = c.String()
	out.VerifyCap = c.VerifyCap().String()
	out.ShareSHA256 = nil
	for _, sh := range shares {
		sum := sha256.Sum256(sh)
		out.ShareSHA256 = append(out.ShareSHA256, hex.EncodeToString(sum[:]))
	}
	got, err := DecodeBytes(c, shares)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%s: vector does not round-trip: %v", in.Name, err)
	}
	if in.Name == "1000B-3of10-256B" && *update {
		writeFixture(t, shares)
	}
	return out
}

// The shares of one vector are kept whole as a golden fixture, so later
// versions of the code can prove they still read version 1 shares.
const fixtureDir = "testdata/chk-v1-1000B-3of10-256B"

func writeFixture(t *testing.T, shares [][]byte) {
	if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, sh := range shares {
		if err := os.WriteFile(filepath.Join(fixtureDir, fmt.Sprintf("share-%d", i)), sh, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKnownAnswer(t *testing.T) {
	var got []katVector
	for _, in := range katInputs {
		got = append(got, computeVector(t, in))
	}
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorFile)
	}
	b, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var want []katVector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", vectorFile, err)
	}
	if len(want) != len(got) {
		t.Fatalf("%s has %d vectors, code has %d", vectorFile, len(want), len(got))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Cap != g.Cap || w.VerifyCap != g.VerifyCap || w.SI != g.SI || w.KeyHex != g.KeyHex {
			t.Errorf("%s: cap\n got %s\nwant %s\n(si %s / %s, key %s / %s)", w.Name, g.Cap, w.Cap, g.SI, w.SI, g.KeyHex, w.KeyHex)
		}
		if fmt.Sprint(w.ShareSHA256) != fmt.Sprint(g.ShareSHA256) {
			t.Errorf("%s: share hashes\n got %v\nwant %v", w.Name, g.ShareSHA256, w.ShareSHA256)
		}
	}
}

// TestGoldenShares decodes the stored version 1 shares with today's code and
// checks that a corrupted copy is flagged.
func TestGoldenShares(t *testing.T) {
	var c CHKCap
	for _, v := range katInputs {
		if v.Name == "1000B-3of10-256B" {
			c = capOfVector(t, v.Name)
		}
	}
	shares := make([][]byte, c.N)
	for i := range shares {
		b, err := os.ReadFile(filepath.Join(fixtureDir, fmt.Sprintf("share-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = b
	}
	got, err := DecodeBytes(c, shares)
	if err != nil || !bytes.Equal(got, katContent(1000)) {
		t.Fatalf("golden shares: err=%v equal=%v", err, bytes.Equal(got, katContent(1000)))
	}
	d := NewDecoder(c)
	l := Layout{K: c.K, N: c.N, Size: c.Size, SegmentSize: 256}
	for i, sh := range shares {
		if err := checkShare(d, i, sh, l); err != nil {
			t.Fatalf("golden share %d: %v", i, err)
		}
		bad := bytes.Clone(sh)
		bad[len(bad)-1-i*7] ^= 0x80
		if err := checkShare(d, i, bad, l); err == nil {
			t.Fatalf("corrupted golden share %d passed", i)
		}
	}
}

func capOfVector(t *testing.T, name string) CHKCap {
	t.Helper()
	b, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var vs []katVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Name == name {
			c, err := Parse(v.Cap)
			if err != nil {
				t.Fatal(err)
			}
			return c.(CHKCap)
		}
	}
	t.Fatalf("no vector %s", name)
	return CHKCap{}
}
