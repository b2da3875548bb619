package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
)

func newCapCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cap",
		Short: "Work with capability strings",
	}
	verify := &cobra.Command{
		Use:   "verify CAP",
		Short: "Print the verify cap of CAP: it can check shares but never read them",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := parseCap(args[0])
			if err != nil {
				return err
			}
			v, err := verifyCap(c)
			if err != nil {
				return err
			}
			return printCap(g, v)
		},
	}
	cmd.AddCommand(verify)
	return cmd
}

// verifyCap diminishes any cap to its verify cap.
func verifyCap(c caps.Cap) (caps.Cap, error) {
	switch c := c.(type) {
	case caps.CHKCap:
		return c.VerifyCap(), nil
	case caps.CHKVerifyCap:
		return c, nil
	case caps.LitCap:
		return nil, fmt.Errorf("a lit cap holds its data inline; it has no shares to verify")
	}
	if d, ok := c.(interface{ VerifyCap() caps.Cap }); ok {
		return d.VerifyCap(), nil
	}
	return nil, fmt.Errorf("cap kind %q has no verify cap", c.Kind())
}

func printCap(g *globals, c caps.Cap) error {
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"cap": c.String(), "kind": c.Kind()})
	}
	_, err := fmt.Fprintln(g.stdout, c.String())
	return err
}

// capSize returns the plaintext size a cap declares (0 if it declares none).
func capSize(c caps.Cap) int64 {
	switch c := c.(type) {
	case caps.CHKCap:
		return int64(c.Size)
	case caps.LitCap:
		return int64(len(c.Data))
	}
	return 0
}
