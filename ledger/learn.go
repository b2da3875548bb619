package ledger

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Learned peer choice. Every observation is a rating: reporter r measured
// subject s at value y (ln of effective throughput: bytes/s × availability).
// The ratings form a sparse reporter × subject matrix; a low-rank model
// y ≈ μ + b_r + c_s + u_r·v_s fills in the cells nobody has measured, so a
// node can predict how a peer it never used would serve it.
//
// Why ALS (alternating least squares with biases, weighted, ALS-WR
// regularisation) rather than truncated SVD: the matrix is mostly missing,
// not mostly zero. SVD needs every cell; filling the gaps with zeros or means
// biases every prediction toward the filler, and a dense 10,000² SVD costs
// far more than the ≤ 2 s budget. ALS fits only the observed cells, takes a
// weight per cell (how much we trust its reporter: our own row counts most,
// a stranger's praise least), converges in a handful of sweeps, and each
// sweep is independent small (rank+1)² solves that spread over cores. SGD
// would fit the same model but needs a tuned learning rate and many more
// passes, and is order-dependent, which the deterministic simulator dislikes.

// priorWeight is how much weight of evidence it takes to move a vector or
// bias halfway from the prior (zero, i.e. the global mean).
const priorWeight = 1.0

// Rating is one cell of the matrix.
type Rating struct {
	Reporter, Subject int32
	Value             float64
	Weight            float64
}

// FitOptions tune the factorization.
type FitOptions struct {
	Rank   int     // latent dimensions; default 6
	Lambda float64 // regularisation per unit of weight; default 0.5
	Iters  int     // ALS sweeps; default 8
	Seed   uint64
}

func (o *FitOptions) defaults() {
	if o.Rank <= 0 {
		o.Rank = 6
	}
	if o.Lambda <= 0 {
		o.Lambda = 0.5
	}
	if o.Iters <= 0 {
		o.Iters = 8
	}
}

// Model is a fitted factorization over rows (reporters) and columns
// (subjects) numbered densely from 0.
type Model struct {
	Mu       float64
	RowBias  []float64
	ColBias  []float64
	Row, Col [][]float64 // latent vectors
	ColCount []float64   // total weight observed per column
}

// Predict returns the model's value for (row, col).
func (m *Model) Predict(row, col int) float64 {
	p := m.Mu + m.RowBias[row] + m.ColBias[col]
	for k, x := range m.Row[row] {
		p += x * m.Col[col][k]
	}
	return p
}

// Fit factorizes ratings over nRows × nCols.
func Fit(ratings []Rating, nRows, nCols int, opt FitOptions) *Model {
	opt.defaults()
	r := opt.Rank
	m := &Model{RowBias: make([]float64, nRows), ColBias: make([]float64, nCols),
		Row: make([][]float64, nRows), Col: make([][]float64, nCols), ColCount: make([]float64, nCols)}
	var sw, sy float64
	for _, x := range ratings {
		sw += x.Weight
		sy += x.Weight * x.Value
		m.ColCount[x.Subject] += x.Weight
	}
	if sw > 0 {
		m.Mu = sy / sw
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x5eed))
	U := make([]float64, nRows*r)
	V := make([]float64, nCols*r)
	for i := range U {
		U[i] = (rng.Float64() - 0.5) * 0.1
	}
	for i := range V {
		V[i] = (rng.Float64() - 0.5) * 0.1
	}
	byRow := newSparse(ratings, nRows, true)
	byCol := newSparse(ratings, nCols, false)
	for range opt.Iters {
		// Rows given columns: target y - μ - c_s, features [v_s, 1]; then
		// columns given rows the same way.
		solveSide(byRow, U, m.RowBias, V, m.ColBias, m.Mu, r, opt.Lambda)
		solveSide(byCol, V, m.ColBias, U, m.RowBias, m.Mu, r, opt.Lambda)
	}
	for i := range m.Row {
		m.Row[i] = U[i*r : (i+1)*r : (i+1)*r]
	}
	for i := range m.Col {
		m.Col[i] = V[i*r : (i+1)*r : (i+1)*r]
	}
	return m
}

