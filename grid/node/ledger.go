package node

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sphere-grid/sphere/ledger"
)

// LedgerProtocol exchanges ledger heads, entries and fork proofs
// (docs/spec/ledger.md, "Exchange"). One request message and one answer per
// stream, each a u32 length and a ledger.Msg.
const LedgerProtocol = protocol.ID("/sphere/ledger/1")

// Bounds on what a peer can make the ledger service do.
const (
	ledgerStreamTimeout = 10 * time.Second
	ledgerMaxHandlers   = 8                // concurrent inbound requests
	ledgerExchangeEvery = 2 * time.Second  // rounds of head exchange with connected members
	ledgerObserveEvery  = 10 * time.Minute // at most one observation entry per peer per interval
	ledgerMaxRounds     = 8                // want/entries rounds per exchange
	// ledgerMaxHeld bounds the entries of one peer's log we copy, so a
	// peer writing a huge log cannot fill our disk.
	ledgerMaxHeld = 1 << 20
)

// ledgerService keeps the node's own log and verified copies of its
// peers' logs, exchanges them with connected members, and records what it
// measures of each peer as observation entries.
type ledgerService struct {
	store *ledger.Store
	host  host.Host
	log   *slog.Logger
	sem   chan struct{}

	mu    sync.Mutex
	stats map[peer.ID]*peerStats
}

type peerStats struct {
	attempts, ok uint32
	lastLatency  time.Duration
	lastBps      uint64
	lastRecorded time.Time
}

// ledgerFile is where the node keeps its ledger: beside the peers file.
func ledgerKey(priv crypto.PrivKey) (ed25519.PrivateKey, error) {
	if priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("ledger: node identity is %v, want Ed25519", priv.Type())
	}
	raw, err := priv.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger: node identity: %v", err)
	}
	return ed25519.PrivateKey(raw), nil
}

// openLedger opens cfg.LedgerFile (if set) and registers the protocol.
func (n *Node) openLedger() error {
	if n.cfg.LedgerFile == "" {
		return nil
	}
	key, err := ledgerKey(n.cfg.Identity)
	if err != nil {
		return err
	}
	st, err := ledger.Open(n.cfg.LedgerFile, key, ledger.Options{Now: n.cfg.Now})
	if err != nil {
		return err
	}
	n.ledger = &ledgerService{store: st, host: n.host, log: n.log.With("svc", "ledger"), sem: make(chan struct{}, ledgerMaxHandlers), stats: map[peer.ID]*peerStats{}}
	// Only members may speak it, as every other grid protocol.
	gatedHost{Host: n.host, allow: n.members.allowed}.SetStreamHandler(LedgerProtocol, n.ledger.handle)
	return nil
}

// PeerIDToLedger converts a libp2p peer id (Ed25519) to a ledger id.
func PeerIDToLedger(p peer.ID) (ledger.PeerID, error) {
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return ledger.PeerID{}, fmt.Errorf("peer %s: %w", p, err)
	}
	raw, err := pub.Raw()
	if err != nil || pub.Type() != crypto.Ed25519 || len(raw) != 32 {
		return ledger.PeerID{}, fmt.Errorf("peer %s: not an Ed25519 identity", p)
	}
	return ledger.PeerID(raw), nil
}

// LedgerToPeerID converts back, for display.
func LedgerToPeerID(l ledger.PeerID) string {
	pub, err := crypto.UnmarshalEd25519PublicKey(l[:])
	if err != nil {
		return l.String()
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return l.String()
	}
	return id.String()
}

func writeLedgerMsg(w io.Writer, m *ledger.Msg) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readLedgerMsg(r io.Reader) (*ledger.Msg, int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > ledger.MaxMsgSize {
		return nil, 0, fmt.Errorf("ledger message of %d bytes, max %d: %w", n, ledger.MaxMsgSize, ledger.ErrFormat)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, 0, err
	}
	m, err := ledger.DecodeMsg(b)
	return m, int(n) + 4, err
}

