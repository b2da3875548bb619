package recovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// fill makes deterministic bytes from a label.
func fill(label string) [SecretSize]byte { return sha256.Sum256([]byte(label)) }

// sampleCode is a code with n contacts, all fields from label.
func sampleCode(label string, n int) *Code {
	c := &Code{
		Flags: FlagFounder, Params: Params{K: 2, Happy: 3, N: 4, SegmentSize: 1 << 20},
		RootSeed: fill(label + "root"), Convergence: fill(label + "conv"), LeaseSecret: fill(label + "lease"),
		Identity: fill(label + "id"), GridKey: fill(label + "grid"),
	}
	for i := range n {
		// /ip4/127.0.0.1/tcp/4001+i as a binary multiaddr
		port := 4001 + i
		addr := []byte{0x04, 127, 0, 0, 1, 0x06, byte(port >> 8), byte(port)}
		c.Contacts = append(c.Contacts, Contact{PubKey: fill(label + "peer" + string(rune('a'+i))), Addrs: [][]byte{addr}})
	}
	return c
}

func mustEncode(t testing.TB, c *Code) string {
	t.Helper()
	s, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, MaxContacts} {
		c := sampleCode("rt", n)
		s := mustEncode(t, c)
		if !strings.HasPrefix(s, Prefix) {
			t.Fatalf("code %q lacks prefix", s)
		}
		for name, in := range map[string]string{
			"as printed": s,
			"upper case": strings.ToUpper(s),
			"spaces":     Prefix + strings.ReplaceAll(strings.TrimPrefix(s, Prefix), "-", " "),
			"no dashes":  Prefix + strings.ReplaceAll(strings.TrimPrefix(s, Prefix), "-", ""),
			"lines":      strings.Join(Lines(s, 6), "\n") + "\n",
			"no prefix":  strings.TrimPrefix(s, Prefix),
		} {
			got, err := Parse(in)
			if err != nil {
				t.Fatalf("%d contacts, %s: %v", n, name, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("%d contacts, %s: round trip differs:\n got %+v\nwant %+v", n, name, got, c)
			}
		}
	}
}

// groupOf returns the 1-based group of the character at 0-based index i
// of a printed code.
func groupOf(i int) int { return (i-len(Prefix))/(groupLen+1) + 1 }

// codeIndexes are the indexes of a printed code's code characters.
func codeIndexes(s string) []int {
	var out []int
	for i := len(Prefix); i < len(s); i++ {
		if s[i] != '-' {
			out = append(out, i)
		}
	}
	return out
}

func wantPosErr(t *testing.T, what string, in string, group int) {
	t.Helper()
	_, err := Parse(in)
	var pe *PosError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: want a *PosError, have %v", what, err)
	}
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("%s: %v does not wrap ErrFormat", what, err)
	}
	if pe.Group != group {
		t.Fatalf("%s: error names group %d, want %d: %v", what, pe.Group, group, err)
	}
}

func TestMistypedChanged(t *testing.T) {
	s := mustEncode(t, sampleCode("typo", 2))
	for _, i := range codeIndexes(s) {
		for _, r := range []byte{'q', 'l', '7'} {
			if s[i] == r {
				continue
			}
			bad := s[:i] + string(r) + s[i+1:]
			wantPosErr(t, "changed "+bad, bad, groupOf(i))
		}
	}
}

func TestMistypedChangedHint(t *testing.T) {
	s := mustEncode(t, sampleCode("hint", 1))
	i := len(Prefix) + 7*(groupLen+1) + 2
	r := byte('q')
	if s[i] == r {
		r = 'p'
	}
	_, err := Parse(s[:i] + string(r) + s[i+1:])
	var pe *PosError
	if !errors.As(err, &pe) || !strings.Contains(pe.Hint, fmt.Sprintf("character %d should probably be ", i+1)+
		string([]byte{'\'', s[i], '\''})) {
		t.Fatalf("want a hint naming character 3 and %q, have %v", s[i], err)
	}
}

func TestMistypedDropped(t *testing.T) {
	s := mustEncode(t, sampleCode("drop", 2))
	for _, i := range codeIndexes(s) {
		bad := s[:i] + s[i+1:]
		wantPosErr(t, "dropped "+bad, bad, groupOf(i))
	}
	// Without separators the first group that fails is the one that lost
	// the character, or the next (when the dropped character equals the
	// one that moves in).
	flat := Prefix + strings.ReplaceAll(strings.TrimPrefix(s, Prefix), "-", "")
	for i := len(Prefix); i < len(flat); i++ {
		bad := flat[:i] + flat[i+1:]
		_, err := Parse(bad)
		var pe *PosError
		if !errors.As(err, &pe) {
			t.Fatalf("dropped %d without separators: want *PosError, have %v", i, err)
		}
		g := (i-len(Prefix))/groupLen + 1
		if pe.Group != 0 && pe.Group != g && pe.Group != g+1 {
			t.Fatalf("dropped %d (group %d) without separators: error names group %d: %v", i, g, pe.Group, err)
		}
	}
}

