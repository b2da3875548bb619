package ledger

import (
	"bytes"
	"math"
	"sort"
)

// Recommender predicts, for one node, how well each peer would serve it,
// from its own measurements and the observations in logs of peers it has
// worked with. Trust in a reporter is personal: the agreement between the
// reporter's ratings and the node's own on peers both measured, capped by how
// much first-hand experience the node has with the reporter itself. A clique
// of fake identities praising each other gains nothing until the node has
// used one of them (an attack edge), and then at most that edge's cap.
// Not safe for concurrent use.
type Recommender struct {
	self    PeerID
	opt     RecOptions
	own     map[PeerID]*ownStat
	reports map[PeerID]map[PeerID]float64 // reporter → subject → rating
	scores  map[PeerID]float64
	ranked  []PeerID // scored peers, best first
	conf    map[PeerID]float64
	cluster map[PeerID]int
}

type ownStat struct {
	mean    float64 // running mean rating
	samples float64
}

// RecOptions tune a Recommender.
type RecOptions struct {
	Fit FitOptions
	// ExperienceHalf: first-hand samples of a reporter at which its trust
	// cap reaches one half. Default 3.
	ExperienceHalf float64
	// Sigma: rating difference (ln units) at which agreement falls to 1/e.
	// Default 0.7.
	Sigma float64
	// MinTrust: reporters trusted less are left out of the fit. Default 0.05.
	MinTrust float64
	// MaxReporters bounds the reporters kept (most experienced first) and
	// MaxSubjects the ratings per reporter, so a hostile log cannot grow the
	// model. Defaults 64 and 512.
	MaxReporters, MaxSubjects int
}

func (o *RecOptions) defaults() {
	if o.ExperienceHalf <= 0 {
		o.ExperienceHalf = 3
	}
	if o.Sigma <= 0 {
		o.Sigma = 0.7
	}
	if o.MinTrust <= 0 {
		o.MinTrust = 0.05
	}
	if o.MaxReporters <= 0 {
		o.MaxReporters = 64
	}
	if o.MaxSubjects <= 0 {
		o.MaxSubjects = 512
	}
}

// NewRecommender returns an empty recommender for self.
func NewRecommender(self PeerID, opt RecOptions) *Recommender {
	opt.defaults()
	return &Recommender{self: self, opt: opt, own: map[PeerID]*ownStat{}, reports: map[PeerID]map[PeerID]float64{}}
}

// Observe records the node's own measurement of a peer (a RatingOf value).
func (r *Recommender) Observe(subject PeerID, value float64) {
	if subject == r.self {
		return
	}
	s := r.own[subject]
	if s == nil {
		s = &ownStat{}
		r.own[subject] = s
	}
	s.samples++
	s.mean += (value - s.mean) / s.samples
}

// OwnMean returns the node's own mean rating of a peer.
func (r *Recommender) OwnMean(p PeerID) (float64, bool) {
	if s := r.own[p]; s != nil {
		return s.mean, true
	}
	return 0, false
}

// Experience returns the node's first-hand samples of a peer.
func (r *Recommender) Experience(p PeerID) float64 {
	if s := r.own[p]; s != nil {
		return s.samples
	}
	return 0
}

// Report records a reporter's rating of a subject, from a verified log. The
// latest rating per pair wins. Reports about the node itself or by it are
// ignored, as are reports by peers the node has no experience with beyond
// MaxReporters.
func (r *Recommender) Report(reporter, subject PeerID, value float64) {
	if reporter == r.self || subject == reporter {
		return
	}
	m := r.reports[reporter]
	if m == nil {
		if len(r.reports) >= r.opt.MaxReporters && !r.evictFor(reporter) {
			return
		}
		m = map[PeerID]float64{}
		r.reports[reporter] = m
	}
	if _, ok := m[subject]; !ok && len(m) >= r.opt.MaxSubjects {
		return
	}
	m[subject] = value
}

// evictFor drops the least experienced reporter if p is more experienced.
func (r *Recommender) evictFor(p PeerID) bool {
	var worst PeerID
	we := math.Inf(1)
	for q := range r.reports {
		if e := r.Experience(q); e < we || (e == we && string(q[:]) < string(worst[:])) {
			worst, we = q, e
		}
	}
	if r.Experience(p) <= we {
		return false
	}
	delete(r.reports, worst)
	return true
}

// Trust returns the weight given to a reporter's ratings, in [0, 1).
func (r *Recommender) Trust(reporter PeerID) float64 {
	e := r.Experience(reporter)
	if e == 0 {
		return 0
	}
	capT := e / (e + r.opt.ExperienceHalf)
	var n, dev float64
	for s, v := range r.reports[reporter] {
		if o := r.own[s]; o != nil {
			n++
			dev += math.Abs(o.mean - v)
		}
	}
	agree := 0.5 // no overlap yet: half, shrunk toward as overlap grows
	if n > 0 {
		a := math.Exp(-dev / n / r.opt.Sigma)
		agree = (n*a + 2*0.5) / (n + 2)
	}
	return capT * agree
}

