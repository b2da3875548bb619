package caps

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// An implementation of the erasure code written from docs/spec/chk.md
// ("Reed-Solomon matrix") alone, checked against the coder the format
// uses: if either drifts, a second implementation written from the spec
// would make other shares.

// gfMul multiplies in GF(2^8) modulo x^8+x^4+x^3+x^2+1 (0x11d).
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1d
		}
		b >>= 1
	}
	return p
}

// gfPow is a^e with 0^0 = 1.
func gfPow(a byte, e int) byte {
	r := byte(1)
	for range e {
		r = gfMul(r, a)
	}
	return r
}

// gfInv is the multiplicative inverse of a != 0 (a^254).
func gfInv(a byte) byte { return gfPow(a, 254) }

// specMatrix builds the n×k encoding matrix as the spec says: V[r][c] = r^c
// (r = 0..n-1 taken as field elements), times the inverse of its top k×k.
func specMatrix(k, n int) [][]byte {
	v := make([][]byte, n)
	for r := range v {
		v[r] = make([]byte, k)
		for c := range v[r] {
			v[r][c] = gfPow(byte(r), c)
		}
	}
	// Invert the top k×k by Gauss-Jordan elimination.
	a := make([][]byte, k)
	for i := range a {
		a[i] = make([]byte, 2*k)
		copy(a[i], v[i])
		a[i][k+i] = 1
	}
	for col := range k {
		p := col
		for a[p][col] == 0 {
			p++
		}
		a[col], a[p] = a[p], a[col]
		inv := gfInv(a[col][col])
		for j := range a[col] {
			a[col][j] = gfMul(a[col][j], inv)
		}
		for i := range k {
			if i != col && a[i][col] != 0 {
				f := a[i][col]
				for j := range a[i] {
					a[i][j] ^= gfMul(f, a[col][j])
				}
			}
		}
	}
	m := make([][]byte, n)
	for r := range m {
		m[r] = make([]byte, k)
		for c := range k {
			var s byte
			for t := range k {
				s ^= gfMul(v[r][t], a[t][k+c])
			}
			m[r][c] = s
		}
	}
	return m
}

// specEncode computes the parity blocks: block j = sum_c M[j][c] · block c.
func specEncode(m [][]byte, data [][]byte) [][]byte {
	k, bs := len(data), len(data[0])
	out := make([][]byte, len(m)-k)
	for j := range out {
		out[j] = make([]byte, bs)
		for c := range k {
			for x := range bs {
				out[j][x] ^= gfMul(m[k+j][c], data[c][x])
			}
		}
	}
	return out
}

func TestReedSolomonMatchesSpec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kn := range [][2]int{{1, 1}, {1, 3}, {2, 3}, {3, 5}, {3, 10}, {10, 30}, {16, 64}, {1, 255}, {40, 40}} {
		k, n := kn[0], kn[1]
		m := specMatrix(k, n)
		for r := range k { // systematic
			for c := range k {
				if want := byte(0); r == c && m[r][c] != 1 || r != c && m[r][c] != want {
					t.Fatalf("%d-of-%d: top of the matrix is not the identity", k, n)
				}
			}
		}
		if n == k {
			continue
		}
		bs := 1 + rng.IntN(64)
		shards := make([][]byte, n)
		for i := range shards {
			shards[i] = make([]byte, bs)
			if i < k {
				for x := range shards[i] {
					shards[i][x] = byte(rng.Uint32())
				}
			}
		}
		rs, err := coderFor(k, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Encode(shards); err != nil {
			t.Fatal(err)
		}
		for j, p := range specEncode(m, shards[:k]) {
			if !bytes.Equal(p, shards[k+j]) {
				t.Fatalf("%d-of-%d: parity %d differs from the spec's construction", k, n, j)
			}
		}
	}
}

// TestReedSolomonSpecVectors pins the matrices and the worked vector
// printed in docs/spec/chk.md.
func TestReedSolomonSpecVectors(t *testing.T) {
	rows := func(k, n int) string {
		var b strings.Builder
		for _, r := range specMatrix(k, n)[k:] {
			fmt.Fprintf(&b, "%02x\n", r)
		}
		return b.String()
	}
	if got, want := rows(2, 3), "0302\n"; got != want {
		t.Errorf("2-of-3 parity rows:\n%s", got)
	}
	want310 := `010101
0f0806
0e0906
0e0807
0f0907
2d301c
2c311c
`
	if got := rows(3, 10); got != want310 {
		t.Errorf("3-of-10 parity rows:\n%s", got)
	}
	// Worked vector: 3-of-5, blocks of 2 bytes.
	data := [][]byte{{0x01, 0x02}, {0x03, 0x04}, {0x05, 0x06}}
	got := fmt.Sprintf("%02x", specEncode(specMatrix(3, 5), data))
	if want := "[0700 092a]"; got != want {
		t.Errorf("3-of-5 parity of 0102 0304 0506: %s", got)
	}
}
