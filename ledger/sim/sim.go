// Package sim is a deterministic simulator of a large grid for comparing
// peer-choice policies. The world (regions, bandwidths, availability, free
// riders, lying storers, a Sybil clique, churn) is hidden from the policies;
// the ledger-aware policies run the real ledger code: Accounts and Policy
// for tit-for-tat admission, Recommender for learned choice, Select for
// capped placement, lease and receipt entries (optionally signed and
// verified with real Ed25519).
package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/sphere-grid/sphere/ledger"
)

// Config describes a scenario. Zero fields take the defaults of Default.
type Config struct {
	Peers, Days  int
	Seed         uint64
	K, N         int
	FileSize     int64   // bytes per file
	UploadRate   float64 // files per honest peer per day
	DownloadRate float64 // downloads per honest peer per day
	RiderRate    float64 // downloads per free rider per day
	FreeRiders   float64 // fraction of peers that never store
	Liars        float64 // fraction that accept leases and drop the shares
	Sybils       float64 // fraction that are one attacker's identities
	SybilSubnets int     // /24s the attacker's identities live in
	Churn        float64 // chance per peer per day of leaving for good
	View         int     // peers each node knows (its ring)
	Regions      int
	AuditEvery   int  // days between checks (audits with the ledger) of a file
	Sign         bool // sign and verify lease entries with real Ed25519
}

// Default is the default scenario: 10,000 peers for a year.
func Default() Config {
	return Config{Peers: 10000, Days: 365, Seed: 1, K: 3, N: 10, FileSize: 48 << 20,
		UploadRate: 0.01, DownloadRate: 0.1, RiderRate: 4, FreeRiders: 0.1, Liars: 0.05,
		Sybils: 0.05, SybilSubnets: 5, Churn: 0.001, View: 300, Regions: 8, AuditEvery: 7}
}

func (c *Config) fill() {
	d := Default()
	if c.Peers <= 0 {
		c.Peers = d.Peers
	}
	if c.Days <= 0 {
		c.Days = d.Days
	}
	if c.K <= 0 || c.N <= 0 {
		c.K, c.N = d.K, d.N
	}
	if c.FileSize <= 0 {
		c.FileSize = d.FileSize
	}
	if c.UploadRate <= 0 {
		c.UploadRate = d.UploadRate
	}
	if c.DownloadRate <= 0 {
		c.DownloadRate = d.DownloadRate
	}
	if c.RiderRate <= 0 {
		c.RiderRate = d.RiderRate
	}
	if c.SybilSubnets <= 0 {
		c.SybilSubnets = d.SybilSubnets
	}
	if c.View <= 0 {
		c.View = d.View
	}
	if c.Regions <= 0 {
		c.Regions = d.Regions
	}
	if c.AuditEvery <= 0 {
		c.AuditEvery = d.AuditEvery
	}
}

// Policies are the peer-choice policies compared.
var Policies = []string{"random", "ring", "ring+ledger", "learned"}

// Result is one policy's outcome.
type Result struct {
	Policy           string  `json:"policy"`
	MeanDownloadMBps float64 `json:"mean_download_mbps"` // honest peers' successful downloads
	DownloadFailed   float64 `json:"download_failed"`    // fraction of honest downloads
	FilesLost        float64 `json:"files_lost"`         // fraction of honest peers' files
	RealShares       float64 `json:"real_shares"`        // mean shares really held per surviving file at the end
	HonestService    float64 `json:"honest_service_mbps"`
	RiderService     float64 `json:"free_rider_service_mbps"` // mean over attempts, failures as 0
	SybilCapture     float64 `json:"sybil_capture"`           // share of honest files' shares on Sybils
	SybilMaxPerFile  int     `json:"sybil_max_per_file"`
	SybilBound       int     `json:"sybil_bound_per_file"`
	AuditFailures    int     `json:"audit_failures"`
	Refusals         int     `json:"refusals"`
	Files            int     `json:"files"`
	Downloads        int     `json:"downloads"`
	EntriesSigned    int     `json:"entries_signed"`
	Seconds          float64 `json:"seconds"`
}

// refitDays: how often a node refits its recommender (when it places shares).
const refitDays = 30

// downFactor: home links download several times faster than they upload.
const downFactor = 8

type kind uint8

const (
	honest kind = iota
	rider
	liar
	sybil
)