// Refit rebuilds the model from the node's own row and trusted reporters'.
func (r *Recommender) Refit() {
	rows := map[PeerID]int32{r.self: 0}
	cols := map[PeerID]int32{}
	colOf := func(p PeerID) int32 {
		c, ok := cols[p]
		if !ok {
			c = int32(len(cols))
			cols[p] = c
		}
		return c
	}
	var ratings []Rating
	// Nobody serves us faster than the best we have seen by much: our own
	// link bounds it. Clamping others' ratings there stops a reporter from
	// buying influence with absurd praise.
	ceiling := math.Inf(1)
	if len(r.own) > 0 {
		ceiling = math.Inf(-1)
		for _, o := range r.own {
			ceiling = math.Max(ceiling, o.mean)
		}
		ceiling += math.Ln2
	}
	for _, s := range sortedPeers(r.own) {
		o := r.own[s]
		ratings = append(ratings, Rating{0, colOf(s), o.mean, 1 + math.Min(o.samples, 8)})
	}
	for _, rep := range sortedPeers(r.reports) {
		t := r.Trust(rep)
		if t < r.opt.MinTrust {
			continue
		}
		row := int32(len(rows))
		rows[rep] = row
		for _, s := range sortedPeers(r.reports[rep]) {
			if s == r.self {
				continue
			}
			ratings = append(ratings, Rating{row, colOf(s), math.Min(r.reports[rep][s], ceiling), t})
		}
	}
	r.scores = make(map[PeerID]float64, len(cols))
	r.conf = make(map[PeerID]float64, len(cols))
	if len(ratings) == 0 {
		r.cluster, r.ranked = nil, nil
		return
	}
	m := Fit(ratings, len(rows), len(cols), r.opt.Fit)
	for p, c := range cols {
		pred := m.Predict(0, int(c))
		if o := r.own[p]; o != nil { // first-hand data outweighs the model
			pred = (o.samples*o.mean + 2*pred) / (o.samples + 2)
		}
		r.scores[p] = pred
		r.conf[p] = m.ColCount[c]
	}
	rs := make([]Rated, 0, len(r.scores))
	for p, v := range r.scores {
		rs = append(rs, Rated{p, v})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Value != rs[j].Value {
			return rs[i].Value > rs[j].Value
		}
		return bytes.Compare(rs[i].Peer[:], rs[j].Peer[:]) < 0
	})
	r.ranked = r.ranked[:0]
	for _, x := range rs {
		r.ranked = append(r.ranked, x.Peer)
	}
	r.cluster = r.clusters()
}

// Score returns the predicted rating of a peer and whether there is one.
func (r *Recommender) Score(p PeerID) (float64, bool) {
	s, ok := r.scores[p]
	return s, ok
}

// Cluster returns the endorsement cluster a peer belongs to (≥ 1), or 0.
func (r *Recommender) Cluster(p PeerID) int { return r.cluster[p] }

// clusters groups identities that endorse each other: a endorses b when it
// rates b above its own mean rating; a and b join one cluster when each
// endorses the other and their endorsement sets mostly coincide (a Sybil
// clique praises the same members; honest peers' praise is scattered).
func (r *Recommender) clusters() map[PeerID]int {
	endorse := map[PeerID]map[PeerID]bool{}
	for rep, m := range r.reports {
		var mean float64
		for _, v := range m {
			mean += v
		}
		mean /= float64(len(m))
		set := map[PeerID]bool{rep: true}
		for s, v := range m {
			if v > mean {
				set[s] = true
			}
		}
		endorse[rep] = set
	}
	parent := map[PeerID]PeerID{}
	find := func(p PeerID) PeerID {
		for {
			q, ok := parent[p]
			if !ok || q == p {
				return p
			}
			p = q
		}
	}
	reps := sortedPeers(endorse)
	for i, a := range reps {
		for _, b := range reps[i+1:] {
			ea, eb := endorse[a], endorse[b]
			if !ea[b] || !eb[a] {
				continue
			}
			inter := 0
			for s := range ea {
				if eb[s] {
					inter++
				}
			}
			if float64(inter) >= 0.5*float64(len(ea)+len(eb)-inter) {
				parent[find(a)] = find(b)
			}
		}
	}
	members := map[PeerID][]PeerID{}
	for _, a := range reps {
		root := find(a)
		members[root] = append(members[root], a)
	}
	out := map[PeerID]int{}
	for _, root := range sortedPeers(members) {
		ms := members[root]
		if len(ms) < 2 {
			continue
		}
		id := len(out) + 1
		// The cluster is its reporters and whoever at least half of them endorse.
		count := map[PeerID]int{}
		for _, a := range ms {
			for s := range endorse[a] {
				count[s]++
			}
		}
		for s, c := range count {
			if _, taken := out[s]; !taken && 2*c >= len(ms) {
				out[s] = id
			}
		}
	}
	return out
}

func sortedPeers[V any](m map[PeerID]V) []PeerID {
	out := make([]PeerID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// Known returns up to n peers with a predicted score, best first.
func (r *Recommender) Known(n int) []PeerID {
	return r.ranked[:min(n, len(r.ranked))]
}

// Rated is a peer and a rating.
type Rated struct {
	Peer  PeerID
	Value float64
}

// Own returns the node's own mean rating of each peer it measured (the
// observations it would publish in its log), in peer order.
func (r *Recommender) Own() []Rated {
	out := make([]Rated, 0, len(r.own))
	for _, p := range sortedPeers(r.own) {
		out = append(out, Rated{p, r.own[p].mean})
	}
	return out
}
