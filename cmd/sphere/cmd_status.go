package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
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
			if s := pendingLine(h); s != "" && !g.json { // the write-back journal of mounts (cmd_sync.go)
				fmt.Fprintf(g.stdout, "Pending: %s (run `sphere sync`)\n", s)
			}
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
			p := h.Config.Params
			drive, err := loadRenewal(h)
			if err != nil {
				return err
			}
			// All shares on this machine: the embedded grid, or a node no
			// other member has joined.
			allLocal := st.Members == 0
			if g.json {
				out := statusJSON{Status: st, Encoding: sharesString(p), AllSharesLocal: allLocal, DriveRenewal: drive}
				_, out.Pending.Changes, out.Pending.Bytes = pendingJournal(h)
				if drive != nil {
					t := drive.RunsOut()
					out.DriveLeasesRunOut = &t
				}
				return json.NewEncoder(g.stdout).Encode(out)
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
			fmt.Fprintf(g.stdout, "Encoding: %d-of-%d, happy %d (--shares %s; any %d shares rebuild a file, uploads need %d servers)\n",
				p.K, p.N, p.Happy, sharesString(p), p.K, p.Happy)
			for _, f := range st.FailedStores {
				fmt.Fprintf(g.stdout, "FAILED:  store %s is out of service: %s\n", f.Dir, f.Error)
			}
			if len(st.FailedStores) > 0 {
				fmt.Fprintf(g.stdout, "         Stop the node, then run `sphere store fsck --rebuild DIR` for each.\n")
			}
			printDriveLeases(g.stdout, drive)
			if allLocal {
				fmt.Fprintln(g.stdout, "WARNING: all shares are on this machine's disk: losing it loses the drive. Invite other")
				fmt.Fprintln(g.stdout, "         machines (`sphere invite`) and keep a recovery code (`sphere recovery`) off this machine.")
			}
			m := st.Memory
			fmt.Fprintf(g.stdout, "Memory:  heap %s; peers' requests hold %s of %s (%d refused busy, %d cut off)\n",
				humanBytes(int64(m.HeapInuse)), humanBytes(m.Buffered), humanBytes(m.Budget), m.Refused, m.CutOff)
			printAccounting(g.stdout, st.Accounting)
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

// statusJSON is status --json: the node's status plus the drive's leases.
type statusJSON struct {
	node.Status
	Encoding          string       `json:"encoding"` // the home's encoding, "K,H,N" as --shares takes it
	AllSharesLocal    bool         `json:"allSharesLocal"`
	DriveRenewal      *renewRecord `json:"driveRenewal,omitempty"`
	DriveLeasesRunOut *time.Time   `json:"driveLeasesRunOut,omitempty"`
	// Pending is what mounts saved on this machine and not yet on the grid.
	Pending struct {
		Changes int   `json:"changes"`
		Bytes   int64 `json:"bytes"` // file contents
	} `json:"pending"`
}

// printDriveLeases says when the drive's leases run out.
func printDriveLeases(w io.Writer, r *renewRecord) {
	if r == nil {
		fmt.Fprintln(w, "Drive:   leases never renewed from this home (the node renews them daily while it runs; or `sphere renew`)")
		return
	}
	left := time.Until(r.RunsOut())
	fmt.Fprintf(w, "Drive:   leases renewed %s by %s (%d of %d); they run out %s (in %d days) unless renewed\n",
		r.Time.Local().Format("2006-01-02 15:04"), r.By, r.Renewed, r.Caps, r.RunsOut().Local().Format("2006-01-02"), int(left.Hours()/24))
	if left < 7*24*time.Hour {
		fmt.Fprintln(w, "WARNING: the drive's leases run out within 7 days: run `sphere renew` (or keep the node running)")
	}
}

// printAccounting prints balances (countersigned ledger entries) and what
// the stores did per peer (the node's own counts, which earn no credit).
func printAccounting(w io.Writer, a node.Accounting) {
	adm := "off"
	if a.Admission {
		adm = "on"
	}
	fmt.Fprintf(w, "Ledger:  %d balances from countersigned entries; tit-for-tat admission %s\n", len(a.Balances), adm)
	if len(a.Balances) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  peer\tgiven byte-days\treceived byte-days\tstoring for\tstored by\t")
		for _, b := range a.Balances {
			fmt.Fprintf(tw, "  %s\t%.0f\t%.0f\t%s\t%s\t\n", b.Peer, b.GivenByteDays, b.ReceivedByteDays, humanBytes(int64(b.StoringFor)), humanBytes(int64(b.StoredBy)))
		}
		tw.Flush()
	}
	if len(a.Service) == 0 {
		return
	}
	fmt.Fprintln(w, "Service: bytes this node's stores took from and sent to each peer since start")
	fmt.Fprintln(w, "         (counted here, not countersigned: they earn no credit in balances)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  peer\tstored\tserved\trefused\t")
	for _, s := range a.Service {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t\n", s.Peer, humanBytes(int64(s.StoredBytes)), humanBytes(int64(s.ServedBytes)), s.Refused)
	}
	tw.Flush()
	for _, s := range a.Service {
		if s.LastRefusal != "" {
			fmt.Fprintf(w, "  refused %s: %s\n", s.Peer, s.LastRefusal)
		}
	}
}
