package caps

import (
	"strings"
	"testing"
)

func TestParseStorageIndexCanonicalOnly(t *testing.T) {
	var si StorageIndex
	for i := range si {
		si[i] = byte(i*37 + 1)
	}
	good := si.String()
	if got, err := ParseStorageIndex(good); err != nil || got != si {
		t.Fatalf("ParseStorageIndex(%q) = %v, %v; want %v", good, got, err, si)
	}
	// The last character carries 3 data bits and 2 zero padding bits:
	// flipping a padding bit gives a string that decodes to the same bytes.
	last := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", good[len(good)-1])
	alias := good[:len(good)-1] + string("abcdefghijklmnopqrstuvwxyz234567"[last^1])
	bad := map[string]string{
		"nonzero padding bits": alias,
		"line break inside":    good[:10] + "\n" + good[10:],
		"carriage return":      good + "\r",
		"upper case":           strings.ToUpper(good),
		"short":                good[:25],
		"long":                 good + "a",
		"empty":                "",
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			if got, err := ParseStorageIndex(s); err == nil {
				t.Fatalf("ParseStorageIndex(%q) = %v, nil; want an error", s, got)
			}
		})
	}
}

func FuzzParseStorageIndex(f *testing.F) {
	var si StorageIndex
	f.Add(si.String())
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaab")
	f.Add("aaaaaaaaaa\naaaaaaaaaaaaaaaa")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		si, err := ParseStorageIndex(s)
		if err != nil {
			return
		}
		if si.String() != s {
			t.Fatalf("accepted %q, whose canonical form is %q", s, si.String())
		}
	})
}
