package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/ledger/sim"
)

func newSimCmd(g *globals) *cobra.Command {
	cfg := sim.Default()
	var policy string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a large grid and compare peer-choice policies",
		Long: `sim runs a deterministic simulation (seeded) of a grid of peers with a hidden
topology (regions, bandwidths, availability), free riders, lying storers, a Sybil
clique and churn, using the real ledger code, and prints one row per policy:
random, ring (Tahoe's permuted ring), ring+ledger (tit for tat and audits) and
learned (the ledger's learned peer choice).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			pols := sim.Policies
			if policy != "all" {
				pols = strings.Split(policy, ",")
			}
			for _, p := range pols {
				known := false
				for _, q := range sim.Policies {
					known = known || p == q
				}
				if !known {
					return usageError{fmt.Errorf("unknown policy %q (want all or some of %s)", p, strings.Join(sim.Policies, ","))}
				}
			}
			if cfg.Peers < 20 || cfg.Days < 1 {
				return usageError{fmt.Errorf("want --peers ≥ 20 and --days ≥ 1")}
			}
			res := make([]sim.Result, len(pols))
			eg, ctx := errgroup.WithContext(cmd.Context())
			eg.SetLimit(runtime.GOMAXPROCS(0))
			for i, p := range pols {
				eg.Go(func() error {
					r, err := sim.Run(ctx, cfg, p)
					res[i] = r
					return err
				})
			}
			if err := eg.Wait(); err != nil {
				return fmt.Errorf("sim: %w", err)
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"config": cfg, "results": res})
			}
			fmt.Fprintf(g.stdout, "%d peers × %d days, seed %d: %.0f%% free riders, %.0f%% lying storers, %.0f%% Sybils on %d /24s, churn %.1f%%/day, %d-of-%d\n",
				cfg.Peers, cfg.Days, cfg.Seed, 100*cfg.FreeRiders, 100*cfg.Liars, 100*cfg.Sybils, cfg.SybilSubnets, 100*cfg.Churn, cfg.K, cfg.N)
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "policy\tdownload MB/s\tvs ring\tfailed\tfiles lost\thonest MB/s\tfree-rider MB/s\tsybil capture\tmax/file (bound)\taudit fails\trefusals\tseconds\t")
			var ring float64
			for _, r := range res {
				if r.Policy == "ring" {
					ring = r.MeanDownloadMBps
				}
			}
			for _, r := range res {
				vs := "-"
				if ring > 0 {
					vs = fmt.Sprintf("%.2f×", r.MeanDownloadMBps/ring)
				}
				fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.1f%%\t%.2f%%\t%.1f\t%.1f\t%.1f%%\t%d (%d)\t%d\t%d\t%.1f\t\n",
					r.Policy, r.MeanDownloadMBps, vs, 100*r.DownloadFailed, 100*r.FilesLost, r.HonestService, r.RiderService,
					100*r.SybilCapture, r.SybilMaxPerFile, r.SybilBound, r.AuditFailures, r.Refusals, r.Seconds)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Peers, "peers", cfg.Peers, "number of peers")
	f.IntVar(&cfg.Days, "days", cfg.Days, "days to simulate")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (same seed, same result)")
	f.StringVar(&policy, "policy", "all", "policies to run: all, or a comma-separated list of "+strings.Join(sim.Policies, ","))
	f.BoolVar(&cfg.Sign, "sign", false, "sign and verify every lease entry with real Ed25519 (slower)")
	return cmd
}