// sparse is one side of the matrix in compressed form: the cells of group g
// are other[ptr[g]:ptr[g+1]] with their values and weights.
type sparse struct {
	ptr   []int32
	other []int32
	val   []float64
	w     []float64
}

func newSparse(ratings []Rating, n int, byRow bool) *sparse {
	key := func(x *Rating) (int32, int32) {
		if byRow {
			return x.Reporter, x.Subject
		}
		return x.Subject, x.Reporter
	}
	s := &sparse{ptr: make([]int32, n+1), other: make([]int32, len(ratings)), val: make([]float64, len(ratings)), w: make([]float64, len(ratings))}
	for i := range ratings {
		k, _ := key(&ratings[i])
		s.ptr[k+1]++
	}
	for i := 1; i <= n; i++ {
		s.ptr[i] += s.ptr[i-1]
	}
	pos := append([]int32(nil), s.ptr[:n]...)
	for i := range ratings {
		k, o := key(&ratings[i])
		p := pos[k]
		s.other[p], s.val[p], s.w[p] = o, ratings[i].Value, ratings[i].Weight
		pos[k]++
	}
	return s
}

// solveSide updates each vector and bias of one side (vecs, bias) by
// weighted ridge regression against the other side, in parallel.
func solveSide(s *sparse, vecs, bias, ovecs, obias []float64, mu float64, r int, lambda float64) {
	d := r + 1
	n := len(s.ptr) - 1
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			continue
		}
		wg.Go(func() {
			A := make([]float64, d*d)
			b := make([]float64, d)
			x := make([]float64, d)
			x[r] = 1
			for g := lo; g < hi; g++ {
				p0, p1 := s.ptr[g], s.ptr[g+1]
				if p0 == p1 {
					continue
				}
				clear(A)
				clear(b)
				var wsum float64
				for p := p0; p < p1; p++ {
					o := int(s.other[p])
					copy(x[:r], ovecs[o*r:o*r+r])
					y := s.val[p] - mu - obias[o]
					wt := s.w[p]
					wsum += wt
					for i := range d {
						wx := wt * x[i]
						b[i] += wx * y
						row := A[i*d : i*d+i+1]
						for j := range row {
							row[j] += wx * x[j]
						}
					}
				}
				// Regularisation grows with the weight seen (ALS-WR) plus a
				// fixed prior of one unit of weight: a column only low-trust
				// reporters rated stays near the mean, whatever they claim.
				reg := lambda*wsum + priorWeight
				for i := range r {
					A[i*d+i] += reg
				}
				A[r*d+r] += 0.1*lambda*wsum + priorWeight
				if choleskySolve(A, b, d) {
					copy(vecs[g*r:g*r+r], b[:r])
					bias[g] = b[r]
				}
			}
		})
	}
	wg.Wait()
}

// choleskySolve solves A x = b in place (x in b) for symmetric positive
// definite A of which the lower triangle is filled. It reports false when A
// is not positive definite.
func choleskySolve(A, b []float64, d int) bool {
	for j := range d {
		s := A[j*d+j]
		for k := range j {
			s -= A[j*d+k] * A[j*d+k]
		}
		if s <= 1e-12 {
			return false
		}
		ljj := math.Sqrt(s)
		A[j*d+j] = ljj
		for i := j + 1; i < d; i++ {
			t := A[i*d+j]
			for k := range j {
				t -= A[i*d+k] * A[j*d+k]
			}
			A[i*d+j] = t / ljj
		}
	}
	for i := range d { // L y = b
		t := b[i]
		for k := range i {
			t -= A[i*d+k] * b[k]
		}
		b[i] = t / A[i*d+i]
	}
	for i := d - 1; i >= 0; i-- { // Lᵀ x = y
		t := b[i]
		for k := i + 1; k < d; k++ {
			t -= A[k*d+i] * b[k]
		}
		b[i] = t / A[i*d+i]
	}
	return true
}

// RatingOf turns an observation into a matrix value: ln of the effective
// throughput (bytes/s times availability), so a peer twice as fast scores
// ln 2 higher whatever the scale.
func RatingOf(o *Observation) float64 {
	eff := float64(o.Throughput) * float64(o.Availability) / 10000
	return math.Log(1 + eff)
}
