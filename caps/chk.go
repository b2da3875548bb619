package caps

// CHK: the immutable-file encoding. The byte format is specified in
// docs/spec/chk.md (version 1); keep the two in step.

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

var (
	// ErrFormat: bytes or a string are malformed (wrong length, version, field).
	ErrFormat = errors.New("malformed")
	// ErrIntegrity: bytes are well-formed but fail a hash or signature check.
	ErrIntegrity = errors.New("integrity check failed")
)

// LiteralMax is the largest file kept inside its cap (a lit cap) instead of
// being encoded into shares.
const LiteralMax = 55

// Bounds on what a share or a cap may claim. They keep every size computed
// from untrusted bytes far from integer overflow and huge allocations.
const (
	MinSegmentSize = 64       // smallest segment size accepted
	MaxSegmentSize = 64 << 20 // largest segment size accepted
	MaxSegments    = 1 << 24  // most segments one file may have
	MaxFileSize    = 1 << 50  // largest immutable file (1 PiB)
	MaxShares      = 255      // largest n
)

// CHKVersion is the version byte of share headers and extension blocks.
const CHKVersion = 1

// Params are the erasure-coding parameters of an upload.
type Params struct {
	K           int // shares needed to read
	Happy       int // distinct servers that must hold shares for an upload to succeed
	N           int // shares made
	SegmentSize int // plaintext bytes per segment
}

// DefaultParams returns k=3, happy=7, n=10 and the benchmarked segment size
// (1 MiB; see docs/BENCHMARKS.md, section caps).
func DefaultParams() Params { return Params{K: 3, Happy: 7, N: 10, SegmentSize: 1 << 20} }

// Validate checks 1 <= K <= Happy <= N <= 255 and a sane segment size.
func (p Params) Validate() error {
	if p.K < 1 || p.K > p.Happy || p.Happy > p.N || p.N > MaxShares {
		return fmt.Errorf("params: want 1 <= k <= happy <= n <= %d, have k=%d happy=%d n=%d: %w",
			MaxShares, p.K, p.Happy, p.N, ErrFormat)
	}
	if p.SegmentSize < MinSegmentSize || p.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("params: want segment size in [%d, %d], have %d: %w",
			MinSegmentSize, MaxSegmentSize, p.SegmentSize, ErrFormat)
	}
	return nil
}

// Domain-separation contexts. Each hash in the format has its own, so a value
// of one kind can never stand in for another.
const (
	ctxConvergence = "sphere 2026-11-27 chk convergence v1"
	ctxStorage     = "sphere 2026-11-27 chk storage index v1"
	ctxAEAD        = "sphere 2026-11-27 chk aead key v1"
	ctxBlock       = "sphere 2026-11-27 chk block hash v1"
	ctxNode        = "sphere 2026-11-27 chk merkle node v1"
	ctxUEB         = "sphere 2026-11-27 chk extension block v1"
	ctxSegment     = "sphere 2026-11-27 chk segment hash v1"
)

// Tagged hashes: BLAKE3 keyed mode with a key derived from the context costs
// nothing per call beyond the plain hash. A zeebo/blake3 Hasher is ~10 KB,
// so hashers are pooled per tag rather than made per call (that cost more
// than hashing a 64-byte Merkle node).
var blockKey, nodeKey, uebKey, segKey = hasherPool(ctxBlock), hasherPool(ctxNode), hasherPool(ctxUEB), hasherPool(ctxSegment)

// tagKey returns the 32-byte BLAKE3 key of a context .
func tagKey(ctx string) []byte {
	k := make([]byte, 32)
	blake3.DeriveKey(ctx, nil, k)
	return k
}

// hasherPool returns a pool of keyed hashers for a context.
func hasherPool(ctx string) *sync.Pool { return poolFor(tagKey(ctx)) }

// pools maps a 32-byte key to its *sync.Pool of keyed hashers.
var pools sync.Map

func poolFor(key []byte) *sync.Pool {
	k := [32]byte(key)
	if p, ok := pools.Load(k); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(k, &sync.Pool{New: func() any {
		h, _ := blake3.NewKeyed(k[:])
		return h
	}})
	return p.(*sync.Pool)
}

func pooledSum(pool *sync.Pool, data []byte) (out [32]byte) {
	h := pool.Get().(*blake3.Hasher)
	h.Reset()
	h.Write(data)
	h.Sum(out[:0])
	pool.Put(h)
	return out
}

func blockHash(block []byte) [32]byte { return pooledSum(blockKey, block) }

