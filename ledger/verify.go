package ledger

import (
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/edwards25519"
)

// VerifyError says at which index of a log verification failed.
type VerifyError struct {
	Author PeerID
	Index  uint64
	Err    error
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("log of %v: entry %d: %v", e.Author.Short(), e.Index, e.Err)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Signatures are checked with the cofactored equation [8][S]B = [8]R + [8][k]A
// (as ZIP 215), in single and batch verification alike, so both always agree
// on which signatures are valid; S must be canonical (< L).

// verifyOne checks one signature.
func verifyOne(c sigCheck) bool {
	A, err := new(edwards25519.Point).SetBytes(c.key[:])
	if err != nil || len(c.sig) != SigSize {
		return false
	}
	R, err := new(edwards25519.Point).SetBytes(c.sig[:32])
	if err != nil {
		return false
	}
	S, err := new(edwards25519.Scalar).SetCanonicalBytes(c.sig[32:])
	if err != nil {
		return false
	}
	k := challenge(c.sig[:32], c.key[:], c.msg)
	// [S]B - [k]A - R, times 8, must be the identity.
	minusA := new(edwards25519.Point).Negate(A)
	P := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S)
	P.Subtract(P, R)
	P.MultByCofactor(P)
	return P.Equal(edwards25519.NewIdentityPoint()) == 1
}

func challenge(R, A, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(R)
	h.Write(A)
	h.Write(msg)
	var d [64]byte
	k, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(d[:0]))
	return k
}

// batchVerify reports whether every signature is valid, checking them as
// one random linear combination: [8](-(Σz·S)B + Σz·R + Σ(z·k)A) = 0. Keys
// repeat (a log has one author), so their terms are merged. A false result
// says only that some signature is bad; find it with verifyOne.
func batchVerify(cs []sigCheck) bool {
	if len(cs) == 0 {
		return true
	}
	if len(cs) == 1 {
		return verifyOne(cs[0])
	}
	var zbuf [64]byte
	rnd := make([]byte, 16*len(cs))
	if _, err := rand.Read(rnd); err != nil {
		return false
	}
	sumS := edwards25519.NewScalar()
	scalars := make([]*edwards25519.Scalar, 0, len(cs)+4)
	points := make([]*edwards25519.Point, 0, len(cs)+4)
	keyIdx := make(map[PeerID]int, 4)
	var keyScalars []*edwards25519.Scalar
	var keyPoints []*edwards25519.Point
	for i, c := range cs {
		if len(c.sig) != SigSize {
			return false
		}
		R, err := new(edwards25519.Point).SetBytes(c.sig[:32])
		if err != nil {
			return false
		}
		S, err := new(edwards25519.Scalar).SetCanonicalBytes(c.sig[32:])
		if err != nil {
			return false
		}
		copy(zbuf[:16], rnd[16*i:])
		z, _ := new(edwards25519.Scalar).SetUniformBytes(zbuf[:])
		sumS.MultiplyAdd(z, S, sumS)
		scalars = append(scalars, z)
		points = append(points, R)
		k := challenge(c.sig[:32], c.key[:], c.msg)
		j, ok := keyIdx[c.key]
		if !ok {
			A, err := new(edwards25519.Point).SetBytes(c.key[:])
			if err != nil {
				return false
			}
			j = len(keyPoints)
			keyIdx[c.key] = j
			keyPoints = append(keyPoints, A)
			keyScalars = append(keyScalars, edwards25519.NewScalar())
		}
		keyScalars[j].MultiplyAdd(z, k, keyScalars[j])
	}
	scalars = append(scalars, keyScalars...)
	points = append(points, keyPoints...)
	P := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	B := new(edwards25519.Point).ScalarBaseMult(sumS)
	P.Subtract(P, B)
	P.MultByCofactor(P)
	return P.Equal(edwards25519.NewIdentityPoint()) == 1
}

// entrySigs appends every signature an entry carries: its own and its body's.
func entrySigs(s []sigCheck, e *Entry, signed []byte) []sigCheck {
	s = append(s, sigCheck{e.Author, tagged(TagEntry, signed), e.Sig[:]})
	return e.Body.countersigs(s)
}

