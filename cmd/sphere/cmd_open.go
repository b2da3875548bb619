package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newOpenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "open ADDRESS",
		Short: "Print the local URL of a site, given its address",
		Long: `open records the site ADDRESS (the cap its publisher shared) in this home and
prints the URL at which this machine's gateway serves it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openHome()
			if err != nil {
				return err
			}
			c, err := parseCap(args[0])
			if err != nil {
				return err
			}
			id, addr, err := siteRegistry(h).Add(c)
			if err != nil {
				return fmt.Errorf("%w: %w", errBadCap, err)
			}
			u, running := siteURL(h, id)
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"address": addr.String(), "url": u, "siteId": id, "gatewayRunning": running})
			}
			if !running {
				fmt.Fprintln(g.stdout, "(no gateway is running: start `sphere up` to serve it here)")
			}
			fmt.Fprintf(g.stdout, "URL: %s\n", u)
			return nil
		},
	}
}