// handle answers one request: heads with our own head, a want with the
// entries asked for (of any log we hold), forks by keeping valid proofs.
func (l *ledgerService) handle(s network.Stream) {
	defer s.Close()
	select {
	case l.sem <- struct{}{}:
		defer func() { <-l.sem }()
	default:
		_ = s.Reset() // too busy: the peer retries next round
		return
	}
	_ = s.SetDeadline(time.Now().Add(ledgerStreamTimeout))
	req, _, err := readLedgerMsg(s)
	if err != nil {
		l.log.Debug("Bad ledger request", "from", shortID(s.Conn().RemotePeer()), "err", err)
		_ = s.Reset()
		return
	}
	var resp *ledger.Msg
	switch req.Type {
	case ledger.MsgHeads:
		resp, err = l.heads()
	case ledger.MsgWant:
		ws := req.Wants()
		if len(ws) == 0 {
			err = errors.New("empty want")
			break
		}
		w := ws[0]
		var raw [][]byte
		raw, err = l.store.Raw(w.Author, w.From, int(w.Count))
		resp = ledger.EntriesMsg(w.Author, w.From, fitMsg(raw))
	case ledger.MsgForks:
		for _, it := range req.Items {
			if p, perr := ledger.DecodeForkProof(it); perr == nil {
				if isNew, _ := l.store.AddForkProof(p); isNew {
					l.log.Warn("Fork proof received", "from", shortID(s.Conn().RemotePeer()))
				}
			}
		}
		resp = &ledger.Msg{Type: ledger.MsgForks}
	default:
		err = fmt.Errorf("unexpected message type %d", req.Type)
	}
	if err != nil {
		_ = s.Reset()
		return
	}
	_ = writeLedgerMsg(s, resp)
}

// fitMsg trims entries to what fits in one message.
func fitMsg(raw [][]byte) [][]byte {
	size := 64
	for i, r := range raw {
		size += 2 + len(r)
		if size > ledger.MaxMsgSize || i+1 >= ledger.MaxMsgItems {
			return raw[:i]
		}
	}
	return raw
}

// heads returns the last entry of each log we hold, our own first, so a
// peer can compare its copies of third parties' logs with ours: an author
// that showed us and it different entries is caught at once.
func (l *ledgerService) heads() (*ledger.Msg, error) {
	hs, err := l.store.Heads()
	if err != nil {
		return nil, err
	}
	m := &ledger.Msg{Type: ledger.MsgHeads}
	size := 64
	for _, h := range hs {
		if h.Length == 0 {
			continue
		}
		raw, err := l.store.Raw(h.Author, h.Length-1, 1)
		if err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("head of %v: %v", h.Author.Short(), err)
		}
		if size += 2 + len(raw[0]); size > ledger.MaxMsgSize || len(m.Items) == ledger.MaxMsgItems {
			break
		}
		m.Items = append(m.Items, raw[0])
	}
	return m, nil
}

// compareHead checks a peer's copy of a third party's head against ours:
// two different entries the author signed at one index are a fork proof.
// When the peer's copy is longer, it asks for the entry at our last index.
func (l *ledgerService) compareHead(ctx context.Context, p peer.ID, e *ledger.Entry) {
	held, err := l.store.Head(e.Author)
	if err != nil || held.Length == 0 || e.Author == l.store.Self() {
		return
	}
	theirs := e.Encode()
	idx := e.Index
	if idx >= held.Length {
		idx = held.Length - 1
		m, _, err := l.roundTrip(ctx, p, ledger.WantMsg([]ledger.Want{{Author: e.Author, From: idx, Count: 1}}))
		if err != nil || m.Type != ledger.MsgEntries {
			return
		}
		if _, _, raw := m.EntriesOf(); len(raw) == 1 {
			theirs = raw[0]
		} else {
			return
		}
	}
	ours, err := l.store.Raw(e.Author, idx, 1)
	if err != nil || len(ours) != 1 {
		return
	}
	if pr, err := ledger.NewForkProof(ours[0], theirs); err == nil {
		if isNew, _ := l.store.AddForkProof(pr); isNew {
			l.log.Warn("Peer told two stories: fork proof kept", "author", e.Author, "index", idx, "via", shortID(p))
		}
	}
}

// roundTrip sends one request to p and reads the answer.
func (l *ledgerService) roundTrip(ctx context.Context, p peer.ID, req *ledger.Msg) (*ledger.Msg, int, error) {
	ctx, cancel := context.WithTimeout(ctx, ledgerStreamTimeout)
	defer cancel()
	s, err := l.host.NewStream(ctx, p, LedgerProtocol)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(ledgerStreamTimeout))
	if err := writeLedgerMsg(s, req); err != nil {
		_ = s.Reset()
		return nil, 0, err
	}
	_ = s.CloseWrite()
	m, n, err := readLedgerMsg(s)
	if err != nil {
		_ = s.Reset()
	}
	return m, n, err
}