// VerifyEntry checks one entry's signatures (its author's and those inside
// its body).
func VerifyEntry(e *Entry) error {
	signed := e.signedBytes()
	for _, c := range entrySigs(nil, e, signed) {
		if !verifyOne(c) {
			return fmt.Errorf("entry %d of %v: %w", e.Index, e.Author.Short(), ErrSignature)
		}
	}
	return nil
}

// ChainOptions tune VerifyChain.
type ChainOptions struct {
	// Now, if set, rejects entries dated more than MaxSkew after it.
	Now     time.Time
	MaxSkew time.Duration
}

// batchSize is how many entries share one batch equation: large enough to
// amortise the fixed cost, small enough that finding a bad entry by
// verifying one by one stays cheap.
const batchSize = 256

// VerifyChain checks encoded entries of author's log that start at index
// start and follow prev (the hash of entry start-1; zero when start is 0):
// each decodes, has the right author and index, links to the previous one,
// is not dated before it, and carries valid signatures. The first failure is
// returned as a *VerifyError with its exact index, with the entries before
// it (all verified). Signatures are checked in batches, spread over
// GOMAXPROCS goroutines when there are several batches.
func VerifyChain(author PeerID, start uint64, prev Hash, prevTime time.Time, raw [][]byte, opt ChainOptions) ([]*Entry, error) {
	out := make([]*Entry, 0, len(raw))
	var sigs []sigCheck
	var sigEntry []int // entry position of each signature
	var structErr error
	for i, b := range raw {
		idx := start + uint64(i)
		e, signed, err := decodeEntry(b)
		switch {
		case err != nil:
		case e.Author != author:
			err = fmt.Errorf("author %v, want %v: %w", e.Author.Short(), author.Short(), ErrChain)
		case e.Index != idx:
			err = fmt.Errorf("claims index %d: %w", e.Index, ErrChain)
		case e.Prev != prev:
			err = fmt.Errorf("previous hash does not match entry %d: %w", idx-1, ErrChain)
		case e.Time.Before(prevTime):
			err = fmt.Errorf("dated %v, before the previous entry (%v): %w", e.Time, prevTime, ErrChain)
		case !opt.Now.IsZero() && e.Time.After(opt.Now.Add(opt.MaxSkew)):
			err = fmt.Errorf("dated %v, in the future: %w", e.Time, ErrChain)
		}
		if err != nil {
			structErr = &VerifyError{Author: author, Index: idx, Err: err}
			break
		}
		n := len(sigs)
		sigs = entrySigs(sigs, e, signed)
		for range len(sigs) - n {
			sigEntry = append(sigEntry, i)
		}
		out = append(out, e)
		prev, prevTime = hashSigned(signed), e.Time
	}
	if bad := firstBadSig(sigs, sigEntry); bad >= 0 {
		return out[:bad], &VerifyError{Author: author, Index: start + uint64(bad), Err: ErrSignature}
	}
	return out, structErr
}

// firstBadSig returns the entry position of the first invalid signature, or
// -1 when all are valid.
func firstBadSig(sigs []sigCheck, sigEntry []int) int {
	type chunk struct{ lo, hi int }
	var chunks []chunk
	for lo := 0; lo < len(sigs); {
		hi := lo
		// Cut at entry boundaries, batchSize entries per chunk.
		for hi < len(sigs) && sigEntry[hi]-sigEntry[lo] < batchSize {
			hi++
		}
		chunks = append(chunks, chunk{lo, hi})
		lo = hi
	}
	bad := make([]int, len(chunks))
	check := func(c int) {
		bad[c] = -1
		s := sigs[chunks[c].lo:chunks[c].hi]
		if batchVerify(s) {
			return
		}
		for j := range s {
			if !verifyOne(s[j]) {
				bad[c] = sigEntry[chunks[c].lo+j]
				return
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(chunks))
	if workers <= 1 {
		for c := range chunks {
			if check(c); bad[c] >= 0 {
				return bad[c]
			}
		}
		return -1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := int(next.Add(1) - 1); c < len(chunks); c = int(next.Add(1) - 1) {
				check(c)
			}
		})
	}
	wg.Wait()
	for _, b := range bad {
		if b >= 0 {
			return b
		}
	}
	return -1
}
