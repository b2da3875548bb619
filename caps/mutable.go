package caps

// Mutable files: caps derived from an Ed25519 key pair, and the signed,
// erasure-coded share format of each published version. The byte format is
// specified in docs/spec/mutable.md (versions 1 and 2); keep the two in step.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// Cap kinds of mutable files and directories.
const (
	KindMutableWrite  = "mut-rw"
	KindMutableRead   = "mut-ro"
	KindMutableVerify = "mut-verify"
	KindDirWrite      = "dir-rw"
	KindDirRead       = "dir-ro"
	KindDirVerify     = "dir-verify"
)

// Version bytes of mutable share headers. Encoding always writes
// MutableVersion; parsing accepts every version up to it, so a version-1
// file is read as before and rewritten as version 2 by its next write.
const (
	MutableVersion1 = 1 // AEAD key from the read key and a random salt only
	MutableVersion2 = 2 // key bound to SI, version and seq; salt synthetic (SIV)
	MutableVersion  = MutableVersion2
)

// ErrNewerFormat means an object was written by a newer Sphere in a format
// this one does not read. Errors wrapping it also wrap ErrFormat.
var ErrNewerFormat = errors.New("written in a newer format than this version of sphere reads; upgrade sphere")

// MaxMutableSize bounds the plaintext of one mutable version. Mutable files
// are one segment (directories, small documents), so this also bounds the
// memory a reader spends on one version.
const MaxMutableSize = 64 << 20

// Sizes in the mutable share format (docs/spec/mutable.md).
const (
	MutableHeaderSize = 1 + 8 + 16 + 1 + 1 + 8 + 32 // version seq salt k n length root
	mutableSaltSize   = 16
	mutableSigOffset  = MutableHeaderSize
	mutableShnumOff   = MutableHeaderSize + ed25519.SignatureSize
	mutableBlockOff   = mutableShnumOff + 1
)

// Domain-separation contexts of the mutable format.
const (
	ctxMutWriteKey = "sphere 2026-11-27 mutable write key v1"
	ctxMutReadKey  = "sphere 2026-11-27 mutable read key v1"
	ctxMutStorage  = "sphere 2026-11-27 mutable storage index v1"
	ctxMutAEAD     = "sphere 2026-11-27 mutable aead key v1"
	ctxMutEnabler  = "sphere 2026-11-27 mutable write enabler v1"
	ctxMutLeaf     = "sphere 2026-11-27 mutable block hash v1"
	ctxMutNode     = "sphere 2026-11-27 mutable merkle node v1"
	ctxMutSig      = "sphere 2026-11-27 mutable signature v1"
	ctxMutAEADv2   = "sphere 2026-12-04 mutable aead key v2"
	ctxMutSaltv2   = "sphere 2026-12-04 mutable synthetic salt v2"
)

// Keys of the tagged hashes (BLAKE3 keyed mode), derived once. Mutable code
// keeps its own helpers so the CHK code can change its internals freely.
var mutLeafKey, mutNodeKey = mutTagKey(ctxMutLeaf), mutTagKey(ctxMutNode)

func mutTagKey(ctx string) []byte {
	k := make([]byte, 32)
	blake3.DeriveKey(ctx, nil, k)
	return k
}

// MutableWriteCap can publish new versions of a mutable file or directory:
// "sphere:mut-rw:<seed>" or "sphere:dir-rw:<seed>". Seed is the Ed25519
// private-key seed; everything else derives from it one way.
type MutableWriteCap struct {
	Dir  bool
	Seed [32]byte
}

// MutableReadCap can read every version but not write:
// "sphere:mut-ro:<read key>:<public key>" (dir-ro for directories). The
// public key lets a reader check signatures; the signing key cannot be
// derived from it.
type MutableReadCap struct {
	Dir     bool
	ReadKey [16]byte
	PubKey  [32]byte
}

