package web

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/web/site"
)

// siteIDEnc is lowercase base32 without padding: a DNS label.
var siteIDEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// SiteIDLen is the length of a site id (128 bits in base32).
const SiteIDLen = 26

// SiteID is the host label of a site: a hash of its address, so it names
// the site without revealing the address (which is its read key).
func SiteID(address caps.MutableReadCap) string {
	h := sha256.Sum256([]byte("sphere-site-id-v1\x00" + address.String()))
	return siteIDEnc.EncodeToString(h[:16])
}

// ParseSiteID checks a host label is a well-formed site id.
func ParseSiteID(s string) (string, error) {
	if len(s) != SiteIDLen {
		return "", fmt.Errorf("site id %q: want %d characters", clip(s), SiteIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", fmt.Errorf("site id %q: byte %q not in [a-z2-7]", clip(s), c)
		}
	}
	b, err := siteIDEnc.DecodeString(s)
	if err != nil || len(b) != 16 || siteIDEnc.EncodeToString(b) != s {
		return "", fmt.Errorf("site id %q: not canonical base32", clip(s))
	}
	return s, nil
}

func clip(s string) string {
	if len(s) > 48 {
		return s[:48] + "..."
	}
	return s
}

// Registry is the set of sites this home knows, one JSON file per site
// under Dir (the home's sites/): the address, and the write cap for the
// home's own sites. The CLI and the gateway share it.
type Registry struct{ Dir string }

// SiteRecord is one file of the registry.
type SiteRecord struct {
	Address  string `json:"address"`
	WriteCap string `json:"writeCap,omitempty"`
}

// ErrUnknownSite: the registry has no such site.
var ErrUnknownSite = errors.New("unknown site (open its address with `sphere open ADDRESS`)")

// Add records a site (address or write cap) and returns its id.
func (r Registry) Add(c caps.Cap) (string, caps.MutableReadCap, error) {
	addr, err := site.Address(c)
	if err != nil {
		return "", addr, err
	}
	id := SiteID(addr)
	rec := SiteRecord{Address: addr.String()}
	if old, err := r.record(id); err == nil {
		rec.WriteCap = old.WriteCap
	}
	if site.IsWriteCap(c) {
		rec.WriteCap = c.String()
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return "", addr, fmt.Errorf("site registry: %w", err)
	}
	tmp, err := os.CreateTemp(r.Dir, ".site-")
	if err != nil {
		return "", addr, fmt.Errorf("site registry: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", addr, err
	}
	if err := tmp.Close(); err != nil {
		return "", addr, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(r.Dir, id+".json")); err != nil {
		return "", addr, fmt.Errorf("site registry: %w", err)
	}
	return id, addr, nil
}

func (r Registry) record(id string) (SiteRecord, error) {
	var rec SiteRecord
	if _, err := ParseSiteID(id); err != nil {
		return rec, err
	}
	b, err := os.ReadFile(filepath.Join(r.Dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return rec, ErrUnknownSite
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("site registry %s: %w", id, err)
	}
	return rec, nil
}

// Lookup returns the address of a known site.
func (r Registry) Lookup(id string) (caps.MutableReadCap, error) {
	rec, err := r.record(id)
	if err != nil {
		return caps.MutableReadCap{}, err
	}
	c, err := caps.Parse(strings.TrimSpace(rec.Address))
	if err != nil {
		return caps.MutableReadCap{}, fmt.Errorf("site registry %s: %w", id, err)
	}
	addr, err := site.Address(c)
	if err != nil || SiteID(addr) != id {
		return caps.MutableReadCap{}, fmt.Errorf("site registry %s: address does not match its id", id)
	}
	return addr, nil
}

// WriteCap returns the write cap of one of the home's own sites.
func (r Registry) WriteCap(id string) (caps.Cap, error) {
	rec, err := r.record(id)
	if err != nil {
		return nil, err
	}
	if rec.WriteCap == "" {
		return nil, fmt.Errorf("site %s: this home holds only its address, not its write cap", id)
	}
	c, err := caps.Parse(rec.WriteCap)
	if err != nil {
		return nil, fmt.Errorf("site registry %s: %w", id, err)
	}
	return c, nil
}
