package boltserver

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// The vectors of docs/spec/disk-store.md, "Test vectors".
func specSI() caps.StorageIndex {
	var si caps.StorageIndex
	for i := range si {
		si[i] = byte(i)
	}
	return si
}

func fill(b byte) (a [32]byte) {
	for i := range a {
		a[i] = b
	}
	return a
}

var specTime = time.Date(2026, 12, 25, 0, 0, 0, 0, time.UTC)

func TestSpecVectors(t *testing.T) {
	si := specSI()
	for _, c := range []struct{ name, got, want string }{
		{"path", filepath.ToSlash(sharePath(si, 3)), "shares/aa/aaaqeayeaudaocajbifqydiob4/3"},
		{"shareKey", hex.EncodeToString(shareKey(si, 3)), "000102030405060708090a0b0c0d0e0f03"},
		{"leaseKey", hex.EncodeToString(leaseKey(si, fill(0xaa))), "000102030405060708090a0b0c0d0e0f" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"expiryKey", hex.EncodeToString(expiryKey(timeKey(specTime), si)), "18f4561522740000" + "000102030405060708090a0b0c0d0e0f"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	if timeKey(time.Time{}) != 0 || !keyTime(timeKey(specTime)).Equal(specTime) {
		t.Error("timeKey clamp or round trip broken")
	}
}

// A store written through the API holds exactly the bytes the spec says.
// TestSpecStoreBytes checks the bytes of a store holding the spec's
// vectors, with share 3 inline (the default for a 5-byte share) and as a
// file.
func TestSpecStoreBytes(t *testing.T) {
	t.Run("inline", func(t *testing.T) { testSpecStoreBytes(t, 0) })
	t.Run("file", func(t *testing.T) { testSpecStoreBytes(t, -1) })
}

func testSpecStoreBytes(t *testing.T, inlineMax int64) {
	dir := t.TempDir()
	s, err := Open(dir, Options{ID: "spec-server", InlineMax: inlineMax, Now: func() time.Time { return specTime.Add(-time.Hour) }, LeaseTerm: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	si := specSI()
	ctx := t.Context()
	l := grid.Lease{RenewSecret: fill(0xaa), CancelSecret: fill(0xbb), Expires: specTime}
	if err := s.WriteShare(ctx, si, 3, 5, bytes.NewReader([]byte("hello")), l); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSlot(ctx, si, fill(0xcc), []grid.SlotShare{{Shnum: 1, Seq: 7, Data: []byte("mut")}}, l); err != nil {
		t.Fatal(err)
	}
	s.Close()
	inline := map[string]string{"000102030405060708090a0b0c0d0e0f03": hex.EncodeToString([]byte("hello"))}
	if inlineMax < 0 {
		inline = map[string]string{}
		if b, err := os.ReadFile(filepath.Join(dir, "shares/aa/aaaqeayeaudaocajbifqydiob4/3")); err != nil || string(b) != "hello" {
			t.Fatalf("share file = %q, %v", b, err)
		}
	} else if _, err := os.Stat(filepath.Join(dir, "shares/aa/aaaqeayeaudaocajbifqydiob4/3")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("inline share also has a file: %v", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]map[string]string{
		"meta": {
			hex.EncodeToString([]byte("version")): "00000002",
			hex.EncodeToString([]byte("id")):      hex.EncodeToString([]byte("spec-server")),
		},
		"shares":     {"000102030405060708090a0b0c0d0e0f03": "0000000000000005"},
		"inline":     inline,
		"slots":      {"000102030405060708090a0b0c0d0e0f": hex.EncodeToString(bytes.Repeat([]byte{0xcc}, 32))},
		"slotshares": {"000102030405060708090a0b0c0d0e0f01": "0000000000000007" + hex.EncodeToString([]byte("mut"))},
		"leases":     {"000102030405060708090a0b0c0d0e0f" + hex.EncodeToString(bytes.Repeat([]byte{0xaa}, 32)): hex.EncodeToString(bytes.Repeat([]byte{0xbb}, 32)) + "18f4561522740000"},
		"expiry":     {"18f4561522740000000102030405060708090a0b0c0d0e0f": ""},
	}
	err = db.View(func(tx *bolt.Tx) error {
		for name, kv := range want {
			got := map[string]string{}
			if err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				got[hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			}); err != nil {
				return err
			}
			if len(got) != len(kv) {
				t.Errorf("bucket %s has %d keys, want %d: %v", name, len(got), len(kv), got)
			}
			for k, v := range kv {
				if got[k] != v {
					t.Errorf("bucket %s key %s = %q, want %q", name, k, got[k], v)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
