package caps

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func sampleCHK() CHKCap {
	var c CHKCap
	for i := range c.Key {
		c.Key[i] = byte(0xa0 + i)
	}
	for i := range c.Root {
		c.Root[i] = byte(i)
	}
	c.K, c.N, c.Size = 3, 10, 123456
	return c
}

func TestParseRoundTrip(t *testing.T) {
	chk := sampleCHK()
	cases := []Cap{
		LitCap{},
		LitCap{Data: []byte("x")},
		LitCap{Data: bytes.Repeat([]byte{0xff}, LiteralMax)},
		chk,
		CHKCap{K: 1, N: 1},
		CHKCap{K: 255, N: 255, Size: MaxFileSize},
		chk.VerifyCap(),
	}
	for _, c := range cases {
		s := c.String()
		t.Run(s, func(t *testing.T) {
			got, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.Kind() != c.Kind() || got.String() != s {
				t.Fatalf("round trip: kind %q -> %q, string %q -> %q", c.Kind(), got.Kind(), s, got.String())
			}
		})
	}
	if s := (LitCap{}).String(); s != "sphere:lit:" {
		t.Errorf("empty lit cap is %q, want sphere:lit:", s)
	}
	got, _ := Parse(chk.String())
	if got.(CHKCap) != chk {
		t.Errorf("parsed %#v, want %#v", got, chk)
	}
}

func TestParseErrors(t *testing.T) {
	good := sampleCHK().String()
	f := strings.Split(good, ":")
	key, root := f[2], f[3]
	vc := sampleCHK().VerifyCap().String()
	cases := []struct {
		in, want string
	}{
		{"", "prefix"},
		{"URI:CHK:abc", "prefix"},
		{"sphere:", "no ':' after kind"},
		{"sphere:chk", "no ':' after kind"},
		{"sphere:CHK:x", "kind"},
		{"sphere:chk:" + key + ":" + root, "want 5 fields, have 2"},
		{good + ":1", "want 5 fields, have 6"},
		{"sphere:chk:" + strings.ToUpper(key) + ":" + root + ":3:10:5", "key"},
		{"sphere:chk:" + key[:25] + "b:" + root + ":3:10:5", "canonical"}, // non-zero trailing bits
		{"sphere:chk:" + key[:25] + ":" + root + ":3:10:5", "want 26 base32 characters, have 25"},
		{"sphere:chk:" + key + ":" + root[:51] + "8:3:10:5", "root"},
		{"sphere:chk:" + key + ":" + root + ":0:10:5", "1 <= k <= n"},
		{"sphere:chk:" + key + ":" + root + ":4:3:5", "1 <= k <= n"},
		{"sphere:chk:" + key + ":" + root + ":3:256:5", "n: want at most 255"},
		{"sphere:chk:" + key + ":" + root + ":03:10:5", "canonical decimal"},
		{"sphere:chk:" + key + ":" + root + ":+3:10:5", "canonical decimal"},
		{"sphere:chk:" + key + ":" + root + ":3:10:-1", "canonical decimal"},
		{"sphere:chk:" + key + ":" + root + ":3:10:", "canonical decimal"},
		{"sphere:chk:" + key + ":" + root + ":3:10:99999999999999999999", "size"},
		{"sphere:chk:" + key + ":" + root + ":3:10:1125899906842625", "size: want at most"},
		{"sphere:chk-verify:" + key + ":" + root, "chk-verify cap: want 5 fields, have 2"},
		{strings.Replace(vc, ":3:", ":x:", 1), "k"},
		{"sphere:lit:" + strings.Repeat("a", 89), "at most 55 bytes"},
		{"sphere:lit:a", "canonical"},
		{"sphere:lit:MZXW6", "canonical"},
		{"sphere:lit:mzxw6\n", "canonical"},
		{"sphere:lit:mzxw6===", "canonical"},
		{"sphere:" + strings.Repeat("a", MaxCapLen), "at most 2048 characters"},
	}
	for _, tc := range cases {
		t.Run(clip(tc.in, 40), func(t *testing.T) {
			c, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error containing %q", tc.in, c, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%q) error %q, want it to contain %q", tc.in, err, tc.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrFormat", tc.in, err)
			}
		})
	}
}

func TestParseUnknownKindGoesToMutable(t *testing.T) {
	// Kinds other than lit, chk and chk-verify belong to parseMutable; an
	// unknown one must fail there.
	if _, err := Parse("sphere:no-such-kind:abc"); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// TestSecretsHidden checks that logging or printing a cap never shows its
// key or data, while String still gives the full cap.
func TestSecretsHidden(t *testing.T) {
	c := sampleCHK()
	keyB32 := b32.EncodeToString(c.Key[:])
	lit := LitCap{Data: []byte("the secret text")}
	litB32 := b32.EncodeToString(lit.Data)

	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("Upload", "cap", c, "lit", lit)
	log.Info("Upload", "cap", &c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("Upload", "cap", c, "lit", lit)
	out := buf.String() +
		fmt.Sprintf("%v %s %+v %#v %q %x", c, c, c, c, c, c) +
		fmt.Sprintf("%v %s %+v %#v %q %x", lit, lit, lit, lit, lit, lit) +
		fmt.Sprint(c, lit, []Cap{c, lit}) + fmt.Sprintf("%v", struct{ C CHKCap }{c})
	for _, secret := range []string{keyB32, litB32, "the secret text", fmt.Sprintf("%x", c.Key[:4])} {
		if strings.Contains(out, secret) {
			t.Fatalf("output shows a secret %q:\n%s", secret, out)
		}
	}
	si := c.StorageIndex().String()[:10]
	if !strings.Contains(out, si) || !strings.Contains(out, "chk") {
		t.Fatalf("log lacks kind and storage-index fingerprint %s:\n%s", si, out)
	}
	if !strings.Contains(c.String(), keyB32) {
		t.Fatal("String lost the key")
	}
}

func TestVerifyCapCannotDecrypt(t *testing.T) {
	c := sampleCHK()
	vc := c.VerifyCap()
	s := vc.String()
	if strings.Contains(s, b32.EncodeToString(c.Key[:])) {
		t.Fatal("verify cap string contains the read key")
	}
	if vc.SI != c.StorageIndex() || vc.Root != c.Root || vc.K != c.K || vc.N != c.N || vc.Size != c.Size {
		t.Fatalf("verify cap %+v does not match read cap", vc)
	}
	if c.StorageIndex() == StorageIndexOf(testKey(0)) {
		t.Fatal("storage index does not depend on the key")
	}
}

// TestSpecExamples keeps the examples in docs/spec/caps.md true.
func TestSpecExamples(t *testing.T) {
	c, err := Parse("sphere:lit:nbswy3dpbi")
	if err != nil || string(c.(LitCap).Data) != "hello\n" {
		t.Fatalf("lit example: %v %v", c, err)
	}
	const rc = "sphere:chk:lgpajfbx2mydx5rsglo7xxvyuq:eulksmfxhome7gjxsgjfkh6qcqk5ai4m4xuzlmk2oqkhremedwoa:3:10:1000"
	const vc = "sphere:chk-verify:w54eeusgsvaietb2re5bad5n7e:eulksmfxhome7gjxsgjfkh6qcqk5ai4m4xuzlmk2oqkhremedwoa:3:10:1000"
	c, err = Parse(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.(CHKCap).VerifyCap().String(); got != vc || len(rc) != 100 {
		t.Fatalf("verify cap of the example is %s (cap length %d)", got, len(rc))
	}
	if capOfVector(t, "1000B-3of10-256B").String() != rc {
		t.Fatal("spec example is not the known-answer vector")
	}
}