func TestMistypedInserted(t *testing.T) {
	s := mustEncode(t, sampleCode("ins", 2))
	for _, i := range codeIndexes(s) {
		bad := s[:i] + "q" + s[i:]
		wantPosErr(t, "inserted "+bad, bad, groupOf(i))
	}
}

func TestMistypedSwapped(t *testing.T) {
	s := mustEncode(t, sampleCode("swap", 2))
	idx := codeIndexes(s)
	for k := 0; k+1 < len(idx); k++ {
		i, j := idx[k], idx[k+1]
		if s[i] == s[j] {
			continue
		}
		b := []byte(s)
		b[i], b[j] = b[j], b[i]
		// A swap inside a group names it; a swap across a '-' breaks the
		// first of the two groups.
		wantPosErr(t, "swapped "+string(b), string(b), groupOf(i))
	}
}

func TestGroupsSwapped(t *testing.T) {
	s := mustEncode(t, sampleCode("gswap", 2))
	g := strings.Split(strings.TrimPrefix(s, Prefix), "-")
	g[3], g[4] = g[4], g[3]
	wantPosErr(t, "groups swapped", Prefix+strings.Join(g, "-"), 4)
}

func TestNotAlphabet(t *testing.T) {
	s := mustEncode(t, sampleCode("alpha", 1))
	i := len(Prefix) + 2
	_, err := Parse(s[:i] + "o" + s[i+1:])
	var pe *PosError
	if !errors.As(err, &pe) || pe.Pos != i+1 || !strings.Contains(pe.Hint, "'0'") {
		t.Fatalf("want character %d refused with a hint of '0', have %v", i+1, err)
	}
}

func TestNewerVersion(t *testing.T) {
	// A header group that says code version 2, with a valid check.
	d := []byte{2, 0, 0, 9}
	text := Prefix + string([]byte{Alphabet[d[0]], Alphabet[d[1]], Alphabet[d[2]], Alphabet[d[3]], Alphabet[checkChar(0, d)]}) + "-qqqqq"
	if _, err := Parse(text); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("code version 2: want ErrNewerVersion, have %v", err)
	}
	// A version-1 text carrying a version-2 payload.
	p, err := sampleCode("newer", 1).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p[0] = 2
	s, err := encodePayload(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(s); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("payload version 2: want ErrNewerVersion, have %v", err)
	}
}

func TestRefusedPayloads(t *testing.T) {
	good, err := sampleCode("bad", 1).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func([]byte) []byte{
		"unknown flag":   func(p []byte) []byte { p[1] |= 0x80; return p },
		"k > happy":      func(p []byte) []byte { p[2] = 5; return p },
		"k = 0":          func(p []byte) []byte { p[2] = 0; return p },
		"trailing byte":  func(p []byte) []byte { return append(p, 0) },
		"short":          func(p []byte) []byte { return p[:len(p)-1] },
		"many contacts":  func(p []byte) []byte { p[9+5*SecretSize] = MaxContacts + 1; return p },
		"no addresses":   func(p []byte) []byte { p[9+5*SecretSize+1+SecretSize] = 0; return p },
		"empty":          func(p []byte) []byte { return nil },
		"payload v0":     func(p []byte) []byte { p[0] = 0; return p },
		"long addr len":  func(p []byte) []byte { p[9+5*SecretSize+1+SecretSize+1] = MaxAddrLen + 1; return p },
		"zero addr len":  func(p []byte) []byte { p[9+5*SecretSize+1+SecretSize+1] = 0; return p },
		"contacts short": func(p []byte) []byte { return p[:9+5*SecretSize+1+10] },
	}
	for name, f := range cases {
		p := f(append([]byte(nil), good...))
		s, err := encodePayload(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(s); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: want ErrFormat, have %v", name, err)
		}
	}
}

func TestGarbage(t *testing.T) {
	for _, in := range []string{"", "   ", Prefix, "sphere:dir-rw:abc", strings.Repeat("q", MaxTextLen+1), Prefix + "qqqqq", Prefix + "qqqq"} {
		if _, err := Parse(in); !errors.Is(err, ErrFormat) {
			t.Errorf("%.40q: want ErrFormat, have %v", in, err)
		}
	}
}

// vector is one known-answer test vector (testdata/vectors.json).
type vector struct {
	Name        string   `json:"name"`
	Flags       uint8    `json:"flags"`
	K           uint8    `json:"k"`
	Happy       uint8    `json:"happy"`
	N           uint8    `json:"n"`
	SegmentSize uint32   `json:"segmentSize"`
	RootSeed    string   `json:"rootSeed"`
	Convergence string   `json:"convergence"`
	LeaseSecret string   `json:"leaseSecret"`
	Identity    string   `json:"identity"`
	GridKey     string   `json:"gridKey"`
	Admin       string   `json:"admin,omitempty"`
	Contacts    []vecCon `json:"contacts"`
	Payload     string   `json:"payload"` // hex of MarshalBinary
	Code        string   `json:"code"`
}