// segmentHash commits to a segment's ciphertext: the hash of its k data
// blocks' hashes (the data blocks are the sealed segment, zero-padded).
func segmentHash(dataBlockHashes [][32]byte) [32]byte {
	h := segKey.Get().(*blake3.Hasher)
	h.Reset()
	for _, b := range dataBlockHashes {
		h.Write(b[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	segKey.Put(h)
	return out
}

func nodeHash(l, r [32]byte) [32]byte {
	var b [64]byte
	copy(b[:32], l[:])
	copy(b[32:], r[:])
	return pooledSum(nodeKey, b[:])
}

// StorageIndexOf returns the storage index of the file whose key is key.
func StorageIndexOf(key [16]byte) StorageIndex {
	var si StorageIndex
	blake3.DeriveKey(ctxStorage, key[:], si[:])
	return si
}

func aeadKey(key [16]byte) []byte {
	k := make([]byte, chacha20poly1305.KeySize)
	blake3.DeriveKey(ctxAEAD, key[:], k)
	return k
}

// segmentNonce is the XChaCha20 nonce of segment seg: the index, big-endian,
// in the first 8 bytes. Every file has its own key, so (key, nonce) never
// repeats with different plaintext (docs/spec/chk.md, "Nonces").
func segmentNonce(seg int) []byte {
	n := make([]byte, chacha20poly1305.NonceSizeX)
	binary.BigEndian.PutUint64(n, uint64(seg))
	return n
}

// aeadData is the associated data of every segment: it binds the ciphertext
// to the file's size and segmentation.
func aeadData(l Layout) []byte {
	ad := make([]byte, 0, 24)
	ad = append(ad, "sphere-chk-v1\x00"...)
	ad = binary.BigEndian.AppendUint64(ad, l.Size)
	ad = binary.BigEndian.AppendUint32(ad, uint32(l.SegmentSize))
	return ad
}

// KeyHasher derives a convergent key: write the whole plaintext, then Key.
// The key is keyed BLAKE3 of (k, n, segment size, plaintext) under a key
// derived from the convergence secret, so only holders of the same secret
// converge on the same key.
type KeyHasher struct{ h *blake3.Hasher }

// NewKeyHasher starts a convergent key derivation from the user's
// convergence secret and the encoding parameters.
func NewKeyHasher(secret []byte, p Params) *KeyHasher {
	var hk [32]byte
	blake3.DeriveKey(ctxConvergence, secret, hk[:])
	h, _ := blake3.NewKeyed(hk[:])
	var prm [12]byte
	binary.BigEndian.PutUint32(prm[0:], uint32(p.K))
	binary.BigEndian.PutUint32(prm[4:], uint32(p.N))
	binary.BigEndian.PutUint32(prm[8:], uint32(p.SegmentSize))
	h.Write(prm[:])
	return &KeyHasher{h: h}
}

// Write feeds plaintext; it never fails.
func (h *KeyHasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Key returns the derived key. It does not change the hasher's state.
func (h *KeyHasher) Key() [16]byte {
	var sum [32]byte
	h.h.Sum(sum[:0])
	var k [16]byte
	copy(k[:], sum[:])
	return k
}

// Layout says where things are inside every share of one file. All shares
// of a file have the same layout.
type Layout struct {
	K, N        int
	Size        uint64
	SegmentSize int
}

// ShareHeaderSize is the fixed length of the header at offset 0 of a share:
// magic(4) || version(1) || shnum(1) || k(1) || n(1) || segment size(4) || size(8).
const ShareHeaderSize = 20

var shareMagic = [4]byte{'S', 'P', 'H', 'C'}

// aeadOverhead is the Poly1305 tag appended to each sealed segment.
const aeadOverhead = chacha20poly1305.Overhead

// uebSize is the length of the extension block: version(1) || k(1) || n(1)
// || segment size(4) || size(8) || segments(4) || share root(32) || segment root(32).
const uebSize = 83

// check reports whether l is a layout this code can handle, so the other
// methods cannot overflow.
func (l Layout) check() error {
	if l.K < 1 || l.K > l.N || l.N > MaxShares {
		return fmt.Errorf("layout: want 1 <= k <= n <= %d, have k=%d n=%d: %w", MaxShares, l.K, l.N, ErrFormat)
	}
	if l.SegmentSize < MinSegmentSize || l.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("layout: want segment size in [%d, %d], have %d: %w",
			MinSegmentSize, MaxSegmentSize, l.SegmentSize, ErrFormat)
	}
	if l.Size > MaxFileSize {
		return fmt.Errorf("layout: want size <= %d, have %d: %w", uint64(MaxFileSize), l.Size, ErrFormat)
	}
	if segs := (l.Size + uint64(l.SegmentSize) - 1) / uint64(l.SegmentSize); segs > MaxSegments {
		return fmt.Errorf("layout: want at most %d segments, have %d: %w", MaxSegments, segs, ErrFormat)
	}
	return nil
}

// NumSegments returns the number of segments (at least 1, even for size 0).
func (l Layout) NumSegments() int {
	if l.Size == 0 || l.SegmentSize <= 0 {
		return 1
	}
	return int((l.Size + uint64(l.SegmentSize) - 1) / uint64(l.SegmentSize))
}

// SegmentLen returns the plaintext length of segment seg.
func (l Layout) SegmentLen(seg int) int {
	last := l.NumSegments() - 1
	if seg < last {
		return l.SegmentSize
	}
	return int(l.Size - uint64(last)*uint64(l.SegmentSize))
}

// BlockSize returns the length of each share's block for segment seg: the
// sealed segment, zero-padded to a multiple of k, divided by k.
func (l Layout) BlockSize(seg int) int {
	if l.K <= 0 {
		return 0
	}
	return (l.SegmentLen(seg) + aeadOverhead + l.K - 1) / l.K
}

// BlockOffset returns the offset of segment seg's block inside a share.
func (l Layout) BlockOffset(seg int) int64 {
	return ShareHeaderSize + int64(seg)*int64(l.BlockSize(0))
}

// TrailerOffset and TrailerSize locate the share's trailer (hashes + extension block).
func (l Layout) TrailerOffset() int64 {
	last := l.NumSegments() - 1
	return l.BlockOffset(last) + int64(l.BlockSize(last))
}

// TrailerSize is block hashes (32 per segment) || segment hashes (32 per
// segment) || uncle path (32 per level of the share tree) || extension block.
func (l Layout) TrailerSize() int {
	return 64*l.NumSegments() + 32*treeDepth(l.N) + uebSize
}

// ShareSize is the total length of each share.
func (l Layout) ShareSize() int64 { return l.TrailerOffset() + int64(l.TrailerSize()) }

// treeDepth returns the number of levels above the leaves of a Merkle tree
// over n leaves padded to a power of two.
func treeDepth(n int) int {
	d := 0
	for w := 1; w < n; w <<= 1 {
		d++
	}
	return d
}

// merkleLevels builds a tree over leaves padded with zero hashes to a power
// of two; levels[0] are the padded leaves and the last level is the root.
func merkleLevels(leaves [][32]byte) [][][32]byte {
	w := 1 << treeDepth(len(leaves))
	lvl := make([][32]byte, w)
	copy(lvl, leaves)
	levels := [][][32]byte{lvl}
	for len(lvl) > 1 {
		next := make([][32]byte, len(lvl)/2)
		for i := range next {
			next[i] = nodeHash(lvl[2*i], lvl[2*i+1])
		}
		levels = append(levels, next)
		lvl = next
	}
	return levels
}

func merkleRoot(leaves [][32]byte) [32]byte {
	lv := merkleLevels(leaves)
	return lv[len(lv)-1][0]
}

// uncles returns the sibling of leaf i at each level, bottom up.
func uncles(levels [][][32]byte, i int) [][32]byte {
	var u [][32]byte
	for _, lvl := range levels[:len(levels)-1] {
		u = append(u, lvl[i^1])
		i >>= 1
	}
	return u
}

// rootFromUncles climbs from leaf i with its uncle path.
func rootFromUncles(leaf [32]byte, i int, u [][32]byte) [32]byte {
	h := leaf
	for _, s := range u {
		if i&1 == 0 {
			h = nodeHash(h, s)
		} else {
			h = nodeHash(s, h)
		}
		i >>= 1
	}
	return h
}

func (l Layout) header(shnum int) []byte {
	h := make([]byte, ShareHeaderSize)
	copy(h, shareMagic[:])
	h[4] = CHKVersion
	h[5] = byte(shnum)
	h[6] = byte(l.K)
	h[7] = byte(l.N)
	binary.BigEndian.PutUint32(h[8:], uint32(l.SegmentSize))
	binary.BigEndian.PutUint64(h[12:], l.Size)
	return h
}

func (l Layout) ueb(shareRoot, segRoot [32]byte) []byte {
	u := make([]byte, 0, uebSize)
	u = append(u, CHKVersion, byte(l.K), byte(l.N))
	u = binary.BigEndian.AppendUint32(u, uint32(l.SegmentSize))
	u = binary.BigEndian.AppendUint64(u, l.Size)
	u = binary.BigEndian.AppendUint32(u, uint32(l.NumSegments()))
	u = append(u, shareRoot[:]...)
	return append(u, segRoot[:]...)
}

func uebRoot(ueb []byte) [32]byte { return pooledSum(uebKey, ueb) }

// Encoder turns a plaintext into n shares, segment by segment. A share is
// ShareHeader(shnum) || the blocks of every segment in order || the trailer
// Finish returns.
type Encoder struct {
	key    [16]byte
	si     StorageIndex
	l      Layout
	aead   cipher.AEAD
	ad     []byte
	rs     reedsolomon.Encoder
	hashes [][32]byte // hashes[seg*N+shnum]

	mu      sync.Mutex
	claimed []bool // segment taken by an EncodeSegment call
	done    []bool // segment finished
	ndone   int
}

// NewEncoder prepares to encode size bytes under key.
func NewEncoder(key [16]byte, p Params, size uint64) (*Encoder, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("chk encoder: %w", err)
	}
	l := Layout{K: p.K, N: p.N, Size: size, SegmentSize: p.SegmentSize}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("chk encoder: %w", err)
	}
	aead, err := chacha20poly1305.NewX(aeadKey(key))
	if err != nil {
		return nil, fmt.Errorf("chk encoder: %w", err)
	}
	rs, err := coderFor(l.K, l.N)
	if err != nil {
		return nil, fmt.Errorf("chk encoder: %w", err)
	}
	segs := l.NumSegments()
	return &Encoder{
		key: key, si: StorageIndexOf(key), l: l, aead: aead, ad: aeadData(l), rs: rs,
		hashes: make([][32]byte, segs*l.N), claimed: make([]bool, segs), done: make([]bool, segs),
	}, nil
}

// StorageIndex returns where the shares will live.
func (e *Encoder) StorageIndex() StorageIndex { return e.si }

// Layout returns the share layout.
func (e *Encoder) Layout() Layout { return e.l }

// ShareHeader returns the bytes at offset 0 of share shnum.
func (e *Encoder) ShareHeader(shnum int) []byte { return e.l.header(shnum) }

// EncodeSegment seals and erasure-codes plaintext segment seg and returns
// its n blocks (blocks[shnum]). Safe to call concurrently for distinct seg;
// each seg exactly once. The blocks share one fresh allocation the caller
// owns.
func (e *Encoder) EncodeSegment(seg int, plaintext []byte) ([][]byte, error) {
	bs := e.l.BlockSize(seg)
	return e.EncodeSegmentInto(seg, plaintext, make([]byte, bs*e.l.N))
}

// EncodeSegmentInto is EncodeSegment writing into buf, which must hold
// n*BlockSize(seg) bytes (it may be reused once the blocks are consumed).
// The returned blocks are slices of buf.
func (e *Encoder) EncodeSegmentInto(seg int, plaintext []byte, buf []byte) ([][]byte, error) {
	l := e.l
	if seg < 0 || seg >= l.NumSegments() {
		return nil, fmt.Errorf("chk encode: segment %d of %d: %w", seg, l.NumSegments(), ErrFormat)
	}
	if want := l.SegmentLen(seg); len(plaintext) != want {
		return nil, fmt.Errorf("chk encode segment %d: want %d bytes, have %d: %w", seg, want, len(plaintext), ErrFormat)
	}
	bs := l.BlockSize(seg)
	if len(buf) < bs*l.N {
		return nil, fmt.Errorf("chk encode segment %d: buffer of %d bytes, want %d", seg, len(buf), bs*l.N)
	}
	e.mu.Lock()
	if e.claimed[seg] {
		e.mu.Unlock()
		return nil, fmt.Errorf("chk encode: segment %d encoded twice", seg)
	}
	e.claimed[seg] = true
	e.mu.Unlock()

	data := buf[:bs*l.K]
	ct := e.aead.Seal(data[:0], segmentNonce(seg), plaintext, e.ad)
	clear(data[len(ct):]) // zero padding up to k*bs
	blocks := make([][]byte, l.N)
	for i := range blocks {
		blocks[i] = buf[i*bs : (i+1)*bs : (i+1)*bs]
	}
	if l.N > l.K {
		if err := e.rs.Encode(blocks); err != nil {
			e.mu.Lock()
			e.claimed[seg] = false
			e.mu.Unlock()
			return nil, fmt.Errorf("chk encode segment %d: %w", seg, err)
		}
	}
	hs := e.hashes[seg*l.N : (seg+1)*l.N]
	for i, b := range blocks {
		hs[i] = blockHash(b)
	}
	e.mu.Lock()
	e.done[seg] = true
	e.ndone++
	e.mu.Unlock()
	return blocks, nil
}

// Finish, once every segment is encoded, returns each share's trailer and
// the read cap.
func (e *Encoder) Finish() (trailers [][]byte, c CHKCap, err error) {
	l := e.l
	e.mu.Lock()
	ndone := e.ndone
	e.mu.Unlock()
	if ndone != l.NumSegments() {
		return nil, CHKCap{}, fmt.Errorf("chk finish: %d of %d segments encoded", ndone, l.NumSegments())
	}
	segHashes := make([][32]byte, l.NumSegments())
	for seg := range segHashes {
		segHashes[seg] = segmentHash(e.hashes[seg*l.N : seg*l.N+l.K])
	}
	trailers, ueb := buildTrailers(l, e.hashes, segHashes)
	c = CHKCap{Key: e.key, Root: uebRoot(ueb), K: l.K, N: l.N, Size: l.Size}
	return trailers, c, nil
}

// buildTrailers assembles every share's trailer from the block hashes
// (hashes[seg*N+shnum]) and the segment hashes, and returns them with the
// extension block.
func buildTrailers(l Layout, hashes, segHashes [][32]byte) (trailers [][]byte, ueb []byte) {
	segs := l.NumSegments()
	shareRoots := make([][32]byte, l.N)
	leaves := make([][32]byte, segs)
	for sh := range l.N {
		for s := range segs {
			leaves[s] = hashes[s*l.N+sh]
		}
		shareRoots[sh] = merkleRoot(leaves)
	}
	levels := merkleLevels(shareRoots)
	ueb = l.ueb(levels[len(levels)-1][0], merkleRoot(segHashes))
	trailers = make([][]byte, l.N)
	for sh := range l.N {
		t := make([]byte, 0, l.TrailerSize())
		for s := range segs {
			t = append(t, hashes[s*l.N+sh][:]...)
		}
		for _, h := range segHashes {
			t = append(t, h[:]...)
		}
		for _, u := range uncles(levels, sh) {
			t = append(t, u[:]...)
		}
		trailers[sh] = append(t, ueb...)
	}
	return trailers, ueb
}

// Verifier checks shares against a verify cap. It is safe for concurrent
// use. It remembers the segment hashes of the first trailer it verifies, so
// a Decoder can check reconstructed ciphertext against them.
type Verifier struct {
	vc       CHKVerifyCap
	verified atomic.Pointer[verifiedFile]
}

// verifiedFile is what a verified trailer proves about the whole file.
type verifiedFile struct {
	l         Layout
	segHashes [][32]byte
}

// NewVerifier returns a verifier for the file vc names.
func NewVerifier(vc CHKVerifyCap) *Verifier { return &Verifier{vc: vc} }

// Cap returns the verify cap the verifier checks against.
func (v *Verifier) Cap() CHKVerifyCap { return v.vc }

// checkLayout reports whether l could belong to the verifier's file.
func (v *Verifier) checkLayout(l Layout) error {
	if l.K != v.vc.K || l.N != v.vc.N || l.Size != v.vc.Size {
		return fmt.Errorf("share claims k=%d n=%d size=%d, cap has k=%d n=%d size=%d: %w",
			l.K, l.N, l.Size, v.vc.K, v.vc.N, v.vc.Size, ErrIntegrity)
	}
	return l.check()
}

// ParseHeader checks a share header and returns the layout it claims. The
// layout is trusted only after VerifyTrailer succeeds.
func (v *Verifier) ParseHeader(shnum int, hdr []byte) (Layout, error) {
	if len(hdr) != ShareHeaderSize {
		return Layout{}, fmt.Errorf("share %d header: want %d bytes, have %d: %w", shnum, ShareHeaderSize, len(hdr), ErrFormat)
	}
	if !bytes.Equal(hdr[:4], shareMagic[:]) {
		return Layout{}, fmt.Errorf("share %d header: want magic %q, have %q: %w", shnum, shareMagic[:], hdr[:4], ErrFormat)
	}
	if hdr[4] != CHKVersion {
		return Layout{}, fmt.Errorf("share %d header: want version %d, have %d: %w", shnum, CHKVersion, hdr[4], ErrFormat)
	}
	if int(hdr[5]) != shnum {
		return Layout{}, fmt.Errorf("share %d header: claims share number %d: %w", shnum, hdr[5], ErrIntegrity)
	}
	l := Layout{
		K: int(hdr[6]), N: int(hdr[7]),
		SegmentSize: int(binary.BigEndian.Uint32(hdr[8:])),
		Size:        binary.BigEndian.Uint64(hdr[12:]),
	}
	if err := v.checkLayout(l); err != nil {
		return Layout{}, fmt.Errorf("share %d header: %w", shnum, err)
	}
	if shnum < 0 || shnum >= l.N {
		return Layout{}, fmt.Errorf("share %d header: want share number < %d: %w", shnum, l.N, ErrFormat)
	}
	return l, nil
}

// VerifyTrailer checks a share's trailer against the cap's root and returns
// the proof used to check that share's blocks.
func (v *Verifier) VerifyTrailer(shnum int, l Layout, trailer []byte) (*ShareProof, error) {
	if err := v.checkLayout(l); err != nil {
		return nil, fmt.Errorf("share %d trailer: %w", shnum, err)
	}
	if shnum < 0 || shnum >= l.N {
		return nil, fmt.Errorf("share %d trailer: want share number < %d: %w", shnum, l.N, ErrFormat)
	}
	if len(trailer) != l.TrailerSize() {
		return nil, fmt.Errorf("share %d trailer: want %d bytes, have %d: %w", shnum, l.TrailerSize(), len(trailer), ErrFormat)
	}
	segs := l.NumSegments()
	hashes := make([][32]byte, segs)
	for i := range hashes {
		copy(hashes[i][:], trailer[32*i:])
	}
	off := 32 * segs
	segHashes := make([][32]byte, segs)
	for i := range segHashes {
		copy(segHashes[i][:], trailer[off:])
		off += 32
	}
	u := make([][32]byte, treeDepth(l.N))
	for i := range u {
		copy(u[i][:], trailer[off:])
		off += 32
	}
	fileRoot := rootFromUncles(merkleRoot(hashes), shnum, u)
	ueb := trailer[off:]
	if !bytes.Equal(ueb, l.ueb(fileRoot, merkleRoot(segHashes))) {
		return nil, fmt.Errorf("share %d trailer: extension block or hashes do not match the layout: %w", shnum, ErrIntegrity)
	}
	if uebRoot(ueb) != v.vc.Root {
		return nil, fmt.Errorf("share %d trailer: root does not match the cap: %w", shnum, ErrIntegrity)
	}
	// Every share that verifies carries the same segment hashes (they are
	// bound by the root), so the first one kept serves all.
	v.verified.CompareAndSwap(nil, &verifiedFile{l: l, segHashes: segHashes})
	return &ShareProof{shnum: shnum, l: l, hashes: hashes}, nil
}

// ShareProof holds a verified share's block hashes.
type ShareProof struct {
	shnum  int
	l      Layout
	hashes [][32]byte
}

// Shnum returns the share number the proof is for.
func (p *ShareProof) Shnum() int { return p.shnum }

// Layout returns the verified layout.
func (p *ShareProof) Layout() Layout { return p.l }

// CheckBlock returns an ErrIntegrity error unless block is segment seg's
// block of this share.
func (p *ShareProof) CheckBlock(seg int, block []byte) error {
	if seg < 0 || seg >= len(p.hashes) {
		return fmt.Errorf("share %d: segment %d of %d: %w", p.shnum, seg, len(p.hashes), ErrFormat)
	}
	if want := p.l.BlockSize(seg); len(block) != want {
		return fmt.Errorf("share %d segment %d: want block of %d bytes, have %d: %w", p.shnum, seg, want, len(block), ErrIntegrity)
	}
	if blockHash(block) != p.hashes[seg] {
		return fmt.Errorf("share %d segment %d: block hash mismatch: %w", p.shnum, seg, ErrIntegrity)
	}
	return nil
}

// Decoder decrypts and decodes segments of a file. It is safe for
// concurrent use.
type Decoder struct {
	*Verifier
	aead cipher.AEAD
}

// NewDecoder returns a decoder for the file c names.
func NewDecoder(c CHKCap) *Decoder {
	aead, _ := chacha20poly1305.NewX(aeadKey(c.Key)) // key length is fixed
	return &Decoder{Verifier: NewVerifier(c.VerifyCap()), aead: aead}
}

// NewKeylessDecoder returns a decoder for the file vc names that can
// rebuild shares (Rebuilder) but not decrypt: DecodeSegment fails. It is
// what repair with a verify cap uses.
func NewKeylessDecoder(vc CHKVerifyCap) *Decoder { return &Decoder{Verifier: NewVerifier(vc)} }

// Rebuilder re-creates every share of a file from k verified blocks per
// segment, without the key: the erasure code works on ciphertext. Build it
// with NewRebuilder once a trailer is verified, call Rebuild for every
// segment (in any order, each once, from one goroutine at a time), then
// Finish. The shares come out byte for byte as uploaded, or Finish fails.
type Rebuilder struct {
	d      *Decoder
	l      Layout
	rs     reedsolomon.Encoder
	hashes [][32]byte // hashes[seg*N+shnum]
	done   []bool
	ndone  int
}

// NewRebuilder prepares to rebuild the shares of d's file; a trailer must
// have passed d.VerifyTrailer (it fixes the layout and segment hashes).
func (d *Decoder) NewRebuilder() (*Rebuilder, error) {
	vf := d.verified.Load()
	if vf == nil {
		return nil, fmt.Errorf("rebuild: no share trailer verified yet: %w", ErrFormat)
	}
	rs, err := coderFor(vf.l.K, vf.l.N)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	segs := vf.l.NumSegments()
	return &Rebuilder{d: d, l: vf.l, rs: rs, hashes: make([][32]byte, segs*vf.l.N), done: make([]bool, segs)}, nil
}

// Layout returns the verified layout.
func (r *Rebuilder) Layout() Layout { return r.l }

// ShareHeader returns the bytes at offset 0 of share shnum.
func (r *Rebuilder) ShareHeader(shnum int) []byte { return r.l.header(shnum) }

// Rebuild takes at least k blocks of segment seg (blocks[shnum], nil where
// missing; not modified) and returns all n blocks in one new allocation.
// The k data blocks are checked against the verified segment hash first,
// so an error wrapping ErrIntegrity means a bad block among those given
// (find it with ShareProof.CheckBlock).
func (r *Rebuilder) Rebuild(seg int, blocks [][]byte) ([][]byte, error) {
	l := r.l
	if seg < 0 || seg >= l.NumSegments() {
		return nil, fmt.Errorf("rebuild: segment %d of %d: %w", seg, l.NumSegments(), ErrFormat)
	}
	if r.done[seg] {
		return nil, fmt.Errorf("rebuild: segment %d rebuilt twice", seg)
	}
	if len(blocks) > l.N {
		return nil, fmt.Errorf("rebuild segment %d: %d blocks for n=%d: %w", seg, len(blocks), l.N, ErrFormat)
	}
	bs := l.BlockSize(seg)
	buf := make([]byte, bs*l.N)
	shards := make([][]byte, l.N)
	have := 0
	for i := range l.N {
		shards[i] = buf[i*bs : i*bs : (i+1)*bs]
		if i < len(blocks) && len(blocks[i]) != 0 {
			if len(blocks[i]) != bs {
				return nil, fmt.Errorf("rebuild segment %d: block %d has %d bytes, want %d: %w", seg, i, len(blocks[i]), bs, ErrIntegrity)
			}
			shards[i] = append(shards[i], blocks[i]...)
			have++
		}
	}
	if have < l.K {
		return nil, fmt.Errorf("rebuild segment %d: have %d blocks, need %d: %w", seg, have, l.K, ErrFormat)
	}
	if err := r.rs.ReconstructData(shards); err != nil {
		return nil, fmt.Errorf("rebuild segment %d: reconstruct: %v: %w", seg, err, ErrIntegrity)
	}
	dataHashes := make([][32]byte, l.K)
	for i := range dataHashes {
		dataHashes[i] = blockHash(shards[i])
	}
	if segmentHash(dataHashes) != r.d.verified.Load().segHashes[seg] {
		return nil, fmt.Errorf("rebuild segment %d: ciphertext does not match its segment hash: %w", seg, ErrIntegrity)
	}
	// Parity from the checked data, never from the blocks given: a bad
	// parity block must not be passed on.
	out := make([][]byte, l.N)
	for i := range l.N {
		out[i] = buf[i*bs : (i+1)*bs : (i+1)*bs]
		if i < l.K && &shards[i][0] != &out[i][0] {
			copy(out[i], shards[i])
		}
	}
	if l.N > l.K {
		if err := r.rs.Encode(out); err != nil {
			return nil, fmt.Errorf("rebuild segment %d: %w", seg, err)
		}
	}
	hs := r.hashes[seg*l.N : (seg+1)*l.N]
	for i, b := range out {
		hs[i] = blockHash(b)
	}
	r.done[seg] = true
	r.ndone++
	return out, nil
}

// Finish, once every segment is rebuilt, returns every share's trailer; it
// fails unless they give the cap's root.
func (r *Rebuilder) Finish() ([][]byte, error) {
	l := r.l
	if r.ndone != l.NumSegments() {
		return nil, fmt.Errorf("rebuild finish: %d of %d segments rebuilt", r.ndone, l.NumSegments())
	}
	segHashes := make([][32]byte, l.NumSegments())
	for seg := range segHashes {
		segHashes[seg] = segmentHash(r.hashes[seg*l.N : seg*l.N+l.K])
	}
	trailers, ueb := buildTrailers(l, r.hashes, segHashes)
	if uebRoot(ueb) != r.d.vc.Root {
		return nil, fmt.Errorf("rebuild finish: rebuilt shares do not give the cap's root: %w", ErrIntegrity)
	}
	return trailers, nil
}

// coders caches one Reed-Solomon coder per (k, n): building one costs tens
// of microseconds, and a coder is safe for concurrent use (its only state,
// the cache of inverted matrices, is behind a mutex; klauspost/reedsolomon#95),
// so every file with the same parameters shares it.
var coders sync.Map // [2]int{k, n} -> reedsolomon.Encoder

func coderFor(k, n int) (reedsolomon.Encoder, error) {
	key := [2]int{k, n}
	if c, ok := coders.Load(key); ok {
		return c.(reedsolomon.Encoder), nil
	}
	c, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, fmt.Errorf("reedsolomon %d-of-%d: %w", k, n, err)
	}
	c2, _ := coders.LoadOrStore(key, c)
	return c2.(reedsolomon.Encoder), nil
}

