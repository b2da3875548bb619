package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/grid/node"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running node: peers, shares held, space used, leases expiring",
		Long: `status asks the node running for this home ('sphere node' or 'sphere up') how it
is doing. It exits 0 only when a node is running and ready, so scripts can wait
for it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openHome()
			if err != nil {
				return err
			}
			c, err := node.DialControl(cmd.Context(), h.ControlFile())
			if errors.Is(err, node.ErrNotRunning) {
				return fmt.Errorf("no node is running for %s (start one with `sphere up` or `sphere node`)", h.Dir)
			}
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(st)
			}
			quota := "no limit"
			if st.Quota > 0 {
				quota = humanBytes(st.Quota)
			}
			exp := fmt.Sprint(st.ExpiringSoon)
			if st.ExpiringSoon < 0 {
				exp = "unknown"
			}
			fmt.Fprintf(g.stdout, "Node %s (pid %d, up %s)\n", st.PeerID, c.File.PID, time.Since(st.Started).Round(time.Second))
			for _, a := range st.Addrs {
				fmt.Fprintf(g.stdout, "  listening on %s\n", a)
			}
			fmt.Fprintf(g.stdout, "Peers:   %d connected of %d known grid members", len(st.Connected), st.Members)
			if st.LocalServers > 0 {
				fmt.Fprintf(g.stdout, ", %d local storage peers", st.LocalServers)
			}
			fmt.Fprintln(g.stdout)
			fmt.Fprintf(g.stdout, "Storage: %d shares, %s used of %s\n", st.Shares, humanBytes(st.Used), quota)
			fmt.Fprintf(g.stdout, "Leases:  %s shares expire within 7 days (run `sphere renew`)\n", exp)
			m := st.Memory
			fmt.Fprintf(g.stdout, "Memory:  heap %s; peers' requests hold %s of %s (%d refused busy, %d cut off)\n",
				humanBytes(int64(m.HeapInuse)), humanBytes(m.Buffered), humanBytes(m.Budget), m.Refused, m.CutOff)
			return nil
		},
	}
}

// humanBytes prints n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