type peer struct {
	kind    kind
	region  int
	subnet  string
	bw      float64 // upload bytes/s; download is downFactor times this
	avail   float64
	gen     uint32
	alive   bool
	id      ledger.PeerID
	key     ed25519.PrivateKey
	acc     *ledger.Accounts
	rec     *ledger.Recommender
	fitDay  int
	head    *ledger.Entry // last signed entry (Sign)
	view    []int32
	files   []int32
	lastEx  map[int32]int // slot → day of the last log exchange
	dropped bool          // a Sybil after the attack: holds nothing
}

type file struct {
	owner    int32
	ownerGen uint32
	holders  []int32
	hgen     []uint32
	held     []bool // whether the holder really keeps the share
	lost     bool
	gone     bool // owner left the grid
}

type pairKey struct{ owner, storer ledger.PeerID }

type pairState struct {
	id    [16]byte
	bytes uint64
	until int64
}

type world struct {
	cfg       Config
	policy    string
	ledgerOn  bool
	learned   bool
	peers     []*peer
	bySlotID  map[ledger.PeerID]int32
	files     []*file
	pairs     map[pairKey]*pairState
	pol       ledger.Policy
	share     int64
	start     time.Time
	day       int
	attackDay int
	res       Result
	// stats
	honestTput, honestN, honestFail float64
	honestServ, riderServ           float64
	honestAttempts, riderAttempts   float64
	sybilClique                     []int32
	sybilFront                      []ledger.PeerID
	regionCap                       [][]float64
}

