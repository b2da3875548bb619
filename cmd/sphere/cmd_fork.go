package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/web/site"
)

func newForkCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fork ADDRESS",
		Short: "Make a new site of your own from a site, sharing all its storage",
		Long: `fork creates a new site that starts as a copy of the site ADDRESS: it shares
every object of the original (only a new refs file is stored) and prints the
fork's address and URL. Push to it with
  git remote add myfork sphere::NEW-ADDRESS && git push myfork main`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openHome()
			if err != nil {
				return err
			}
			src, err := parseCap(args[0])
			if err != nil {
				return err
			}
			if _, err := site.Address(src); err != nil {
				return fmt.Errorf("%w: %w", errBadCap, err)
			}
			c, closeFn, err := openClient(ctx, h)
			if err != nil {
				return err
			}
			defer closeFn()
			wc, err := site.Fork(ctx, site.GridStore(c), src)
			if err != nil {
				return err
			}
			id, addr, err := siteRegistry(h).Add(wc)
			if err != nil {
				return err
			}
			ensureRemoteHelper()
			u, _ := siteURL(h, id)
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"address": addr.String(), "url": u, "siteId": id})
			}
			fmt.Fprintf(g.stdout, "Forked. Push to it with: git remote add fork sphere::%s\n", addr.String())
			fmt.Fprintf(g.stdout, "Address: %s\n", addr.String())
			fmt.Fprintf(g.stdout, "URL:     %s\n", u)
			return nil
		},
	}
}
