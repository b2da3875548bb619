package ledger

import "sort"

// Candidate is a server that could take a share: its id and its /24 (or
// other network grouping; "" when unknown).
type Candidate struct {
	Peer   PeerID
	Subnet string
}

// Scorer is what selection needs from a Recommender.
type Scorer interface {
	Score(PeerID) (float64, bool)
	Cluster(PeerID) int
}

// SelectOptions tune Select.
type SelectOptions struct {
	N int // shares to place
	// Blend weighs the learned score's rank against the ring position:
	// 0 is Tahoe's permuted ring, 1 ignores it. Default 0.8.
	Blend float64
	// MaxPerSubnet and MaxPerCluster bound how many of one file's shares
	// go to one /24 and one endorsement cluster. Defaults: N/5 (at least 1).
	MaxPerSubnet, MaxPerCluster int
	// Refuse, if set, drops peers the ledger says not to use (convicted,
	// failed audits, refused us).
	Refuse func(PeerID) bool
}

// Select chooses up to N servers from candidates given in permuted-ring
// order for one file. Each candidate's key blends its ring rank with the
// rank of its predicted score (unscored peers rank in the middle, so new
// peers still get tried); candidates are taken by key under the per-subnet
// and per-cluster caps. It returns fewer than N when the caps or refusals
// leave too few.
func Select(ring []Candidate, sc Scorer, opt SelectOptions) []PeerID {
	if opt.N <= 0 || len(ring) == 0 {
		return nil
	}
	if opt.Blend == 0 && sc != nil {
		opt.Blend = 0.8
	}
	if opt.Blend < 0 || sc == nil {
		opt.Blend = 0
	}
	capDefault := max(1, opt.N/5)
	if opt.MaxPerSubnet <= 0 {
		opt.MaxPerSubnet = capDefault
	}
	if opt.MaxPerCluster <= 0 {
		opt.MaxPerCluster = capDefault
	}
	n := len(ring)
	type cand struct {
		i     int
		score float64
		known bool
		key   float64
	}
	cs := make([]cand, 0, n)
	for i, c := range ring {
		if opt.Refuse != nil && opt.Refuse(c.Peer) {
			continue
		}
		x := cand{i: i}
		if sc != nil {
			x.score, x.known = sc.Score(c.Peer)
		}
		cs = append(cs, x)
	}
	if opt.Blend > 0 {
		// Rank known scores best first; unknown peers sit at the middle rank.
		byScore := make([]int, 0, len(cs))
		for j := range cs {
			if cs[j].known {
				byScore = append(byScore, j)
			}
		}
		sort.SliceStable(byScore, func(a, b int) bool { return cs[byScore[a]].score > cs[byScore[b]].score })
		rank := make([]float64, len(cs))
		for j := range rank {
			rank[j] = 0.5
		}
		for r, j := range byScore {
			rank[j] = float64(r) / float64(max(1, len(byScore)-1))
		}
		for j := range cs {
			cs[j].key = opt.Blend*rank[j] + (1-opt.Blend)*float64(j)/float64(len(cs))
		}
		sort.SliceStable(cs, func(a, b int) bool { return cs[a].key < cs[b].key })
	}
	perSubnet := map[string]int{}
	perCluster := map[int]int{}
	out := make([]PeerID, 0, opt.N)
	for _, x := range cs {
		c := ring[x.i]
		if c.Subnet != "" && perSubnet[c.Subnet] >= opt.MaxPerSubnet {
			continue
		}
		cl := 0
		if sc != nil {
			cl = sc.Cluster(c.Peer)
		}
		if cl != 0 && perCluster[cl] >= opt.MaxPerCluster {
			continue
		}
		perSubnet[c.Subnet]++
		if cl != 0 {
			perCluster[cl]++
		}
		out = append(out, c.Peer)
		if len(out) == opt.N {
			break
		}
	}
	return out
}