// mix is splitmix64 over the inputs: every random draw is a hash of what it
// is for, so all policies see the same events.
func mix(xs ...uint64) uint64 {
	var h uint64 = 0x9e3779b97f4a7c15
	for _, x := range xs {
		h ^= x + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

func u01(xs ...uint64) float64 { return float64(mix(xs...)>>11) / (1 << 53) }

// Draw tags.
const (
	tKind = iota + 1
	tRegion
	tBW
	tAvail
	tSubnet
	tView
	tChurn
	tUp
	tDown
	tPick
	tAvailDraw
	tJitter
	tRandom
	tRing
	tWash
	tKey
	tFront
	tProbe
)

// probesPerDay: log-head exchanges with peers of the view a node makes a
// day; each is a small transfer whose throughput it measures.
const probesPerDay = 10

// probes: every node exchanges heads with a few peers of its view a day and
// records what it measured.
func (w *world) probes() {
	for i, p := range w.peers {
		if !p.alive || p.kind == sybil || len(p.view) == 0 {
			continue
		}
		rec := w.recommender(int32(i))
		for k := range probesPerDay {
			s := p.view[mix(w.cfg.Seed, tProbe, uint64(w.day), uint64(i), uint64(k))%uint64(len(p.view))]
			w.observe(rec, int32(i), s)
		}
	}
}

// observe records client c's measurement of server s on a real transfer.
func (w *world) observe(rec *ledger.Recommender, c, s int32) {
	sp := w.peers[s]
	if !sp.alive {
		return
	}
	up := u01(w.cfg.Seed, tAvailDraw, uint64(w.day), uint64(s), uint64(c), 7) < sp.avail
	if up {
		rec.Observe(sp.id, math.Log1p(w.tput(s, c)))
		return
	}
	w.observeFailure(rec, sp.id)
}

// observeFailure counts an unanswered request as a transfer at a tenth of
// what the peer usually gives (or 100 kB/s for a stranger): availability
// lowers the score without one timeout swamping the fit.
func (w *world) observeFailure(rec *ledger.Recommender, id ledger.PeerID) {
	v := math.Log1p(1e5)
	if m, ok := rec.OwnMean(id); ok {
		v = math.Max(0, m-math.Log(10))
	}
	rec.Observe(id, v)
}

// Run simulates one policy.
func Run(ctx context.Context, cfg Config, policy string) (Result, error) {
	cfg.fill()
	w := &world{cfg: cfg, policy: policy, pairs: map[pairKey]*pairState{}, bySlotID: map[ledger.PeerID]int32{},
		start: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	switch policy {
	case "random", "ring":
	case "ring+ledger":
		w.ledgerOn = true
	case "learned":
		w.ledgerOn, w.learned = true, true
	default:
		return Result{}, fmt.Errorf("unknown policy %q (want one of %v)", policy, Policies)
	}
	t0 := time.Now()
	w.share = (cfg.FileSize + int64(cfg.K) - 1) / int64(cfg.K)
	w.pol = ledger.Policy{NewcomerStore: uint64(2 * w.share), NewcomerServe: uint64(w.share), ServePerStored: 4, Window: 24 * time.Hour}
	w.attackDay = cfg.Days * 3 / 4
	w.res = Result{Policy: policy, SybilBound: min(cfg.N, cfg.SybilSubnets)}
	w.build()
	for w.day = 0; w.day < cfg.Days; w.day++ {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		w.churn()
		if w.day == w.attackDay {
			w.attack()
		}
		if w.learned {
			w.probes()
		}
		w.uploads()
		w.downloads()
		w.checks()
	}
	w.finish()
	w.res.Seconds = time.Since(t0).Seconds()
	return w.res, nil
}

func (w *world) now() time.Time { return w.start.Add(time.Duration(w.day) * 24 * time.Hour) }

func (w *world) build() {
	c := w.cfg
	s := c.Seed
	w.regionCap = make([][]float64, c.Regions)
	for a := range c.Regions {
		w.regionCap[a] = make([]float64, c.Regions)
		for b := range c.Regions {
			d := min((a-b+c.Regions)%c.Regions, (b-a+c.Regions)%c.Regions)
			if d == 0 {
				w.regionCap[a][b] = math.Inf(1)
			} else {
				w.regionCap[a][b] = 3e6 / float64(d) // long-haul paths are the bottleneck
			}
		}
	}
	w.peers = make([]*peer, c.Peers)
	nSybil := int(c.Sybils * float64(c.Peers))
	for i := range w.peers {
		p := &peer{alive: true}
		x := u01(s, tKind, uint64(i))
		switch {
		case i < nSybil:
			p.kind = sybil
		case x < c.FreeRiders:
			p.kind = rider
		case x < c.FreeRiders+c.Liars:
			p.kind = liar
		}
		p.region = int(u01(s, tRegion, uint64(i)) * float64(c.Regions))
		// Bandwidth: log-normal, median 8 MB/s.
		z := math.Sqrt(-2*math.Log(u01(s, tBW, uint64(i), 1)+1e-12)) * math.Cos(2*math.Pi*u01(s, tBW, uint64(i), 2))
		p.bw = 8e6 * math.Exp(0.8*z)
		p.avail = 0.9 + 0.099*u01(s, tAvail, uint64(i))
		if u01(s, tAvail, uint64(i), 2) < 0.1 {
			p.avail = 0.5 + 0.3*u01(s, tAvail, uint64(i), 3) // flaky home machines
		}
		p.subnet = fmt.Sprintf("10.%d.%d", mix(s, tSubnet, uint64(i))%256, mix(s, tSubnet, uint64(i), 1)%256)
		if p.kind == sybil {
			// One attacker: a fast datacenter in region 0, few /24s.
			p.region, p.bw, p.avail = 0, 40e6, 0.995
			p.subnet = fmt.Sprintf("203.0.%d", i%c.SybilSubnets)
			w.sybilClique = append(w.sybilClique, int32(i))
		}
		w.peers[i] = p
		w.newIdentity(int32(i))
		p.view = make([]int32, 0, c.View)
		for j := 0; len(p.view) < min(c.View, c.Peers-1); j++ {
			q := int32(mix(s, tView, uint64(i), uint64(j)) % uint64(c.Peers))
			if q != int32(i) && !contains(p.view, q) {
				p.view = append(p.view, q)
			}
		}
	}
	// The clique praises a fixed front of its members.
	for j := 0; j < min(40, len(w.sybilClique)); j++ {
		w.sybilFront = append(w.sybilFront, w.peers[w.sybilClique[j]].id)
	}
}

func contains(xs []int32, x int32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// newIdentity gives slot i a fresh key and empty ledger state.
func (w *world) newIdentity(i int32) {
	p := w.peers[i]
	if p.gen > 0 {
		delete(w.bySlotID, p.id)
	}
	p.gen++
	seed := sha256.Sum256(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, w.cfg.Seed), uint64(i)), uint64(p.gen)))
	p.key = ed25519.NewKeyFromSeed(seed[:])
	p.id = ledger.PeerIDOf(p.key.Public().(ed25519.PublicKey))
	w.bySlotID[p.id] = i
	p.acc, p.rec, p.head, p.lastEx = nil, nil, nil, nil
	p.fitDay = -1000
}

func (w *world) accounts(i int32) *ledger.Accounts {
	p := w.peers[i]
	if p.acc == nil {
		p.acc = ledger.NewAccounts(p.id)
	}
	return p.acc
}

func (w *world) recommender(i int32) *ledger.Recommender {
	p := w.peers[i]
	if p.rec == nil {
		p.rec = ledger.NewRecommender(p.id, ledger.RecOptions{MaxReporters: 16, MaxSubjects: 48,
			Fit: ledger.FitOptions{Rank: 4, Iters: 5, Seed: uint64(i)}})
	}
	return p.rec
}

// live reports whether slot i still holds identity gen.
func (w *world) live(i int32, gen uint32) bool {
	p := w.peers[i]
	return p.alive && p.gen == gen
}

func (w *world) churn() {
	for i, p := range w.peers {
		if p.kind == sybil {
			continue
		}
		if u01(w.cfg.Seed, tChurn, uint64(w.day), uint64(i)) < w.cfg.Churn {
			// The peer leaves; a newcomer takes its place (same machine class).
			for _, f := range p.files {
				w.files[f].gone = true
			}
			p.files = nil
			w.newIdentity(int32(i))
			continue
		}
		if p.kind == rider && w.ledgerOn && w.day%30 == 29 {
			// Free riders whitewash: a fresh identity, keeping their caps.
			files := p.files
			w.newIdentity(int32(i))
			p.files = files
			for _, f := range files {
				w.files[f].ownerGen = p.gen
			}
		}
	}
}

func (w *world) attack() {
	var shares, onSybil float64
	for _, f := range w.files {
		if f.gone || f.lost || w.peers[f.owner].kind != honest {
			continue
		}
		n := 0
		for j, h := range f.holders {
			if h < 0 {
				continue
			}
			shares++
			if w.peers[h].kind == sybil && w.live(h, f.hgen[j]) {
				onSybil++
				n++
			}
		}
		w.res.SybilMaxPerFile = max(w.res.SybilMaxPerFile, n)
	}
	if shares > 0 {
		w.res.SybilCapture = onSybil / shares
	}
	for _, i := range w.sybilClique {
		w.peers[i].dropped = true
	}
}

// tput is the throughput from server s to client c.
func (w *world) tput(s, c int32) float64 {
	ps, pc := w.peers[s], w.peers[c]
	t := math.Min(ps.bw, downFactor*pc.bw)
	t = math.Min(t, w.regionCap[ps.region][pc.region])
	return t * (0.8 + 0.4*u01(w.cfg.Seed, tJitter, uint64(s), uint64(c)))
}

func (w *world) uploads() {
	for i, p := range w.peers {
		if !p.alive || p.kind == sybil {
			continue
		}
		if u01(w.cfg.Seed, tUp, uint64(w.day), uint64(i)) >= w.cfg.UploadRate {
			continue
		}
		f := &file{owner: int32(i), ownerGen: p.gen, holders: make([]int32, w.cfg.N), hgen: make([]uint32, w.cfg.N), held: make([]bool, w.cfg.N)}
		fid := int32(len(w.files))
		w.files = append(w.files, f)
		p.files = append(p.files, fid)
		for j := range f.holders {
			f.holders[j] = -1
		}
		w.place(fid, f)
	}
}

// candidates returns the servers owner o would ask, in preference order.
func (w *world) candidates(fid int32, o int32, exclude []int32) []int32 {
	p := w.peers[o]
	pool := append([]int32(nil), p.view...)
	inPool := make(map[int32]bool, len(pool)+30)
	for _, s := range pool {
		inPool[s] = true
	}
	var rec *ledger.Recommender
	if w.learned {
		rec = w.recommender(o)
		if w.day-p.fitDay >= refitDays {
			rec.Refit()
			p.fitDay = w.day
		}
		for _, q := range rec.Known(30) {
			if s, ok := w.bySlotID[q]; ok && !inPool[s] {
				pool = append(pool, s)
				inPool[s] = true
			}
		}
	}
	pool = filter(pool, func(s int32) bool { return !contains(exclude, s) && w.peers[s].alive })
	switch w.policy {
	case "random":
		sortByKey(pool, func(s int32) uint64 { return mix(w.cfg.Seed, tRandom, uint64(fid), uint64(s)) })
		return pool
	}
	// Permuted ring: order by hash(file, server id).
	sortByKey(pool, func(s int32) uint64 {
		id := w.peers[s].id
		return mix(uint64(fid), binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:16]))
	})
	if w.ledgerOn {
		acc := w.accounts(o)
		pool = filter(pool, func(s int32) bool { return !acc.Shunned(w.peers[s].id) })
	}
	if !w.learned {
		return pool
	}
	ring := make([]ledger.Candidate, len(pool))
	for j, s := range pool {
		ring[j] = ledger.Candidate{Peer: w.peers[s].id, Subnet: w.peers[s].subnet}
	}
	chosen := ledger.Select(ring, rec, ledger.SelectOptions{N: w.cfg.N + 20, MaxPerSubnet: 1, MaxPerCluster: 2})
	out := make([]int32, 0, len(chosen))
	for _, id := range chosen {
		out = append(out, w.bySlotID[id])
	}
	return out
}

