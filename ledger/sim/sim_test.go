package sim

import (
	"context"
	"flag"
	"testing"
)

var (
	simPeers = flag.Int("sim.peers", 0, "run TestSimScale with this many peers")
	simDays  = flag.Int("sim.days", 30, "days for TestSimScale")
)

// TestSimScale runs one scenario at a scale given by flags (skipped
// without -sim.peers): go test ./ledger/sim -run SimScale -sim.peers 10000 -sim.days 365 -v
func TestSimScale(t *testing.T) {
	if *simPeers == 0 {
		t.Skip("set -sim.peers to run")
	}
	for _, p := range Policies {
		cfg := Default()
		cfg.Peers, cfg.Days = *simPeers, *simDays
		r, err := Run(context.Background(), cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", r)
	}
}

func runAll(t *testing.T, cfg Config) map[string]Result {
	t.Helper()
	out := map[string]Result{}
	for _, p := range Policies {
		r, err := Run(context.Background(), cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-12s %+v", p, r)
		out[p] = r
	}
	return out
}

// TestSimSmallScenario checks the claims of the default scenario at a scale
// a test can afford: learned beats the ring on throughput, tit for tat cuts
// free riders without hurting honest peers, audits stop lying storers from
// losing files, and the Sybil clique stays within its per-file bound.
func TestSimSmallScenario(t *testing.T) {
	cfg := Default()
	cfg.Peers, cfg.Days, cfg.Seed = 400, 45, 3
	res := runAll(t, cfg)
	ring, rl, learned := res["ring"], res["ring+ledger"], res["learned"]
	if learned.MeanDownloadMBps < 1.5*ring.MeanDownloadMBps {
		t.Errorf("learned %.1f MB/s, want ≥ 1.5 × ring %.1f", learned.MeanDownloadMBps, ring.MeanDownloadMBps)
	}
	if ring.RiderService == 0 || rl.RiderService > 0.5*ring.RiderService {
		t.Errorf("free riders get %.1f MB/s with the ledger, %.1f without: not cut", rl.RiderService, ring.RiderService)
	}
	if rl.HonestService < 0.9*ring.HonestService {
		t.Errorf("honest service %.1f MB/s with the ledger, %.1f without", rl.HonestService, ring.HonestService)
	}
	if rl.AuditFailures == 0 || rl.FilesLost > ring.FilesLost || rl.RealShares <= ring.RealShares {
		t.Errorf("audits: %d failures; files lost %.3f, real shares %.2f with the ledger vs %.3f, %.2f without",
			rl.AuditFailures, rl.FilesLost, rl.RealShares, ring.FilesLost, ring.RealShares)
	}
	if ring.SybilCapture == 0 {
		t.Error("the Sybil clique held no shares at all: the scenario tests nothing")
	}
	for _, r := range res {
		if r.SybilMaxPerFile > r.SybilBound {
			t.Errorf("%s: %d Sybil shares in one file, bound %d", r.Policy, r.SybilMaxPerFile, r.SybilBound)
		}
	}
}

func TestSimDeterministic(t *testing.T) {
	cfg := Default()
	cfg.Peers, cfg.Days, cfg.Seed = 200, 20, 9
	a, err := Run(context.Background(), cfg, "learned")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(context.Background(), cfg, "learned")
	a.Seconds, b.Seconds = 0, 0
	if a != b {
		t.Fatalf("same seed, different results:\n%+v\n%+v", a, b)
	}
	cfg.Seed = 10
	c, _ := Run(context.Background(), cfg, "learned")
	c.Seconds = 0
	if c == a {
		t.Fatal("different seeds gave identical results")
	}
	if _, err := Run(context.Background(), cfg, "nonsense"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestSimSigned(t *testing.T) {
	cfg := Default()
	cfg.Peers, cfg.Days, cfg.Seed, cfg.Sign = 100, 10, 2, true
	r, err := Run(context.Background(), cfg, "ring+ledger")
	if err != nil {
		t.Fatal(err)
	}
	if r.EntriesSigned == 0 {
		t.Fatal("no entries signed")
	}
}
