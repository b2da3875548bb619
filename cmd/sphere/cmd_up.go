package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid/node"
)

// defaultLocalServers is the size of the embedded grid `sphere up` makes.
const defaultLocalServers = 10

func newUpCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Start a node and a local grid on this machine (no setup needed)",
		Long: `up is the quickest way to try Sphere: it creates a home if there is none, then
runs a node plus an embedded grid of storage peers on 127.0.0.1 (each a real
libp2p host with its own bbolt store under the home's servers/), and keeps them
running until Ctrl-C. While it runs, put, get and the other verbs use it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			h, created, err := openOrInitHome()
			if err != nil {
				return err
			}
			log := nodeLogger(g)
			cfg, err := nodeConfig(h, log)
			if err != nil {
				return err
			}
			n := h.Config.LocalServers
			if n <= 0 {
				n = defaultLocalServers
			}
			for i := range n {
				priv, _, err := home.Identity(h.ServerDir(i))
				if err != nil {
					return err
				}
				cfg.LocalServers = append(cfg.LocalServers, node.LocalServer{Dir: h.ServerDir(i), Identity: priv, Quota: h.StoreQuota(n)})
			}
			return runNode(cmd.Context(), cfg, func(nd *node.Node) {
				if created {
					fmt.Fprintf(g.stdout, "Created a new home in %s.\n", h.Dir)
				}
				go renewLoop(cmd.Context(), h, log)
				if _, err := startGateway(cmd.Context(), g, h, nd); err != nil {
					log.Warn("No web gateway", "err", err)
				}
				ready := time.Since(start)
				log.Info("Up", "ready", ready.Round(time.Millisecond), "localServers", n)
				fmt.Fprintf(g.stdout, `Sphere is up: a node and a local grid of %d storage peers on 127.0.0.1 (ready in %.1f s).
The local grid is for trying Sphere on one machine: real safety needs other machines
(sphere invite) plus a recovery code kept off this machine (sphere recovery).

Try, in another terminal:
  sphere put FILE            store a file, prints its cap
  sphere get CAP -o FILE     fetch it back
  sphere mount DIR           your files as a folder
  sphere status              peers, shares, space
  sphere invite              let a friend's node join this grid

Press Ctrl-C to stop.
`, n, ready.Seconds())
			})
		},
	}
}

// openOrInitHome opens the home, creating it with defaults if missing.
func openOrInitHome() (*home.Home, bool, error) {
	h, err := openNodeHome()
	if err == nil {
		return h, false, nil
	}
	if !errors.Is(err, home.ErrNoHome) {
		return nil, false, err
	}
	dir, derr := home.DefaultDir()
	if derr != nil {
		return nil, false, derr
	}
	if h, err = home.Init(dir, defaultLocalServers); err != nil {
		return nil, false, err
	}
	if err := home.InitNode(h); err != nil {
		return nil, false, err
	}
	return h, true, nil
}
