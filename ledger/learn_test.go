package ledger

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// planted returns ratings of a rank-2 matrix with biases, a fraction
// observed, and the held-out rest.
func planted(n int, frac float64, seed uint64) (train, test []Rating) {
	rng := rand.New(rand.NewPCG(seed, 1))
	u := make([][2]float64, n)
	v := make([][2]float64, n)
	bu, bv := make([]float64, n), make([]float64, n)
	for i := range n {
		u[i] = [2]float64{rng.NormFloat64(), rng.NormFloat64()}
		v[i] = [2]float64{rng.NormFloat64(), rng.NormFloat64()}
		bu[i], bv[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	for i := range n {
		for j := range n {
			y := 3 + bu[i] + bv[j] + u[i][0]*v[j][0] + u[i][1]*v[j][1] + 0.05*rng.NormFloat64()
			r := Rating{int32(i), int32(j), y, 1}
			if rng.Float64() < frac {
				train = append(train, r)
			} else if rng.Float64() < 0.1 {
				test = append(test, r)
			}
		}
	}
	return train, test
}

func rmse(m *Model, rs []Rating) float64 {
	var s float64
	for _, r := range rs {
		d := m.Predict(int(r.Reporter), int(r.Subject)) - r.Value
		s += d * d
	}
	return math.Sqrt(s / float64(len(rs)))
}

func TestFitRecoversLowRank(t *testing.T) {
	train, test := planted(300, 0.15, 7)
	m := Fit(train, 300, 300, FitOptions{Rank: 4, Lambda: 0.05, Iters: 15, Seed: 1})
	var mean, sd float64
	for _, r := range test {
		mean += r.Value
	}
	mean /= float64(len(test))
	for _, r := range test {
		sd += (r.Value - mean) * (r.Value - mean)
	}
	sd = math.Sqrt(sd / float64(len(test)))
	got := rmse(m, test)
	t.Logf("held-out RMSE %.3f; predicting the mean %.3f", got, sd)
	if got > 0.35*sd {
		t.Fatalf("held-out RMSE %.3f, want < 35%% of the spread %.3f", got, sd)
	}
}

func TestCholesky(t *testing.T) {
	A := []float64{4, 0, 2, 3}
	b := []float64{2, 5}
	if !choleskySolve(A, b, 2) || math.Abs(b[0]-0) > 1e-9 || math.Abs(b[1]-5.0/3) > 1e-9 {
		// A = [[4,2],[2,3]], x = [0, 5/3]? 4*0+2*5/3 = 3.33 ≠ 2: recompute below.
	}
	A = []float64{4, 0, 2, 3}
	b = []float64{8, 7} // x = (1.25, 1.5)
	if !choleskySolve(A, b, 2) || math.Abs(b[0]-1.25) > 1e-9 || math.Abs(b[1]-1.5) > 1e-9 {
		t.Fatalf("solve: %v", b)
	}
	if choleskySolve([]float64{-1}, []float64{1}, 1) {
		t.Fatal("negative definite matrix solved")
	}
}

// sybilWorld: honest peers 0..19 with true quality q; a clique of sybils
// 100..119 that rate each other 20 (the top) and are truly poor.
func TestSybilCliqueGainsLittle(t *testing.T) {
	me := PeerID{0xff}
	id := func(i int) PeerID { return PeerID{byte(i)} }
	q := func(i int) float64 { return 10 + float64(i%10)*0.3 }
	for _, tc := range []struct {
		attackEdges int
		truthful    bool // sybils rate honest peers truthfully to earn agreement
	}{{0, false}, {1, false}, {3, false}, {1, true}, {3, true}} {
		attackEdges := tc.attackEdges
		r := NewRecommender(me, RecOptions{})
		// We used honest peers 0..9 a few times each.
		for i := range 10 {
			for range 4 {
				r.Observe(id(i), q(i))
			}
		}
		// Honest peers 0..9 report truthfully on 0..19.
		for rep := range 10 {
			for s := range 20 {
				r.Report(id(rep), id(s), q(s))
			}
		}
		// We used a few sybils once each; they served adequately (9).
		for i := range attackEdges {
			r.Observe(id(100+i), 9)
		}
		// Sybils praise each other and badmouth honest peers.
		for rep := 100; rep < 120; rep++ {
			for s := 100; s < 120; s++ {
				r.Report(id(rep), id(s), 20)
			}
			for s := range 20 {
				if tc.truthful {
					r.Report(id(rep), id(s), q(s))
				} else {
					r.Report(id(rep), id(s), 1)
				}
			}
		}
		r.Refit()
		for i := range attackEdges {
			// Trust is bounded by first-hand experience with the reporter.
			if tr, e := r.Trust(id(100+i)), r.Experience(id(100+i)); tr > e/(e+3) || (!tc.truthful && tr > 0.05) {
				t.Fatalf("%+v: sybil trust %.3f with %v samples (honest %.3f)", tc, tr, e, r.Trust(id(0)))
			}
		}
		// Unused honest peers 10..19 must outrank every unused sybil; when
		// sybils earned trust by rating honest peers truthfully, the best
		// honest peers must still outrank them (and the cluster cap limits
		// them to a share or two per file).
		worstHonest := math.Inf(1)
		var hs []float64
		for s := 10; s < 20; s++ {
			if v, ok := r.Score(id(s)); ok {
				worstHonest = min(worstHonest, v)
				hs = append(hs, v)
			}
		}
		if tc.truthful {
			slices.Sort(hs)
			worstHonest = hs[len(hs)-3]
		}
		for s := 100 + attackEdges; s < 120; s++ {
			if v, ok := r.Score(id(s)); ok && v >= worstHonest {
				t.Fatalf("%+v: sybil %d predicted %.2f ≥ worst honest %.2f", tc, s, v, worstHonest)
			}
		}
		if attackEdges >= 2 && r.Cluster(id(100)) == 0 {
			t.Fatalf("%d attack edges: the clique is not one cluster", attackEdges)
		}
		if attackEdges >= 2 && r.Cluster(id(100)) != r.Cluster(id(115)) {
			t.Fatal("clique split")
		}
		if c := r.Cluster(id(3)); c != 0 && c == r.Cluster(id(100)) {
			t.Fatal("honest peer put in the sybil cluster")
		}
	}
}

func TestLearnedPredictsUnusedPeers(t *testing.T) {
	// Two regions: peers in our region serve us at 12, others at 8. We
	// measured a few of each; reporters in our region measured many.
	me := PeerID{0xff}
	id := func(i int) PeerID { return PeerID{byte(i), 1} }
	region := func(i int) int { return i % 2 }
	val := func(from, to int) float64 {
		if region(from) == region(to) {
			return 12
		}
		return 8
	}
	r := NewRecommender(me, RecOptions{})
	for _, s := range []int{0, 2, 1, 3} { // we are in region 0
		for range 3 {
			r.Observe(id(s), val(0, s))
		}
	}
	for rep := range 4 {
		for s := range 60 {
			if (s+rep)%3 != 0 {
				r.Report(id(rep), id(s), val(rep, s))
			}
		}
	}
	r.Refit()
	right := 0
	for s := 10; s < 60; s += 2 {
		a, okA := r.Score(id(s))
		b, okB := r.Score(id(s + 1))
		if okA && okB && a > b {
			right++
		}
	}
	if right < 22 {
		t.Fatalf("ranked only %d of 25 same-region peers above their neighbour", right)
	}
}

type fakeScorer map[PeerID]float64

func (f fakeScorer) Score(p PeerID) (float64, bool) { v, ok := f[p]; return v, ok }
func (f fakeScorer) Cluster(p PeerID) int {
	if p[1] == 9 {
		return 1
	}
	return 0
}

func TestSelectCaps(t *testing.T) {
	var ring []Candidate
	sc := fakeScorer{}
	for i := range 40 {
		p := PeerID{byte(i)}
		sub := "10.0." + string(rune('a'+i%4)) // 4 subnets
		if i >= 30 {
			p[1] = 9 // a cluster, scored highest
			sub = "192.168.1"
		}
		ring = append(ring, Candidate{Peer: p, Subnet: sub})
		sc[p] = float64(i)
	}
	got := Select(ring, sc, SelectOptions{N: 10, MaxPerSubnet: 3, MaxPerCluster: 1})
	if len(got) != 10 {
		t.Fatalf("chose %d", len(got))
	}
	inCluster, subnets := 0, map[string]int{}
	for _, p := range got {
		if p[1] == 9 {
			inCluster++
		}
		for _, c := range ring {
			if c.Peer == p {
				subnets[c.Subnet]++
			}
		}
	}
	if inCluster > 1 {
		t.Fatalf("%d shares in one cluster", inCluster)
	}
	for s, n := range subnets {
		if n > 3 {
			t.Fatalf("%d shares in subnet %s", n, s)
		}
	}
	// Pure ring: the first N unrefused, in order.
	plain := Select(ring, nil, SelectOptions{N: 5, MaxPerSubnet: 10, Refuse: func(p PeerID) bool { return p[0] == 1 }})
	want := []byte{0, 2, 3, 4, 5}
	for i, p := range plain {
		if p[0] != want[i] {
			t.Fatalf("ring selection %v", plain)
		}
	}
}

// BenchmarkFit10k refits a 10,000-peer matrix: 10,000 reporters × 10,000
// subjects, 50 ratings per reporter (500,000 cells), rank 6, 8 sweeps.
func BenchmarkFit10k(b *testing.B) {
	const n, per = 10000, 50
	rng := rand.New(rand.NewPCG(1, 2))
	rs := make([]Rating, 0, n*per)
	for i := range n {
		for range per {
			j := rng.IntN(n)
			rs = append(rs, Rating{int32(i), int32(j), 10 + float64((i%7)*(j%5))/10 + rng.NormFloat64()*0.1, 1})
		}
	}
	b.SetBytes(int64(len(rs)) * 24)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		Fit(rs, n, n, FitOptions{Seed: 1})
	}
	b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N), "cpu-s/op")
}