// sortByKey sorts xs by a key computed once per element.
func sortByKey(xs []int32, key func(int32) uint64) {
	type kv struct {
		k uint64
		x int32
	}
	kvs := make([]kv, len(xs))
	for i, x := range xs {
		kvs[i] = kv{key(x), x}
	}
	sort.Slice(kvs, func(a, b int) bool { return kvs[a].k < kvs[b].k })
	for i := range kvs {
		xs[i] = kvs[i].x
	}
}

func filter(xs []int32, keep func(int32) bool) []int32 {
	out := xs[:0]
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// place fills f's empty share slots.
func (w *world) place(fid int32, f *file) {
	var exclude []int32
	for j, h := range f.holders {
		if h >= 0 && w.live(h, f.hgen[j]) {
			exclude = append(exclude, h)
		}
	}
	cands := w.candidates(fid, f.owner, exclude)
	// Ring and random honour one share per /24 like learned, for fairness.
	subnets := map[string]bool{}
	for _, h := range exclude {
		subnets[w.peers[h].subnet] = true
	}
	next := 0
	for j := range f.holders {
		if f.holders[j] >= 0 && w.live(f.holders[j], f.hgen[j]) {
			continue
		}
		f.holders[j] = -1
		for next < len(cands) {
			s := cands[next]
			next++
			if subnets[w.peers[s].subnet] {
				continue
			}
			if !w.store(f.owner, s) {
				continue
			}
			subnets[w.peers[s].subnet] = true
			f.holders[j], f.hgen[j] = s, w.peers[s].gen
			sp := w.peers[s]
			f.held[j] = sp.kind == honest || (sp.kind == sybil && !sp.dropped)
			break
		}
	}
}

// store asks server s to keep a share for owner o; it records the lease.
func (w *world) store(o, s int32) bool {
	sp := w.peers[s]
	if sp.kind == rider {
		return false // free riders never store
	}
	if !w.ledgerOn {
		return true
	}
	op := w.peers[o]
	if sp.kind == honest {
		sacc := w.accounts(s)
		if err := w.pol.AdmitStore(sacc.Balance(op.id, w.now(), w.pol.Window), uint64(w.share)); err != nil {
			w.res.Refusals++
			return false
		}
	}
	w.lease(o, s, int64(w.share))
	return true
}

// lease grows (or shrinks) the pair's countersigned lease by delta bytes.
func (w *world) lease(o, s int32, delta int64) {
	op, sp := w.peers[o], w.peers[s]
	k := pairKey{op.id, sp.id}
	ps := w.pairs[k]
	renewal := ps != nil
	if ps == nil {
		ps = &pairState{}
		copy(ps.id[:], op.id[:8])
		copy(ps.id[8:], sp.id[:8])
		w.pairs[k] = ps
	}
	nb := int64(ps.bytes) + delta
	if nb <= 0 {
		delete(w.pairs, k)
		w.record(o, s, &ledger.End{ID: ps.id, Storer: sp.id, Owner: op.id, Time: w.now().Unix(), Reason: ledger.EndCancelled})
		return
	}
	ps.bytes = uint64(nb)
	ps.until = w.now().Unix() + 31*86400
	t := ledger.LeaseTerms{ID: ps.id, Storer: sp.id, Owner: op.id, Bytes: ps.bytes, Start: w.now().Unix(), Until: ps.until}
	l := &ledger.Lease{Terms: t, Renewal: renewal}
	if w.cfg.Sign {
		l.StorerSig, l.OwnerSig = ledger.SignTerms(sp.key, t), ledger.SignTerms(op.key, t)
	}
	w.record(o, s, l)
}

// record appends a body to both parties' logs and accounts.
func (w *world) record(a, b int32, body ledger.Body) {
	for _, i := range []int32{a, b} {
		p := w.peers[i]
		e := &ledger.Entry{Author: p.id, Time: w.now(), Body: body}
		if w.cfg.Sign {
			ne, err := ledger.NewEntry(p.key, p.head, w.now(), body)
			if err != nil {
				continue
			}
			// The counterparty verifies what it is shown, end to end.
			var prev ledger.Hash
			var pt time.Time
			if p.head != nil {
				prev, pt = p.head.Hash(), p.head.Time
			}
			if _, err := ledger.VerifyChain(p.id, ne.Index, prev, pt, [][]byte{ne.Encode()}, ledger.ChainOptions{}); err != nil {
				continue
			}
			p.head, e = ne, ne
			w.res.EntriesSigned++
		}
		if p.kind == honest {
			w.accounts(i).Add(e)
		}
	}
}

func (w *world) downloads() {
	for i, p := range w.peers {
		if !p.alive || p.kind == sybil || p.kind == liar || len(p.files) == 0 {
			continue
		}
		rate := w.cfg.DownloadRate
		if p.kind == rider {
			rate = w.cfg.RiderRate
		}
		// floor(rate) downloads, and one more with the fractional chance.
		n := int(rate)
		if u01(w.cfg.Seed, tDown, uint64(w.day), uint64(i)) < rate-float64(n) {
			n++
		}
		for k := range n {
			fid := p.files[int(u01(w.cfg.Seed, tPick, uint64(w.day), uint64(i), uint64(k))*float64(len(p.files)))]
			if f := w.files[fid]; !f.lost {
				w.download(int32(i), fid, f)
			}
		}
	}
}

func (w *world) download(c, fid int32, f *file) {
	cp := w.peers[c]
	type src struct {
		s int32
		t float64
	}
	var ok []src
	var rec *ledger.Recommender
	if w.learned {
		rec = w.recommender(c)
	}
	for j, s := range f.holders {
		if s < 0 || !w.live(s, f.hgen[j]) {
			continue
		}
		sp := w.peers[s]
		up := u01(w.cfg.Seed, tAvailDraw, uint64(w.day), uint64(s), uint64(c)) < sp.avail
		serves := up && f.held[j] && !sp.dropped
		if serves && w.ledgerOn && sp.kind == honest {
			if w.pol.AdmitServe(w.accounts(s).Balance(cp.id, w.now(), w.pol.Window), uint64(w.share)) != nil {
				w.res.Refusals++
				serves = false
			}
		}
		t := 0.0
		if serves {
			t = w.tput(s, c)
			ok = append(ok, src{s, t})
		}
		if rec != nil {
			if serves {
				rec.Observe(sp.id, math.Log1p(t))
			} else {
				w.observeFailure(rec, sp.id)
			}
			w.exchange(c, s)
		}
	}
	sort.Slice(ok, func(a, b int) bool { return ok[a].t > ok[b].t })
	got := 0.0
	if len(ok) >= w.cfg.K {
		got = math.Min(downFactor*cp.bw, float64(w.cfg.K)*ok[w.cfg.K-1].t)
		for _, x := range ok[:w.cfg.K] {
			if w.ledgerOn {
				rt := ledger.ReceiptTerms{Provider: w.peers[x.s].id, Receiver: cp.id, Op: ledger.OpServed, Bytes: uint64(w.share),
					Time: w.now().UnixMilli(), Ref: [32]byte{byte(fid), byte(fid >> 8), byte(fid >> 16), byte(w.day), byte(w.day >> 8)}}
				body := &ledger.Receipt{Terms: rt}
				if w.peers[x.s].kind == honest {
					w.accounts(x.s).Add(&ledger.Entry{Author: w.peers[x.s].id, Time: w.now(), Body: body})
				}
			}
		}
	}
	w.res.Downloads++
	switch cp.kind {
	case honest:
		w.honestAttempts++
		w.honestServ += got
		if got > 0 {
			w.honestTput += got
			w.honestN++
		} else {
			w.honestFail++
		}
	case rider:
		w.riderAttempts++
		w.riderServ += got
	}
}

// exchange copies server s's published observations into client c's
// recommender, at most every two weeks per pair (heads say nothing new).
func (w *world) exchange(c, s int32) {
	cp, sp := w.peers[c], w.peers[s]
	if cp.lastEx == nil {
		cp.lastEx = map[int32]int{}
	}
	if d, seen := cp.lastEx[s]; seen && w.day-d < 30 {
		return
	}
	cp.lastEx[s] = w.day
	rec := w.recommender(c)
	if sp.kind == sybil {
		for _, q := range w.sybilFront {
			rec.Report(sp.id, q, 20) // the clique praises its front
		}
		return
	}
	if sp.rec == nil {
		return
	}
	for _, r := range sp.rec.Own() {
		rec.Report(sp.id, r.Peer, r.Value)
	}
}

// checks runs each file's periodic check (or audit, with the ledger) and
// repair.
func (w *world) checks() {
	for fid, f := range w.files {
		if f.gone || f.lost || (w.day+fid)%w.cfg.AuditEvery != 0 {
			continue
		}
		op := w.peers[f.owner]
		if !w.live(f.owner, f.ownerGen) {
			continue
		}
		present, really := 0, 0
		for j, s := range f.holders {
			if s < 0 || !w.live(s, f.hgen[j]) {
				f.holders[j] = -1
				continue
			}
			sp := w.peers[s]
			has := f.held[j] && !sp.dropped
			if has {
				really++
			}
			if w.ledgerOn {
				// A random-block audit: only a holder that has the share passes.
				if !has {
					w.res.AuditFailures++
					ps := w.pairs[pairKey{op.id, sp.id}]
					if ps != nil && op.kind == honest {
						w.accounts(f.owner).Add(&ledger.Entry{Author: op.id, Time: w.now(), Body: &ledger.End{ID: ps.id, Storer: sp.id, Owner: op.id, Time: w.now().Unix(), Reason: ledger.EndAudit}})
					}
					if w.learned {
						w.recommender(f.owner).Observe(sp.id, 0)
					}
					f.holders[j] = -1
					continue
				}
				if ps := w.pairs[pairKey{op.id, sp.id}]; ps != nil && ps.until-w.now().Unix() < 14*86400 {
					w.lease(f.owner, s, 0) // renew
				}
			}
			present++ // without the ledger, a check believes "I have it"
		}
		if really < w.cfg.K {
			f.lost = true
			continue
		}
		if w.learned && present == w.cfg.N && (w.day/w.cfg.AuditEvery)%4 == 0 {
			present -= w.rebalance(f)
		}
		if present < w.cfg.N {
			w.place(int32(fid), f)
		}
	}
}

// rebalance moves at most one share per check off the holder the owner
// measured slowest, when that is under a quarter of its best holder's, as
// Tahoe's rebalancing would with the ledger's knowledge. It returns the
// number of slots freed.
func (w *world) rebalance(f *file) int {
	rec := w.recommender(f.owner)
	worst, best := -1, math.Inf(-1)
	worstV := math.Inf(1)
	for j, s := range f.holders {
		if s < 0 {
			continue
		}
		v, ok := rec.Score(w.peers[s].id)
		if !ok {
			continue
		}
		best = math.Max(best, v)
		if v < worstV {
			worst, worstV = j, v
		}
	}
	if worst < 0 || best-worstV < math.Log(4) {
		return 0
	}
	s := f.holders[worst]
	if f.held[worst] {
		w.lease(f.owner, s, -w.share)
	}
	f.holders[worst] = -1
	return 1
}

func (w *world) finish() {
	var files, lost, realShares float64
	for _, f := range w.files {
		if f.gone || w.peers[f.owner].kind != honest {
			continue
		}
		files++
		// A file also counts as lost when fewer than k real shares remain.
		really := 0
		for j, s := range f.holders {
			if s >= 0 && w.live(s, f.hgen[j]) && f.held[j] && !w.peers[s].dropped {
				really++
			}
		}
		if f.lost || really < w.cfg.K {
			lost++
		} else {
			realShares += float64(really)
		}
	}
	w.res.Files = int(files)
	if files > 0 {
		w.res.FilesLost = lost / files
	}
	if files > lost {
		w.res.RealShares = realShares / (files - lost)
	}
	if w.honestN > 0 {
		w.res.MeanDownloadMBps = w.honestTput / w.honestN / 1e6
	}
	if w.honestAttempts > 0 {
		w.res.DownloadFailed = w.honestFail / w.honestAttempts
		w.res.HonestService = w.honestServ / w.honestAttempts / 1e6
	}
	if w.riderAttempts > 0 {
		w.res.RiderService = w.riderServ / w.riderAttempts / 1e6
	}
}