// DecodeSegment rebuilds and decrypts segment seg from at least k blocks
// (blocks[shnum], nil where missing). The blocks are not modified. At least
// one trailer must have passed d.VerifyTrailer first: the k data blocks (as
// received or rebuilt) are hashed and checked against that trailer's
// segment hash before the AEAD is opened, so every set of k shares yields
// the file's one plaintext or an error wrapping ErrIntegrity, even for
// blocks never checked and even if the uploader made inconsistent shares.
// CheckBlock beforehand is what tells which share is bad: callers check
// parity blocks before use (a bad one would waste a reconstruction), and may
// skip checking data blocks 0..k-1 until DecodeSegment fails, saving one
// hash pass over the segment.
func (d *Decoder) DecodeSegment(l Layout, seg int, blocks [][]byte) ([]byte, error) {
	return d.DecodeSegmentInto(l, seg, blocks, nil)
}

// DecodeSegmentInto is DecodeSegment working in buf when it has room for
// k*BlockSize(seg) bytes (else it allocates); the plaintext returned is a
// prefix of that buffer. Reusing buf saves a large allocation per segment.
func (d *Decoder) DecodeSegmentInto(l Layout, seg int, blocks [][]byte, buf []byte) ([]byte, error) {
	if err := d.checkLayout(l); err != nil {
		return nil, fmt.Errorf("decode segment %d: %w", seg, err)
	}
	if seg < 0 || seg >= l.NumSegments() {
		return nil, fmt.Errorf("decode: segment %d of %d: %w", seg, l.NumSegments(), ErrFormat)
	}
	if len(blocks) > l.N {
		return nil, fmt.Errorf("decode segment %d: %d blocks for n=%d: %w", seg, len(blocks), l.N, ErrFormat)
	}
	vf := d.verified.Load()
	if vf == nil {
		return nil, fmt.Errorf("decode segment %d: no share trailer verified yet: %w", seg, ErrFormat)
	}
	if l != vf.l {
		return nil, fmt.Errorf("decode segment %d: layout %+v is not the verified %+v: %w", seg, l, vf.l, ErrFormat)
	}
	bs := l.BlockSize(seg)
	have, allData := 0, true
	for i := range l.N {
		var b []byte
		if i < len(blocks) {
			b = blocks[i]
		}
		switch {
		case len(b) == 0:
			if i < l.K {
				allData = false
			}
		case len(b) != bs:
			return nil, fmt.Errorf("decode segment %d: block %d has %d bytes, want %d: %w", seg, i, len(b), bs, ErrIntegrity)
		default:
			have++
		}
	}
	if have < l.K {
		return nil, fmt.Errorf("decode segment %d: have %d blocks, need %d: %w", seg, have, l.K, ErrFormat)
	}
	if cap(buf) < bs*l.K {
		buf = make([]byte, bs*l.K)
	}
	buf = buf[:bs*l.K]
	if allData {
		for i := range l.K {
			copy(buf[i*bs:], blocks[i])
		}
	} else {
		rs, err := coderFor(l.K, l.N)
		if err != nil {
			return nil, fmt.Errorf("decode segment %d: %w", seg, err)
		}
		shards := make([][]byte, l.N)
		for i := range l.N {
			if i < len(blocks) && len(blocks[i]) != 0 {
				if i < l.K {
					shards[i] = buf[i*bs : (i+1)*bs : (i+1)*bs]
					copy(shards[i], blocks[i])
				} else {
					shards[i] = blocks[i] // parity: read only
				}
			} else if i < l.K {
				shards[i] = buf[i*bs : i*bs : (i+1)*bs] // reconstructed in place
			}
		}
		if err := rs.ReconstructData(shards); err != nil {
			return nil, fmt.Errorf("decode segment %d: reconstruct: %v: %w", seg, err, ErrIntegrity)
		}
		for i := range l.K {
			if &shards[i][0] != &buf[i*bs] {
				copy(buf[i*bs:], shards[i])
			}
		}
	}
	dataHashes := make([][32]byte, l.K)
	for i := range dataHashes {
		dataHashes[i] = blockHash(buf[i*bs : (i+1)*bs])
	}
	if segmentHash(dataHashes) != vf.segHashes[seg] {
		return nil, fmt.Errorf("decode segment %d: ciphertext does not match its segment hash: %w", seg, ErrIntegrity)
	}
	ctLen := l.SegmentLen(seg) + aeadOverhead
	for _, c := range buf[ctLen:] {
		if c != 0 {
			return nil, fmt.Errorf("decode segment %d: nonzero padding: %w", seg, ErrIntegrity)
		}
	}
	if d.aead == nil {
		return nil, fmt.Errorf("decode segment %d: a keyless decoder cannot decrypt: %w", seg, ErrFormat)
	}
	pt, err := d.aead.Open(buf[:0], segmentNonce(seg), buf[:ctLen], aeadData(l))
	if err != nil {
		return nil, fmt.Errorf("decode segment %d: %v: %w", seg, err, ErrIntegrity)
	}
	return pt, nil
}
