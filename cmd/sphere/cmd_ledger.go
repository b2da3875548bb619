package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid/node"
	"github.com/sphere-grid/sphere/ledger"
)

// errNotVerified marks a log that failed verification (exit code 5).
var errNotVerified = fmt.Errorf("log does not verify: %w", caps.ErrIntegrity)

func newLedgerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Show this node's signed ledger: its log, logs held, balances, fork proofs",
		Long: `ledger asks the running node for its ledger: the length and head of its own
signed, hash-chained log, the peers' logs it holds (each verified end to end when
fetched), balances per peer in byte-days from countersigned entries, and any fork
proofs (peers caught signing two versions of their log).

Today the node records observations of the peers it exchanges logs with, and
counts the bytes its stores take from and send to each peer (shown under
Service; those counts are the node's own and earn no credit). Lease agreements
and delivery receipts are not yet signed on real transfers, so balances stay
empty until they are.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialNode(cmd.Context())
			if err != nil {
				return err
			}
			rep, err := c.Ledger(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(rep)
			}
			fmt.Fprintf(g.stdout, "Ledger of %s: %d entries, head %.16s…\n", rep.Self, rep.Length, rep.Head)
			var kinds []string
			for k, n := range rep.Kinds {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
			}
			if len(kinds) > 0 {
				fmt.Fprintf(g.stdout, "  entries: %s\n", strings.Join(kinds, ", "))
			}
			fmt.Fprintf(g.stdout, "Logs held: %d\n", len(rep.Logs))
			for _, l := range rep.Logs {
				fmt.Fprintf(g.stdout, "  %s  %d entries, last %s\n", l.Author, l.Length, l.Time.Format(time.RFC3339))
			}
			printAccounting(g.stdout, rep.Accounting)
			fmt.Fprintf(g.stdout, "Fork proofs held: %d\n", len(rep.Forks))
			for _, f := range rep.Forks {
				fmt.Fprintf(g.stdout, "  %s signed two entries at index %d\n", f.Author, f.Index)
			}
			return nil
		},
	}
	cmd.AddCommand(newLedgerVerifyCmd(g))
	return cmd
}

func newLedgerVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify PEER|FILE",
		Short: "Verify a peer's log (held by the running node) or a log file, end to end",
		Long: `verify checks every entry of a log from its first: format, author, index, the hash
chain, timestamps and every signature (the author's and those of countersigned
terms). PEER is a peer id (12D3Koo…); the running node fetches the peer's latest
entries first when connected. FILE is a log file (docs/spec/ledger.md) and is
checked offline, without a node. Exit 0 when the log verifies, 5 when it does
not, 1 when there is nothing to verify.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if b, err := os.ReadFile(args[0]); err == nil {
				return verifyLogFile(g, b)
			}
			c, err := dialNode(cmd.Context())
			if err != nil {
				return err
			}
			rep, err := c.LedgerVerify(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				if err := json.NewEncoder(g.stdout).Encode(rep); err != nil {
					return err
				}
			} else if rep.Verified {
				fmt.Fprintf(g.stdout, "log of %s verifies: %d entries\n", rep.Peer, rep.Entries)
			}
			if !rep.Verified {
				return fmt.Errorf("%w: %s at entry %d", errNotVerified, rep.Error, rep.Index)
			}
			return nil
		},
	}
}

func verifyLogFile(g *globals, b []byte) error {
	author, start, raw, err := ledger.DecodeLogFile(b)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotVerified, err)
	}
	if start != 0 {
		return fmt.Errorf("log file starts at entry %d: only whole logs verify offline", start)
	}
	es, err := ledger.VerifyChain(author, 0, ledger.Hash{}, time.Time{}, raw, ledger.ChainOptions{})
	if err != nil {
		return fmt.Errorf("%w: %w", errNotVerified, err)
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"peer": node.LedgerToPeerID(author), "entries": len(es), "verified": true})
	}
	fmt.Fprintf(g.stdout, "log of %s verifies: %d entries\n", node.LedgerToPeerID(author), len(es))
	return nil
}

// dialNode finds the running node of this home.
func dialNode(ctx context.Context) (*node.Control, error) {
	h, err := openHome()
	if err != nil {
		return nil, err
	}
	c, err := node.DialControl(ctx, h.ControlFile())
	if errors.Is(err, node.ErrNotRunning) {
		return nil, fmt.Errorf("no node is running for %s (start one with `sphere node`)", h.Dir)
	}
	return c, err
}