// MutableVerifyCap can check shares but not decrypt them:
// "sphere:mut-verify:<storage index>:<public key>". It holds no secret.
type MutableVerifyCap struct {
	Dir    bool
	SI     StorageIndex
	PubKey [32]byte
}

// NewMutableWriteCap draws a fresh key pair from rand.
func NewMutableWriteCap(rand io.Reader, dir bool) (MutableWriteCap, error) {
	c := MutableWriteCap{Dir: dir}
	if _, err := io.ReadFull(rand, c.Seed[:]); err != nil {
		return MutableWriteCap{}, fmt.Errorf("new mutable cap: read random seed: %w", err)
	}
	return c, nil
}

func derive16(ctx string, material []byte) (out [16]byte) {
	blake3.DeriveKey(ctx, material, out[:])
	return out
}

// WriteKey is the secret only writers know: write enablers and sealed
// directory write caps derive from it.
func (c MutableWriteCap) WriteKey() [16]byte { return derive16(ctxMutWriteKey, c.Seed[:]) }

// PublicKey returns the Ed25519 public key of the file.
func (c MutableWriteCap) PublicKey() [32]byte {
	var pk [32]byte
	copy(pk[:], ed25519.NewKeyFromSeed(c.Seed[:])[32:])
	return pk
}

// ReadCap derives the read cap.
func (c MutableWriteCap) ReadCap() MutableReadCap {
	wk := c.WriteKey()
	return MutableReadCap{Dir: c.Dir, ReadKey: derive16(ctxMutReadKey, wk[:]), PubKey: c.PublicKey()}
}

// VerifyCap derives the verify cap.
func (c MutableWriteCap) VerifyCap() MutableVerifyCap { return c.ReadCap().VerifyCap() }

// StorageIndex returns where the file's shares live.
func (c MutableWriteCap) StorageIndex() StorageIndex {
	wk := c.WriteKey()
	rk := derive16(ctxMutReadKey, wk[:])
	return StorageIndex(derive16(ctxMutStorage, rk[:]))
}

// Kind returns "mut-rw" or "dir-rw".
func (c MutableWriteCap) Kind() string { return pick(c.Dir, KindDirWrite, KindMutableWrite) }

// String returns the cap string, which contains the signing key.
func (c MutableWriteCap) String() string {
	return capPrefix + c.Kind() + ":" + b32.EncodeToString(c.Seed[:])
}

// LogValue shows the kind and a storage-index fingerprint, never the key.
func (c MutableWriteCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", c.Kind()), slog.Any("si", c.StorageIndex()))
}

// GoString hides the key from %#v.
func (c MutableWriteCap) GoString() string {
	return fmt.Sprintf("caps.MutableWriteCap{kind=%s si=%s}", c.Kind(), c.StorageIndex().String()[:10])
}

// Format hides the key from every fmt verb; call String for the cap itself.
func (c MutableWriteCap) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "sphere:%s:<si %s>", c.Kind(), c.StorageIndex().String()[:10])
}

// VerifyCap derives the verify cap.
func (c MutableReadCap) VerifyCap() MutableVerifyCap {
	return MutableVerifyCap{Dir: c.Dir, SI: c.StorageIndex(), PubKey: c.PubKey}
}

// StorageIndex returns where the file's shares live.
func (c MutableReadCap) StorageIndex() StorageIndex {
	return StorageIndex(derive16(ctxMutStorage, c.ReadKey[:]))
}

// Kind returns "mut-ro" or "dir-ro".
func (c MutableReadCap) Kind() string { return pick(c.Dir, KindDirRead, KindMutableRead) }

// String returns the cap string, which contains the read key.
func (c MutableReadCap) String() string {
	return capPrefix + c.Kind() + ":" + b32.EncodeToString(c.ReadKey[:]) + ":" + b32.EncodeToString(c.PubKey[:])
}

// LogValue shows the kind and a storage-index fingerprint, never the key.
func (c MutableReadCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", c.Kind()), slog.Any("si", c.StorageIndex()))
}

