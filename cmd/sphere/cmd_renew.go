package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
)

// maxRenewCaps bounds the caps one renew walks.
const maxRenewCaps = 1 << 20

func newRenewCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "renew",
		Short: "Renew the leases on everything this home stored",
		Long: `renew extends this home's leases (31 days from now) on every server holding
shares of the files this home put (listed in the home's caps file). Shares whose
leases all expire are deleted by the servers, so run it at least monthly.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openHome()
			if err != nil {
				return err
			}
			list, err := readCapsFile(h.CapsFile())
			if err != nil {
				return err
			}
			res := struct {
				Caps    int `json:"caps"`
				Renewed int `json:"renewed"`
				Failed  int `json:"failed"`
			}{Caps: len(list)}
			if len(list) > 0 {
				c, closeFn, err := openClient(ctx, h)
				if err != nil {
					return err
				}
				defer closeFn()
				for _, cp := range list {
					if err := c.RenewLeases(ctx, cp); err != nil {
						res.Failed++
						fmt.Fprintf(g.stderr, "sphere: renew: %v\n", err)
						continue
					}
					res.Renewed++
				}
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "Renewed leases of %d of %d files.\n", res.Renewed, res.Caps)
			}
			if res.Failed > 0 {
				return fmt.Errorf("renew: %d files failed: %w", res.Failed, errUnhealthy)
			}
			return nil
		},
	}
}

// readCapsFile parses the caps file, one cap a line, skipping duplicates
// and blank lines. A missing file is an empty list.
func readCapsFile(path string) ([]caps.Cap, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []caps.Cap
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || seen[s] {
			continue
		}
		if len(out) >= maxRenewCaps {
			return nil, fmt.Errorf("renew: %s: more than %d caps", path, maxRenewCaps)
		}
		seen[s] = true
		cp, err := parseCap(s)
		if err != nil {
			return nil, fmt.Errorf("renew: %s line %d: %w", path, line, err)
		}
		out = append(out, cp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("renew: %s: %w", path, err)
	}
	return out, nil
}
