package home

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
)

// Default quota: a tenth of the free space of the home's filesystem when
// it is created, at least MinDefaultQuota and at most MaxDefaultQuota, so
// strangers' shares never fill a disk (a Tahoe or Storj operator sets
// such a limit by hand; Sphere sets one unless told otherwise).
const (
	DefaultQuotaShare = 10 // percent of free space
	MinDefaultQuota   = 256 << 20
	MaxDefaultQuota   = 100 << 30
)

// DefaultQuota returns the default total quota for a home in dir.
func DefaultQuota(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	free := int64(min(st.Bavail*uint64(st.Bsize), math.MaxInt64/2))
	return min(max(free/100*DefaultQuotaShare, MinDefaultQuota), MaxDefaultQuota), nil
}

// StoreQuota is the quota of each of n stores sharing the node's quota
// (Config.Node.Quota is the total): 0 (no limit) stays 0.
func (h *Home) StoreQuota(n int) int64 {
	if h.Config.Node.Quota <= 0 || n <= 0 {
		return 0
	}
	return max(h.Config.Node.Quota/int64(n), 1)
}

// ParseSize parses a byte count: a number with an optional binary unit
// (K, M, G, T, with or without "iB" or "B"; 1K = 1024), e.g. "500M",
// "20GiB", "1.5T"; "0" means no limit.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	upper := strings.ToUpper(t)
	for _, suf := range []string{"IB", "B"} {
		if strings.HasSuffix(upper, suf) && len(upper) > len(suf) {
			upper = upper[:len(upper)-len(suf)]
			break
		}
	}
	if n := len(upper); n > 0 {
		if i := strings.IndexByte("KMGTP", upper[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			upper = upper[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(upper), 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 500M, 20G, 1.5T, or 0 for no limit)", s)
	}
	return int64(v * mult), nil
}