// GoString hides the key from %#v.
func (c MutableReadCap) GoString() string {
	return fmt.Sprintf("caps.MutableReadCap{kind=%s si=%s}", c.Kind(), c.StorageIndex().String()[:10])
}

// Format hides the key from every fmt verb; call String for the cap itself.
func (c MutableReadCap) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "sphere:%s:<si %s>", c.Kind(), c.StorageIndex().String()[:10])
}

// StorageIndex returns where the file's shares live.
func (c MutableVerifyCap) StorageIndex() StorageIndex { return c.SI }

// Kind returns "mut-verify" or "dir-verify".
func (c MutableVerifyCap) Kind() string { return pick(c.Dir, KindDirVerify, KindMutableVerify) }

// String returns the cap string.
func (c MutableVerifyCap) String() string {
	return capPrefix + c.Kind() + ":" + b32.EncodeToString(c.SI[:]) + ":" + b32.EncodeToString(c.PubKey[:])
}

// LogValue shows the kind and the storage-index fingerprint.
func (c MutableVerifyCap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", c.Kind()), slog.Any("si", c.SI))
}

func pick(dir bool, d, f string) string {
	if dir {
		return d
	}
	return f
}

// MutableReadCapOf returns the read cap of a mutable write or read cap (by
// value or pointer); ok is false for any other cap.
func MutableReadCapOf(c Cap) (rc MutableReadCap, ok bool) {
	switch c := c.(type) {
	case MutableWriteCap:
		return c.ReadCap(), true
	case *MutableWriteCap:
		if c != nil {
			return c.ReadCap(), true
		}
	case MutableReadCap:
		return c, true
	case *MutableReadCap:
		if c != nil {
			return *c, true
		}
	}
	return MutableReadCap{}, false
}

// MutableVerifyCapOf returns the verify cap of any mutable cap; ok is false
// for any other cap.
func MutableVerifyCapOf(c Cap) (vc MutableVerifyCap, ok bool) {
	switch c := c.(type) {
	case MutableVerifyCap:
		return c, true
	case *MutableVerifyCap:
		if c != nil {
			return *c, true
		}
	}
	if rc, ok := MutableReadCapOf(c); ok {
		return rc.VerifyCap(), true
	}
	return MutableVerifyCap{}, false
}

