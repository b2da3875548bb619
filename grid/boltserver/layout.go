package boltserver

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sphere-grid/sphere/caps"
)

// Version is the on-disk format version, stored in the meta bucket. The
// layout is specified in docs/spec/disk-store.md. Version 2 added the
// inline bucket; Open upgrades a version 1 store in place (a version 1
// store is a valid version 2 store with no inline shares), and version 1
// code refuses a version 2 store instead of taking its inline shares for
// lost files.
const Version = 2

// minVersion is the oldest format Open accepts (and upgrades).
const minVersion = 1

// Names inside the store directory.
const (
	dbName    = "store.db"
	sharesDir = "shares"
	tmpDir    = "tmp"
)

// Buckets of the bbolt file.
var (
	bMeta       = []byte("meta")       // "version" -> uint32; "id" -> server id
	bShares     = []byte("shares")     // si || shnum -> size uint64
	bInline     = []byte("inline")     // si || shnum -> share bytes, for shares kept in bbolt
	bSlots      = []byte("slots")      // si -> write enabler (32)
	bSlotShares = []byte("slotshares") // si || shnum -> seq uint64 || data
	bLeases     = []byte("leases")     // si || renew secret -> cancel secret || expires uint64
	bExpiry     = []byte("expiry")     // expires uint64 || si -> empty; expires = latest lease of si
	allBuckets  = [][]byte{bMeta, bShares, bInline, bSlots, bSlotShares, bLeases, bExpiry}

	kVersion = []byte("version")
	kID      = []byte("id")
)

const (
	siLen        = len(caps.StorageIndex{})
	shareKeyLen  = siLen + 1
	leaseKeyLen  = siLen + 32
	leaseValLen  = 32 + 8
	expiryKeyLen = 8 + siLen
)

func shareKey(si caps.StorageIndex, shnum int) []byte {
	k := make([]byte, shareKeyLen)
	copy(k, si[:])
	k[siLen] = byte(shnum)
	return k
}

func leaseKey(si caps.StorageIndex, renew [32]byte) []byte {
	k := make([]byte, 0, leaseKeyLen)
	return append(append(k, si[:]...), renew[:]...)
}

func expiryKey(exp uint64, si caps.StorageIndex) []byte {
	k := make([]byte, expiryKeyLen)
	binary.BigEndian.PutUint64(k, exp)
	copy(k[8:], si[:])
	return k
}

// timeKey encodes t as unsigned nanoseconds since the Unix epoch, so that
// big-endian keys sort by time; times outside 1970..2262 are clamped.
func timeKey(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func keyTime(v uint64) time.Time { return time.Unix(0, int64(min(v, math.MaxInt64))) }

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// sharePath is where share shnum of si lives, relative to the store
// directory: shares/<first 2 base32 chars>/<base32 si>/<shnum>. The
// two-character level keeps directories to about 1/1024 of the storage
// indexes each.
func sharePath(si caps.StorageIndex, shnum int) string {
	s := si.String()
	return filepath.Join(sharesDir, s[:2], s, strconv.Itoa(shnum))
}

// parseShareFile turns the last two path elements back into (si, shnum).
func parseShareFile(siDir, name string) (caps.StorageIndex, int, error) {
	si, err := caps.ParseStorageIndex(siDir)
	if err != nil {
		return si, 0, err
	}
	n, err := strconv.Atoi(name)
	if err != nil || n < 0 || n > MaxShnum || strconv.Itoa(n) != name {
		return si, 0, fmt.Errorf("bad share file name %q", name)
	}
	return si, n, nil
}