// exchange compares heads with p, fetches and verifies what of p's log we
// lack, passes on our fork proofs, and records what it measured of p.
func (l *ledgerService) exchange(ctx context.Context, p peer.ID) error {
	author, err := PeerIDToLedger(p)
	if err != nil {
		return err
	}
	start := time.Now()
	heads, bytes, err := l.roundTrip(ctx, p, &ledger.Msg{Type: ledger.MsgHeads})
	rtt := time.Since(start)
	l.note(ctx, p, author, err == nil, rtt, 0)
	if err != nil {
		return fmt.Errorf("ledger heads from %s: %w", shortID(p), err)
	}
	var own *ledger.Entry
	for _, it := range heads.Items {
		e, err := ledger.DecodeEntry(it)
		if err != nil {
			continue
		}
		if e.Author == author {
			own = e
		} else {
			l.compareHead(ctx, p, e)
		}
	}
	if e := own; e != nil {
		for round := 0; round < ledgerMaxRounds; round++ {
			held, err := l.store.Head(author)
			if err != nil {
				return err
			}
			if held.Length > e.Index || held.Length >= ledgerMaxHeld {
				break
			}
			count := min(e.Index+1-held.Length, ledger.MaxWant)
			m, nb, err := l.roundTrip(ctx, p, ledger.WantMsg([]ledger.Want{{Author: author, From: held.Length, Count: uint16(count)}}))
			if err != nil {
				return fmt.Errorf("ledger entries from %s: %w", shortID(p), err)
			}
			bytes += nb
			if m.Type != ledger.MsgEntries {
				return fmt.Errorf("ledger entries from %s: answer of type %d", shortID(p), m.Type)
			}
			a, from, raw := m.EntriesOf()
			if a != author || len(raw) == 0 {
				return fmt.Errorf("ledger entries from %s: wrong log or none", shortID(p))
			}
			if _, err := l.store.Import(author, from, raw); err != nil {
				if errors.Is(err, ledger.ErrFork) {
					l.log.Warn("Peer forked its log", "peer", shortID(p), "err", err)
				}
				return fmt.Errorf("ledger of %s: %w", shortID(p), err)
			}
		}
	}
	if el := time.Since(start); el > 0 && bytes > 0 {
		l.note(ctx, p, author, true, rtt, uint64(float64(bytes)/el.Seconds()))
	}
	if proofs, err := l.store.ForkProofs(); err == nil && len(proofs) > 0 {
		m := &ledger.Msg{Type: ledger.MsgForks}
		for _, pr := range proofs[:min(len(proofs), ledger.MaxMsgItems)] {
			m.Items = append(m.Items, pr.Encode())
		}
		_, _, _ = l.roundTrip(ctx, p, m)
	}
	return nil
}

// note updates what we measured of p and, at most every
// ledgerObserveEvery, records it as an observation entry in our log.
func (l *ledgerService) note(ctx context.Context, p peer.ID, subject ledger.PeerID, ok bool, rtt time.Duration, bps uint64) {
	l.mu.Lock()
	st := l.stats[p]
	if st == nil {
		st = &peerStats{}
		l.stats[p] = st
	}
	if bps == 0 {
		st.attempts++
		if ok {
			st.ok++
			st.lastLatency = rtt
		}
	} else {
		st.lastBps = bps
	}
	due := st.ok > 0 && st.lastBps > 0 && time.Since(st.lastRecorded) >= ledgerObserveEvery
	obs := &ledger.Observation{Subject: subject, Samples: st.attempts, LatencyMicro: uint32(min(st.lastLatency.Microseconds(), 1<<31)),
		Throughput: st.lastBps, Availability: uint16(10000 * uint64(st.ok) / uint64(max(1, st.attempts)))}
	if due {
		st.lastRecorded = time.Now()
	}
	l.mu.Unlock()
	if !due || subject == l.store.Self() {
		return
	}
	if _, err := l.store.Append(obs); err != nil {
		l.log.Warn("Recording observation failed", "peer", shortID(p), "err", err)
	}
}

