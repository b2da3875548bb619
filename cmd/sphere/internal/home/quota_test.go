package home

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]int64{"0": 0, "512": 512, "1K": 1024, "500M": 500 << 20, "20GiB": 20 << 30, "1.5T": 3 << 39, "2gb": 2 << 30, " 3G ": 3 << 30}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "ten", "1X", "NaN", "1e30T", "iB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "500M", "1.5TiB", "-1", "1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseSize(s); err == nil && v < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, v)
		}
	})
}

func TestDefaultQuota(t *testing.T) {
	q, err := DefaultQuota(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if q < MinDefaultQuota || q > MaxDefaultQuota {
		t.Fatalf("DefaultQuota = %d, want within %d..%d", q, MinDefaultQuota, MaxDefaultQuota)
	}
}

func TestStoreQuota(t *testing.T) {
	h := &Home{}
	if got := h.StoreQuota(10); got != 0 {
		t.Fatalf("no limit split: %d", got)
	}
	h.Config.Node.Quota = 10 << 30
	if got := h.StoreQuota(10); got != 1<<30 {
		t.Fatalf("10 GiB over 10 stores: %d", got)
	}
}