// parseMutable parses cap kinds other than lit, chk and chk-verify; rest is
// everything after "sphere:<kind>:".
func parseMutable(kind, rest string) (Cap, error) {
	if len(rest) > MaxCapLen {
		return nil, fmt.Errorf("%s cap: want at most %d characters, have %d: %w", clip(kind, 20), MaxCapLen, len(rest), ErrFormat)
	}
	switch kind {
	case KindMutableWrite, KindDirWrite:
		c := MutableWriteCap{Dir: kind == KindDirWrite}
		f, err := splitFields(kind, rest, 1)
		if err != nil {
			return nil, err
		}
		if err := decodeB32(kind, "seed", f[0], c.Seed[:]); err != nil {
			return nil, err
		}
		return c, nil
	case KindMutableRead, KindDirRead:
		c := MutableReadCap{Dir: kind == KindDirRead}
		f, err := splitFields(kind, rest, 2)
		if err != nil {
			return nil, err
		}
		if err := decodeB32(kind, "read key", f[0], c.ReadKey[:]); err != nil {
			return nil, err
		}
		if err := decodeB32(kind, "public key", f[1], c.PubKey[:]); err != nil {
			return nil, err
		}
		return c, nil
	case KindMutableVerify, KindDirVerify:
		c := MutableVerifyCap{Dir: kind == KindDirVerify}
		f, err := splitFields(kind, rest, 2)
		if err != nil {
			return nil, err
		}
		if err := decodeB32(kind, "storage index", f[0], c.SI[:]); err != nil {
			return nil, err
		}
		if err := decodeB32(kind, "public key", f[1], c.PubKey[:]); err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("cap: want kind lit, chk, chk-verify, mut-rw, mut-ro, mut-verify, dir-rw, dir-ro or dir-verify, have %q: %w",
		clip(kind, 20), ErrFormat)
}

// WriteEnabler returns the secret a writer presents to server serverID to
// replace the shares of c's slot. Each server sees its own value, so one
// server cannot use it to write to another.
func WriteEnabler(c MutableWriteCap, serverID []byte) [32]byte {
	wk := c.WriteKey()
	h := blake3.NewDeriveKey(ctxMutEnabler)
	h.Write(wk[:])
	h.Write(serverID)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// MutableShare is one verified share of one version of a mutable file.
type MutableShare struct {
	Version byte // format version (header byte 0)
	Seq     uint64
	Salt    [mutableSaltSize]byte
	K, N    int
	Length  uint64   // plaintext length
	Root    [32]byte // Merkle root over the hashes of all n blocks
	Shnum   int
	Block   []byte
	Header  []byte // the signed header, MutableHeaderSize bytes
}

// mutableBlockSize is the length of each block of a version whose plaintext
// is length bytes: the AEAD ciphertext split k ways.
func mutableBlockSize(length uint64, k int) int {
	ct := int(length) + chacha20poly1305.Overhead
	return (ct + k - 1) / k
}

// MutableShareSize returns the length of each share of a version.
func MutableShareSize(length uint64, k, n int) int {
	return mutableBlockOff + mutableBlockSize(length, k) + 32*mutTreeDepth(n)
}

func mutLeaf(shnum int, block []byte) [32]byte {
	h, _ := blake3.NewKeyed(mutLeafKey) // key is always 32 bytes
	h.Write([]byte{byte(shnum)})
	h.Write(block)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func mutNode(l, r [32]byte) [32]byte {
	var b [64]byte
	copy(b[:32], l[:])
	copy(b[32:], r[:])
	h, _ := blake3.NewKeyed(mutNodeKey) // key is always 32 bytes
	h.Write(b[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// mutTreeDepth is the number of levels above the leaves of a tree over n
// leaves padded to a power of two: the length of a share's Merkle path.
func mutTreeDepth(n int) int {
	d := 0
	for w := 1; w < n; w <<= 1 {
		d++
	}
	return d
}

// mutTree returns every level of the Merkle tree over leaves padded with
// zero hashes to a power of two; the last level is the root.
func mutTree(leaves [][32]byte) [][][32]byte {
	lvl := make([][32]byte, 1<<mutTreeDepth(len(leaves)))
	copy(lvl, leaves)
	levels := [][][32]byte{lvl}
	for len(lvl) > 1 {
		next := make([][32]byte, len(lvl)/2)
		for i := range next {
			next[i] = mutNode(lvl[2*i], lvl[2*i+1])
		}
		levels = append(levels, next)
		lvl = next
	}
	return levels
}

// mutAEADKey returns the AEAD key of a version. Version 1: from the read
// key and the salt only. Version 2: also from the storage index, the
// version byte and seq, so two versions share a key only if they share
// file, seq and salt; and the version-2 salt is synthetic (mutSaltV2), so
// that takes the same content too.
func mutAEADKey(version byte, readKey [16]byte, seq uint64, salt [mutableSaltSize]byte) []byte {
	if version == MutableVersion1 {
		h := blake3.NewDeriveKey(ctxMutAEAD)
		h.Write(readKey[:])
		h.Write(salt[:])
		return h.Sum(make([]byte, 0, chacha20poly1305.KeySize))
	}
	si := StorageIndex(derive16(ctxMutStorage, readKey[:]))
	h := blake3.NewDeriveKey(ctxMutAEADv2)
	h.Write(readKey[:])
	h.Write(si[:])
	var b [9]byte
	b[0] = version
	binary.BigEndian.PutUint64(b[1:], seq)
	h.Write(b[:])
	h.Write(salt[:])
	return h.Sum(make([]byte, 0, chacha20poly1305.KeySize))
}

// mutSaltV2 is the synthetic salt of a version-2 version: a keyed hash
// (key from the read key) of 16 random bytes, seq and the content. With a
// good random source it is random; with a broken one (repeating bytes) it
// still differs for every different (seq, content), so no key/nonce pair
// is ever used for two plaintexts. Servers see it; without the read key it
// reveals nothing about the content.
func mutSaltV2(readKey [16]byte, r [mutableSaltSize]byte, seq uint64, content []byte) (salt [mutableSaltSize]byte) {
	var key [32]byte
	blake3.DeriveKey(ctxMutSaltv2, readKey[:], key[:])
	h, _ := blake3.NewKeyed(key[:]) // key is always 32 bytes
	h.Write(r[:])
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(len(content)))
	h.Write(b[:])
	h.Write(content)
	var sum [32]byte
	h.Sum(sum[:0])
	copy(salt[:], sum[:])
	return salt
}

// sigMessage is what the Ed25519 signature covers: a context, the storage
// index (so a share cannot move to another slot of the same key) and the
// header.
func sigMessage(si StorageIndex, header []byte) []byte {
	m := make([]byte, 0, len(ctxMutSig)+len(si)+len(header))
	m = append(m, ctxMutSig...)
	m = append(m, si[:]...)
	return append(m, header...)
}

func mutableCoder(k, n int) (reedsolomon.Encoder, error) {
	return reedsolomon.New(k, n-k)
}

// EncodeMutable encrypts content as version seq of the file wc names, in
// the current format (MutableVersion), and erasure-codes it into n shares,
// k of which rebuild it. The AEAD key is bound to the file, seq and a salt
// made from rand and the content, so it never repeats for two plaintexts,
// even if rand does. It returns the shares (shares[shnum]) and the
// version's root.
func EncodeMutable(wc MutableWriteCap, seq uint64, content []byte, k, n int, rand io.Reader) ([][]byte, [32]byte, error) {
	return encodeMutable(MutableVersion, wc, seq, content, k, n, rand)
}

// encodeMutable encodes in the given format version; version 1 is kept for
// the known-answer tests and the tests of reading old files.
func encodeMutable(version byte, wc MutableWriteCap, seq uint64, content []byte, k, n int, rand io.Reader) ([][]byte, [32]byte, error) {
	var root [32]byte
	if k < 1 || k > n || n > MaxShares {
		return nil, root, fmt.Errorf("encode mutable: want 1 <= k <= n <= %d, have k=%d n=%d: %w", MaxShares, k, n, ErrFormat)
	}
	if len(content) > MaxMutableSize {
		return nil, root, fmt.Errorf("encode mutable: want at most %d bytes, have %d: %w", MaxMutableSize, len(content), ErrFormat)
	}
	if version != MutableVersion1 && version != MutableVersion2 {
		return nil, root, fmt.Errorf("encode mutable: unknown version %d: %w", version, ErrFormat)
	}
	var salt [mutableSaltSize]byte
	if _, err := io.ReadFull(rand, salt[:]); err != nil {
		return nil, root, fmt.Errorf("encode mutable: read random salt: %w", err)
	}
	rc := wc.ReadCap()
	if version == MutableVersion2 {
		salt = mutSaltV2(rc.ReadKey, salt, seq, content)
	}
	aead, err := chacha20poly1305.NewX(mutAEADKey(version, rc.ReadKey, seq, salt))
	if err != nil {
		return nil, root, fmt.Errorf("encode mutable: %w", err)
	}
	bs := mutableBlockSize(uint64(len(content)), k)
	// Each share is allocated once; its block is coded in place. The
	// ciphertext is sealed into one buffer and copied into the data blocks
	// (the last one zero-padded).
	size := MutableShareSize(uint64(len(content)), k, n)
	shares := make([][]byte, n)
	blocks := make([][]byte, n)
	for i := range shares {
		shares[i] = make([]byte, size)
		blocks[i] = shares[i][mutableBlockOff : mutableBlockOff+bs : mutableBlockOff+bs]
	}
	var nonce [chacha20poly1305.NonceSizeX]byte // unique: the key is unique per version
	ct := aead.Seal(make([]byte, 0, len(content)+chacha20poly1305.Overhead), nonce[:], content, nil)
	for i := range k {
		copy(blocks[i], ct[min(i*bs, len(ct)):])
	}
	if n > k {
		enc, err := mutableCoder(k, n)
		if err != nil {
			return nil, root, fmt.Errorf("encode mutable: %w", err)
		}
		if err := enc.Encode(blocks); err != nil {
			return nil, root, fmt.Errorf("encode mutable: erasure code: %w", err)
		}
	}
	leaves := make([][32]byte, n)
	for i, b := range blocks {
		leaves[i] = mutLeaf(i, b)
	}
	levels := mutTree(leaves)
	root = levels[len(levels)-1][0]

	hdr := make([]byte, 0, MutableHeaderSize)
	hdr = append(hdr, version)
	hdr = binary.BigEndian.AppendUint64(hdr, seq)
	hdr = append(hdr, salt[:]...)
	hdr = append(hdr, byte(k), byte(n))
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(content)))
	hdr = append(hdr, root[:]...)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(wc.Seed[:]), sigMessage(rc.StorageIndex(), hdr))

	for i, sh := range shares {
		copy(sh, hdr)
		copy(sh[mutableSigOffset:], sig)
		sh[mutableShnumOff] = byte(i)
		off := mutableBlockOff + bs
		j := i
		for _, lvl := range levels[:len(levels)-1] {
			off += copy(sh[off:], lvl[j^1][:])
			j >>= 1
		}
	}
	return shares, root, nil
}

// ParseMutableShare checks share bytes from a server against vc: structure
// and bounds, the signature over the header by the cap's public key, and
// the block's Merkle path to the signed root. Errors wrap ErrFormat or
// ErrIntegrity. The returned share aliases data.
func ParseMutableShare(vc MutableVerifyCap, data []byte) (*MutableShare, error) {
	if len(data) < mutableBlockOff {
		return nil, fmt.Errorf("mutable share: want at least %d bytes, have %d: %w", mutableBlockOff, len(data), ErrFormat)
	}
	switch v := data[0]; {
	case v > MutableVersion:
		return nil, fmt.Errorf("mutable share: version %d (this sphere reads 1 to %d): %w (%w)", v, MutableVersion, ErrNewerFormat, ErrFormat)
	case v < MutableVersion1:
		return nil, fmt.Errorf("mutable share: invalid version, want 1 to %d, have %d: %w", MutableVersion, v, ErrFormat)
	}
	s := &MutableShare{Version: data[0], Header: data[:MutableHeaderSize:MutableHeaderSize]}
	s.Seq = binary.BigEndian.Uint64(data[1:9])
	copy(s.Salt[:], data[9:25])
	s.K, s.N = int(data[25]), int(data[26])
	s.Length = binary.BigEndian.Uint64(data[27:35])
	copy(s.Root[:], data[35:67])
	s.Shnum = int(data[mutableShnumOff])
	if s.K < 1 || s.K > s.N {
		return nil, fmt.Errorf("mutable share: want 1 <= k <= n, have k=%d n=%d: %w", s.K, s.N, ErrFormat)
	}
	if s.Length > MaxMutableSize {
		return nil, fmt.Errorf("mutable share: want length at most %d, have %d: %w", MaxMutableSize, s.Length, ErrFormat)
	}
	if s.Shnum >= s.N {
		return nil, fmt.Errorf("mutable share: want share number below n=%d, have %d: %w", s.N, s.Shnum, ErrFormat)
	}
	if want := MutableShareSize(s.Length, s.K, s.N); len(data) != want {
		return nil, fmt.Errorf("mutable share: want %d bytes for length=%d k=%d n=%d, have %d: %w",
			want, s.Length, s.K, s.N, len(data), ErrFormat)
	}
	sig := data[mutableSigOffset:mutableShnumOff]
	if !ed25519.Verify(ed25519.PublicKey(vc.PubKey[:]), sigMessage(vc.SI, s.Header), sig) {
		return nil, fmt.Errorf("mutable share %d seq %d: bad signature: %w", s.Shnum, s.Seq, ErrIntegrity)
	}
	bs := mutableBlockSize(s.Length, s.K)
	s.Block = data[mutableBlockOff : mutableBlockOff+bs : mutableBlockOff+bs]
	h := mutLeaf(s.Shnum, s.Block)
	proof := data[mutableBlockOff+bs:]
	i := s.Shnum
	for off := 0; off < len(proof); off += 32 {
		sib := [32]byte(proof[off : off+32])
		if i&1 == 0 {
			h = mutNode(h, sib)
		} else {
			h = mutNode(sib, h)
		}
		i >>= 1
	}
	if h != s.Root {
		return nil, fmt.Errorf("mutable share %d seq %d: block does not match the signed root: %w", s.Shnum, s.Seq, ErrIntegrity)
	}
	return s, nil
}

// DecodeMutable rebuilds and decrypts a version from shares that
// ParseMutableShare accepted under rc's verify cap. All shares must belong
// to the same version (same header); at least k distinct share numbers are
// needed.
func DecodeMutable(rc MutableReadCap, shares []*MutableShare) ([]byte, error) {
	if len(shares) == 0 {
		return nil, fmt.Errorf("decode mutable: no shares: %w", ErrFormat)
	}
	first := shares[0]
	blocks := make([][]byte, first.N)
	have := 0
	for _, s := range shares {
		if !bytes.Equal(s.Header, first.Header) {
			return nil, fmt.Errorf("decode mutable: shares of different versions (seq %d and %d): %w", first.Seq, s.Seq, ErrFormat)
		}
		if s.Shnum < 0 || s.Shnum >= first.N {
			return nil, fmt.Errorf("decode mutable: share number %d out of range: %w", s.Shnum, ErrFormat)
		}
		if blocks[s.Shnum] == nil {
			blocks[s.Shnum] = s.Block
			have++
		}
	}
	if have < first.K {
		return nil, fmt.Errorf("decode mutable: want %d distinct shares, have %d: %w", first.K, have, ErrFormat)
	}
	bs := mutableBlockSize(first.Length, first.K)
	for _, b := range blocks {
		if b != nil && len(b) != bs {
			return nil, fmt.Errorf("decode mutable: want blocks of %d bytes, have %d: %w", bs, len(b), ErrFormat)
		}
	}
	missingData := false
	for _, b := range blocks[:first.K] {
		missingData = missingData || b == nil
	}
	if missingData {
		enc, err := mutableCoder(first.K, first.N)
		if err != nil {
			return nil, fmt.Errorf("decode mutable: %w", err)
		}
		if err := enc.ReconstructData(blocks); err != nil {
			return nil, fmt.Errorf("decode mutable: erasure decode: %w", err)
		}
	}
	ctLen := int(first.Length) + chacha20poly1305.Overhead
	ct := make([]byte, 0, bs*first.K)
	for _, b := range blocks[:first.K] {
		ct = append(ct, b...)
	}
	ct = ct[:ctLen]
	aead, err := chacha20poly1305.NewX(mutAEADKey(first.Header[0], rc.ReadKey, first.Seq, first.Salt))
	if err != nil {
		return nil, fmt.Errorf("decode mutable: %w", err)
	}
	var nonce [chacha20poly1305.NonceSizeX]byte
	pt, err := aead.Open(ct[:0], nonce[:], ct, nil)
	if err != nil {
		return nil, fmt.Errorf("decode mutable seq %d: decrypt: %w", first.Seq, errors.Join(ErrIntegrity, err))
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// isMutableKind reports whether kind names a mutable file or directory cap.
func isMutableKind(kind string) bool {
	return strings.HasPrefix(kind, "mut-") || strings.HasPrefix(kind, "dir-")
}
