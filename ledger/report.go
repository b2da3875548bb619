package ledger

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Report is what `sphere ledger` shows: the node's own log, the logs it
// holds copies of, balances and fork proofs.
type Report struct {
	Self     string         `json:"self"`
	Length   uint64         `json:"length"`
	Head     string         `json:"head"` // hex hash of the last entry
	Kinds    map[string]int `json:"kinds"`
	Logs     []HeldLog      `json:"logs"`
	Balances []Balance      `json:"balances"`
	Forks    []ForkSummary  `json:"forks"`
	Recent   []EntrySummary `json:"recent"`
}

// HeldLog is a peer's log held here, verified end to end on import.
type HeldLog struct {
	Author string    `json:"author"`
	Length uint64    `json:"length"`
	Head   string    `json:"head"`
	Time   time.Time `json:"time"`
}

// ForkSummary names a convicted author.
type ForkSummary struct {
	Author string `json:"author"`
	Index  uint64 `json:"index"`
	Proof  string `json:"proof"` // hex, checkable offline
}

// EntrySummary is one entry in words.
type EntrySummary struct {
	Index uint64    `json:"index"`
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	What  string    `json:"what"`
}

// Describe says what an entry records.
func Describe(e *Entry) string {
	switch b := e.Body.(type) {
	case *Lease:
		return fmt.Sprintf("%v stores %d bytes for %v until %v", b.Terms.Storer.Short(), b.Terms.Bytes, b.Terms.Owner.Short(), time.Unix(b.Terms.Until, 0).UTC().Format(time.DateOnly))
	case *End:
		return fmt.Sprintf("lease %x between %v and %v ended (reason %d)", b.ID[:4], b.Storer.Short(), b.Owner.Short(), b.Reason)
	case *Receipt:
		return fmt.Sprintf("%v delivered %d bytes to %v (op %d)", b.Terms.Provider.Short(), b.Terms.Bytes, b.Terms.Receiver.Short(), b.Terms.Op)
	case *Observation:
		return fmt.Sprintf("%v: %d samples, latency %d µs, %d B/s, availability %.2f%%", b.Subject.Short(), b.Samples, b.LatencyMicro, b.Throughput, float64(b.Availability)/100)
	}
	return "?"
}

// maxReportScan bounds how many entries a report reads per log.
const maxReportScan = 100000

// Report summarises the store. Names are rendered by name (e.g. as libp2p
// peer ids); nil renders PeerID.String.
func (s *Store) Report(now time.Time, policy Policy, name func(PeerID) string) (*Report, error) {
	if name == nil {
		name = PeerID.String
	}
	heads, err := s.Heads()
	if err != nil {
		return nil, err
	}
	r := &Report{Self: name(s.self), Kinds: map[string]int{}, Logs: []HeldLog{}, Balances: []Balance{}, Forks: []ForkSummary{}, Recent: []EntrySummary{}}
	acc := NewAccounts(s.self)
	for _, h := range heads {
		if h.Author == s.self {
			r.Length, r.Head = h.Length, hex.EncodeToString(h.Hash[:])
		} else {
			r.Logs = append(r.Logs, HeldLog{Author: name(h.Author), Length: h.Length, Head: hex.EncodeToString(h.Hash[:]), Time: h.Time})
		}
		for from := uint64(0); from < min(h.Length, maxReportScan); from += 1024 {
			es, err := s.Entries(h.Author, from, 1024)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				acc.Add(e)
				if h.Author == s.self {
					r.Kinds[e.Kind().String()]++
					if e.Index+20 >= h.Length {
						r.Recent = append(r.Recent, EntrySummary{e.Index, e.Time, e.Kind().String(), Describe(e)})
					}
				}
			}
		}
	}
	ps, err := s.ForkProofs()
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		who, idx, err := p.Verify()
		if err != nil {
			continue
		}
		acc.Convict(who)
		r.Forks = append(r.Forks, ForkSummary{name(who), idx, hex.EncodeToString(p.Encode())})
	}
	r.Balances = acc.Balances(now, policy.Window)
	return r, nil
}

// Accounts scans every log held (up to maxReportScan entries each) and the
// fork proofs into fresh Accounts: balances from countersigned entries,
// convictions from valid proofs. It reads the whole store: callers on a
// hot path cache the result.
func (s *Store) Accounts() (*Accounts, error) {
	heads, err := s.Heads()
	if err != nil {
		return nil, err
	}
	acc := NewAccounts(s.self)
	for _, h := range heads {
		for from := uint64(0); from < min(h.Length, maxReportScan); from += 1024 {
			es, err := s.Entries(h.Author, from, 1024)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				acc.Add(e)
			}
		}
	}
	ps, err := s.ForkProofs()
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if who, _, err := p.Verify(); err == nil {
			acc.Convict(who)
		}
	}
	return acc, nil
}
