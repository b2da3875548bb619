package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

func newNodeCmd(g *globals) *cobra.Command {
	var admission bool
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run this home's node in the foreground: store shares for the grid",
		Long: `node runs the libp2p node of this home until Ctrl-C (or SIGTERM, SIGHUP): it stores
shares for the grid's members in the home's storage/ (up to node.quota bytes of
config.json), keeps connected to the members it knows (peers joined with
'sphere join' and those they told it about) and answers the CLI verbs on a local
control API (a unix socket in the home). Only peers holding the grid key can
connect, and only members on the grid's signed member list are served. One node
runs per home: a second one is refused.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			cfg, err := nodeConfig(h, nodeLogger(g))
			if err != nil {
				return err
			}
			cfg.StorageDir = h.StorageDir()
			cfg.Admission = admission
			return runNode(cmd.Context(), cfg, func(nd *node.Node) {
				go renewLoop(cmd.Context(), h, cfg.Logger)
				if _, err := startGateway(cmd.Context(), g, h, nd); err != nil {
					cfg.Logger.Warn("No web gateway", "err", err)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&admission, "admission", false,
		"refuse members' new shares beyond the ledger's tit-for-tat allowance (64 MiB plus what they store for this node, countersigned); off by default (docs/spec/ledger.md)")
	return cmd
}

// nodeLogger logs at Info (Debug with -v) to stderr: a node's log is its
// user interface.
func nodeLogger(g *globals) *slog.Logger {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

// openNodeHome opens the home, running the node part of init for homes
// made before it existed.
func openNodeHome() (*home.Home, error) {
	h, err := openHome()
	if err != nil {
		return nil, err
	}
	if !h.NodeReady() {
		if err := home.InitNode(h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// nodeConfig is the node configuration of a home (without storage or
// local servers, which the verbs add).
func nodeConfig(h *home.Home, log *slog.Logger) (node.Config, error) {
	priv, _, err := h.NodeIdentity()
	if err != nil {
		return node.Config{}, err
	}
	psk, err := h.GridKey()
	if err != nil {
		return node.Config{}, err
	}
	boot, err := node.ParseAddrs(h.Config.Node.Peers)
	if err != nil {
		return node.Config{}, fmt.Errorf("config node.peers: %w", err)
	}
	conv, err := h.Secret("convergence")
	if err != nil {
		return node.Config{}, err
	}
	ls, err := h.Secret("lease")
	if err != nil {
		return node.Config{}, err
	}
	admin, err := h.AdminID()
	if err != nil {
		return node.Config{}, err
	}
	sec := node.ClientSecrets{Params: h.Config.Params, Convergence: conv}
	copy(sec.LeaseSecret[:], ls)
	return node.Config{
		Client: sec, Identity: priv, GridKey: psk, Listen: h.Config.Node.Listen, Quota: h.Config.Node.Quota,
		Bootstrap: boot, PeersFile: h.PeersFile(), ControlFile: h.ControlFile(), LedgerFile: h.Path("ledger.db"),
		MembersFile: h.MembersFile(), InvitesFile: h.InvitesFile(), LockFile: h.LockFile(), JoinFile: h.JoinFile(),
		Admin: admin, DHT: h.Config.Node.DHT, HolePunching: h.Config.Node.HolePunching, Logger: log,
	}, nil
}

// runNode runs a node of h until ctx ends; onReady runs once, when the
// first node is ready. A node asked to switch grids (sphere join for
// another grid while it runs) stops; runNode saves the new grid in the
// home and starts the next node, with the same storage and local servers,
// holding the home's lock throughout. With SPHERE_CPUPROFILE=FILE it
// writes a CPU profile of its whole run (for docs/BENCHMARKS.md).
func runNode(ctx context.Context, cfg node.Config, onReady func(*node.Node)) error {
	if path := os.Getenv("SPHERE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if cfg.LockFile != "" {
		// Held here rather than by each node, so it spans a switch.
		unlock, err := node.LockHome(cfg.LockFile)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		defer unlock()
		cfg.LockFile = ""
	}
	for first := true; ; first = false {
		err := serveNode(ctx, cfg, func(n *node.Node) {
			servingNode.Store(n)
			limitHeap(ctx, n)
			if first && onReady != nil {
				onReady(n)
			}
		})
		var sw *node.SwitchGrid
		if !errors.As(err, &sw) {
			return err
		}
		if _, cfg, err = switchHome(cfg, sw); err != nil {
			return err
		}
	}
}

// switchHome saves the grid of sw in the home (the old node has stopped)
// and returns the configuration of the next node.
func switchHome(old node.Config, sw *node.SwitchGrid) (*home.Home, node.Config, error) {
	h, err := openNodeHome() // config.json as it is now
	if err != nil {
		return nil, node.Config{}, err
	}
	if err := saveJoin(h, sw.Invite); err != nil {
		return nil, node.Config{}, err
	}
	if sw.Members != nil {
		if err := writePrivate(h.MembersFile(), sw.Members); err != nil {
			return nil, node.Config{}, err
		}
		_ = os.Remove(h.JoinFile())
	} else if err := writePrivate(h.JoinFile(), []byte(sw.Code+"\n")); err != nil {
		return nil, node.Config{}, err
	}
	cfg, err := nodeConfig(h, old.Logger)
	if err != nil {
		return nil, node.Config{}, err
	}
	cfg.StorageDir, cfg.LocalServers, cfg.LockFile = old.StorageDir, old.LocalServers, ""
	cfg.Logger.Info("Switched the home to another grid; starting the node on it", "admin", sw.Invite.Admin().ID.String())
	return h, cfg, nil
}

// serveNode runs one node until it stops; onReady runs once it is ready.
func serveNode(ctx context.Context, cfg node.Config, onReady func(*node.Node)) error {
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	select {
	case <-n.Ready():
		if onReady != nil {
			onReady(n)
		}
	case err := <-done:
		return err
	}
	err = <-done
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// limitHeap sets the Go runtime's soft memory limit to the node's protocol
// memory budget plus 128 MiB (unless GOMEMLIMIT is set), so garbage left by
// a flood of peers' requests is collected before the heap outgrows the
// budget the node states, instead of at twice the live heap.
func limitHeap(ctx context.Context, n *node.Node) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	st, err := n.Status(ctx)
	if err != nil || st.Memory.Budget <= 0 {
		return
	}
	debug.SetMemoryLimit(st.Memory.Budget + 128<<20)
}