// run exchanges with every connected member each round until ctx ends.
func (l *ledgerService) run(ctx context.Context, members func() []peer.AddrInfo) {
	t := time.NewTicker(ledgerExchangeEvery)
	defer t.Stop()
	for {
		for _, ai := range members() {
			if ctx.Err() != nil {
				return
			}
			if l.host.Network().Connectedness(ai.ID) != network.Connected {
				continue
			}
			if err := l.exchange(ctx, ai.ID); err != nil {
				l.log.Debug("Ledger exchange failed", "peer", shortID(ai.ID), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// LedgerVerifyRequest is the body of POST /v1/ledger/verify.
type LedgerVerifyRequest struct {
	Peer string `json:"peer"` // libp2p peer id or ledger id
}

// LedgerVerifyReply answers it.
type LedgerVerifyReply struct {
	Peer     string `json:"peer"`
	Entries  uint64 `json:"entries"`
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
	Index    uint64 `json:"failedIndex,omitempty"`
	Fetched  bool   `json:"fetched"` // whether a fresh copy came from the peer first
}

// ledgerRoutes adds the ledger's control API.
func (n *Node) ledgerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ledger", func(w http.ResponseWriter, r *http.Request) {
		if n.ledger == nil {
			replyErr(w, http.StatusNotFound, errors.New("this node keeps no ledger"))
			return
		}
		rep, err := n.ledger.store.Report(n.cfg.Now(), n.acct.policy, LedgerToPeerID)
		if err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, LedgerReply{Report: rep, Accounting: n.acct.status()}, nil)
	})
	mux.HandleFunc("POST /v1/ledger/verify", func(w http.ResponseWriter, r *http.Request) {
		if n.ledger == nil {
			replyErr(w, http.StatusNotFound, errors.New("this node keeps no ledger"))
			return
		}
		var req LedgerVerifyRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, maxControlBody)).Decode(&req); err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("verify: bad request: %w", err))
			return
		}
		rep, code, err := n.ledgerVerify(r.Context(), req.Peer)
		if err != nil {
			replyErr(w, code, err)
			return
		}
		reply(w, rep, nil)
	})
}

// ledgerVerify fetches the peer's log if connected, then verifies the copy
// held from its first entry.
func (n *Node) ledgerVerify(ctx context.Context, who string) (LedgerVerifyReply, int, error) {
	var author ledger.PeerID
	pid, err := peer.Decode(who)
	if err == nil {
		author, err = PeerIDToLedger(pid)
	} else {
		author, err = ledger.ParsePeerID(who)
	}
	if err != nil {
		return LedgerVerifyReply{}, http.StatusBadRequest, fmt.Errorf("verify: %q is not a peer id", who)
	}
	rep := LedgerVerifyReply{Peer: LedgerToPeerID(author)}
	if author == n.ledger.store.Self() {
		rep.Peer = n.host.ID().String()
	} else if pid != "" && n.host.Network().Connectedness(pid) == network.Connected {
		rep.Fetched = n.ledger.exchange(ctx, pid) == nil
	}
	h, err := n.ledger.store.Head(author)
	if err != nil {
		return rep, http.StatusInternalServerError, err
	}
	if h.Length == 0 {
		return rep, http.StatusNotFound, fmt.Errorf("verify: no log of %s held (not a peer this node has worked with)", rep.Peer)
	}
	var prev ledger.Hash
	var pt time.Time
	for from := uint64(0); from < h.Length; {
		raw, err := n.ledger.store.Raw(author, from, 4096)
		if err != nil {
			return rep, http.StatusInternalServerError, err
		}
		if len(raw) == 0 {
			break
		}
		es, verr := ledger.VerifyChain(author, from, prev, pt, raw, ledger.ChainOptions{})
		rep.Entries += uint64(len(es))
		if verr != nil {
			var ve *ledger.VerifyError
			if errors.As(verr, &ve) {
				rep.Index = ve.Index
			}
			rep.Error = verr.Error()
			return rep, http.StatusOK, nil
		}
		last := es[len(es)-1]
		prev, pt = last.Hash(), last.Time
		from += uint64(len(es))
	}
	rep.Verified = rep.Entries == h.Length
	if !rep.Verified {
		rep.Error = fmt.Sprintf("held %d entries but the head says %d", rep.Entries, h.Length)
	}
	return rep, http.StatusOK, nil
}

// LedgerReply is GET /v1/ledger: the ledger's report plus the node's
// accounting (the same as in Status).
type LedgerReply struct {
	*ledger.Report
	Accounting Accounting `json:"accounting"`
}

// Ledger asks the node for its ledger report.
func (c *Control) Ledger(ctx context.Context) (*LedgerReply, error) {
	r := &LedgerReply{Report: &ledger.Report{}}
	err := c.call(ctx, http.MethodGet, "/v1/ledger", nil, r)
	return r, err
}

// LedgerVerify asks the node to verify a peer's log end to end.
func (c *Control) LedgerVerify(ctx context.Context, peerID string) (LedgerVerifyReply, error) {
	var r LedgerVerifyReply
	err := c.call(ctx, http.MethodPost, "/v1/ledger/verify", LedgerVerifyRequest{Peer: peerID}, &r)
	return r, err
}