type vecCon struct {
	PubKey string   `json:"pubKey"`
	Addrs  []string `json:"addrs"` // hex of binary multiaddrs
}

func toVector(name string, c *Code) vector {
	h := func(b [SecretSize]byte) string { return hex.EncodeToString(b[:]) }
	v := vector{Name: name, Flags: c.Flags, K: c.Params.K, Happy: c.Params.Happy, N: c.Params.N, SegmentSize: c.Params.SegmentSize,
		RootSeed: h(c.RootSeed), Convergence: h(c.Convergence), LeaseSecret: h(c.LeaseSecret), Identity: h(c.Identity), GridKey: h(c.GridKey)}
	if !c.Founder() {
		v.Admin = h(c.Admin)
	}
	for _, ct := range c.Contacts {
		vc := vecCon{PubKey: h(ct.PubKey)}
		for _, a := range ct.Addrs {
			vc.Addrs = append(vc.Addrs, hex.EncodeToString(a))
		}
		v.Contacts = append(v.Contacts, vc)
	}
	return v
}

func TestKnownAnswer(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		var vs []vector
		for _, tc := range []struct {
			name string
			c    *Code
		}{
			{"founder, no contacts", sampleCode("kat0", 0)},
			{"founder, one contact", sampleCode("kat1", 1)},
			{"member, three contacts", func() *Code { c := sampleCode("kat3", 3); c.Flags = 0; c.Admin = fill("kat3admin"); return c }()},
		} {
			v := toVector(tc.name, tc.c)
			p, err := tc.c.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			v.Payload = hex.EncodeToString(p)
			v.Code = mustEncode(t, tc.c)
			vs = append(vs, v)
		}
		b, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 3 {
		t.Fatalf("%s: %d vectors, want 3", path, len(vs))
	}
	for _, v := range vs {
		c, err := Parse(v.Code)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		got := toVector(v.Name, c)
		got.Payload, got.Code = v.Payload, v.Code
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("%s: parsed fields differ:\n got %+v\nwant %+v", v.Name, got, v)
		}
		p, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(p) != v.Payload {
			t.Fatalf("%s: payload %x, want %s", v.Name, p, v.Payload)
		}
		if s := mustEncode(t, c); s != v.Code {
			t.Fatalf("%s: code\n%s\nwant\n%s", v.Name, s, v.Code)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []int{0, 1, 3} {
		s := mustEncode(f, sampleCode("fuzz", n))
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(strings.ToUpper(s))
	}
	f.Add("")
	f.Add(Prefix + "qqqqq-qqqqq")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrNewerVersion) {
				t.Fatalf("error %v wraps neither ErrFormat nor ErrNewerVersion", err)
			}
			return
		}
		again, err := Parse(mustEncode(t, c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("accepted %q but its re-encoding does not round-trip: %v", s, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := mustEncode(b, sampleCode("bench", 3))
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMaxPayload(t *testing.T) {
	// The figure docs/spec/recovery-code.md quotes, and the largest code encodes.
	if MaxPayload != 2546 {
		t.Fatalf("MaxPayload = %d, the spec says 2546", MaxPayload)
	}
	c := sampleCode("max", MaxContacts)
	c.Flags = 0
	for i := range c.Contacts {
		c.Contacts[i].Addrs = nil
		for j := range MaxContactAddrs {
			c.Contacts[i].Addrs = append(c.Contacts[i].Addrs, bytes.Repeat([]byte{byte(j + 1)}, MaxAddrLen))
		}
	}
	p, err := c.MarshalBinary()
	if err != nil || len(p) != MaxPayload {
		t.Fatalf("largest payload: %d bytes, %v; want %d", len(p), err, MaxPayload)
	}
	s := mustEncode(t, c)
	if len(s) > MaxTextLen {
		t.Fatalf("largest code is %d characters, more than Parse reads (%d)", len(s), MaxTextLen)
	}
	if back, err := Parse(s); err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("largest code: %v", err)
	}
}

func TestPayloadSize(t *testing.T) {
	// The figure docs/spec/recovery-code.md quotes.
	s := mustEncode(t, sampleCode("size", 3))
	if n := len(s); n < 200 || n > 800 {
		t.Fatalf("a code with 3 contacts is %d characters", n)
	}
	t.Logf("3 contacts: %d characters", len(s))
	if !bytes.HasPrefix([]byte(s), []byte(Prefix)) {
		t.Fatal("prefix")
	}
}
