package grid

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/sphere-grid/sphere/caps"
)

// CheckOptions choose how deep Check looks.
type CheckOptions struct {
	// Verify downloads every block of every share and checks its hash;
	// without it Check only lists shares and verifies their headers and
	// trailers (a few small reads per share).
	Verify bool
	// Repair re-creates missing or corrupt shares from k good ones. It needs
	// a read cap.
	Repair bool
}

// Share states in a CheckReport.
const (
	ShareOK         = "ok"         // verified (header and trailer; every block with Verify)
	ShareCorrupt    = "corrupt"    // failed a hash or format check: the server holds bad bytes
	ShareUnreadable = "unreadable" // the server did not deliver (error, timeout): state unknown
)

// ShareStatus is one share on one server.
type ShareStatus struct {
	Shnum   int    `json:"shnum"`
	Server  string `json:"server"`
	Status  string `json:"status"`
	Problem string `json:"problem,omitempty"`
}

// ServerProblem is a server that could not be asked.
type ServerProblem struct {
	Server  string `json:"server"`
	Problem string `json:"problem"`
}

// CheckReport says where the shares of one immutable file are and whether
// they are healthy. It marshals to JSON as is.
type CheckReport struct {
	StorageIndex string `json:"storageIndex,omitempty"`
	Literal      bool   `json:"literal,omitempty"` // a lit cap: the data is in the cap, nothing to check
	K            int    `json:"k"`
	N            int    `json:"n"`
	Size         uint64 `json:"size"`
	Verified     bool   `json:"verified"` // every block was downloaded and hashed
	// Healthy: each of the n shares has at least one good copy.
	Healthy     bool `json:"healthy"`
	GoodShares  int  `json:"goodShares"`  // distinct share numbers with a good copy
	GoodServers int  `json:"goodServers"` // distinct servers holding a good share
	// Recoverable: at least k distinct good shares, so the file can be read
	// and repaired.
	Recoverable        bool            `json:"recoverable"`
	Shares             []ShareStatus   `json:"shares"`
	MissingShares      []int           `json:"missingShares"`
	CorruptServers     []string        `json:"corruptServers"`
	UnreachableServers []ServerProblem `json:"unreachableServers,omitempty"`
	Repair             *RepairReport   `json:"repair,omitempty"`
}

// RepairReport is what a repair did.
type RepairReport struct {
	Created []ShareStatus `json:"created"` // shares written (Status "ok") or attempted
	Error   string        `json:"error,omitempty"`
	After   *CheckReport  `json:"after,omitempty"` // a fresh check once repair finished
}

// String renders the report for people.
func (r *CheckReport) String() string {
	var b strings.Builder
	if r.Literal {
		fmt.Fprintf(&b, "literal file (%d bytes, stored in the cap): healthy\n", r.Size)
		return b.String()
	}
	how := "checked"
	if r.Verified {
		how = "verified"
	}
	health := "NOT healthy"
	if r.Healthy {
		health = "healthy"
	} else if !r.Recoverable {
		health = "NOT healthy and NOT recoverable"
	}
	fmt.Fprintf(&b, "storage index %s (k=%d n=%d size=%d): %s, %s\n", r.StorageIndex, r.K, r.N, r.Size, health, how)
	fmt.Fprintf(&b, "  %d of %d shares good, on %d distinct servers\n", r.GoodShares, r.N, r.GoodServers)
	for _, s := range r.Shares {
		fmt.Fprintf(&b, "  share %d on %s: %s", s.Shnum, s.Server, s.Status)
		if s.Problem != "" {
			fmt.Fprintf(&b, " (%s)", s.Problem)
		}
		b.WriteByte('\n')
	}
	if len(r.MissingShares) > 0 {
		fmt.Fprintf(&b, "  missing shares: %v\n", r.MissingShares)
	}
	if len(r.CorruptServers) > 0 {
		fmt.Fprintf(&b, "  servers holding corrupt shares: %s\n", strings.Join(r.CorruptServers, ", "))
	}
	for _, p := range r.UnreachableServers {
		fmt.Fprintf(&b, "  server %s unreachable: %s\n", p.Server, p.Problem)
	}
	if rp := r.Repair; rp != nil {
		fmt.Fprintf(&b, "  repair: created %d shares", countOK(rp.Created))
		if rp.Error != "" {
			fmt.Fprintf(&b, ", error: %s", rp.Error)
		}
		b.WriteByte('\n')
		for _, s := range rp.Created {
			fmt.Fprintf(&b, "    share %d on %s: %s\n", s.Shnum, s.Server, s.Status)
		}
		if rp.After != nil {
			for _, line := range strings.Split(strings.TrimRight(rp.After.String(), "\n"), "\n") {
				fmt.Fprintf(&b, "  after repair: %s\n", strings.TrimSpace(line))
			}
		}
	}
	return b.String()
}

func countOK(ss []ShareStatus) int {
	n := 0
	for _, s := range ss {
		if s.Status == ShareOK {
			n++
		}
	}
	return n
}

// Check reports where the shares of the file cp names are and whether they
// are healthy; with opts.Verify it downloads and hashes every block, with
// opts.Repair it re-creates missing or corrupt shares on servers that lack
// them (ring order) and attaches a fresh check of the result. cp may be a
// read cap, a verify cap (repair then rebuilds shares from the ciphertext,
// never seeing plaintext) or a lit cap (always healthy). An
// unhealthy file is a report, not an error; errors are for bad arguments and
// a cancelled ctx.
func (c *Client) Check(ctx context.Context, cp caps.Cap, opts CheckOptions) (*CheckReport, error) {
	if lit, ok := asLit(cp); ok {
		return &CheckReport{Literal: true, Size: uint64(len(lit.Data)), Healthy: true, Recoverable: true,
			Verified: opts.Verify, Shares: []ShareStatus{}, MissingShares: []int{}, CorruptServers: []string{}}, nil
	}
	vc, ok := asVerify(cp)
	if !ok {
		return nil, fmt.Errorf("check: a %q cap is not an immutable file's cap", kindOf(cp))
	}
	if vc.K < 1 || vc.N < vc.K || vc.N > 256 || vc.Size > 1<<62 {
		return nil, fmt.Errorf("check: cap has k=%d n=%d size=%d: %w", vc.K, vc.N, vc.Size, caps.ErrFormat)
	}
	rc, readable := asCHK(cp)
	// Verify through the decoder: repair decodes with it, and a decoder
	// only trusts segment hashes from trailers it verified. A verify cap
	// gets a keyless one: repair rebuilds shares from ciphertext.
	dec := caps.NewKeylessDecoder(vc)
	if readable {
		dec = caps.NewDecoder(rc)
	}
	v := dec.Verifier
	rep, lrs := c.check(ctx, vc, v, opts.Verify)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check %v: %w", vc.SI, err)
	}
	if opts.Repair && !rep.Healthy {
		if readable {
			rep.Repair = c.repair(ctx, rc, dec, rep, lrs)
		} else {
			rep.Repair = c.repairKeyless(ctx, vc, dec, rep, lrs)
		}
		after, _ := c.check(ctx, vc, caps.NewVerifier(vc), opts.Verify)
		rep.Repair.After = after
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("check %v: %w", vc.SI, err)
		}
	}
	return rep, nil
}

// check builds the report; the returned listings carry each share's final
// state (loc.err == nil only for good shares).
func (c *Client) check(ctx context.Context, vc caps.CHKVerifyCap, v *caps.Verifier, verify bool) (*CheckReport, []listResult) {
	lrs := c.locate(ctx, vc.SI, v, vc.K, vc.N, vc.Size)
	if verify {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for i := range lrs {
			for j := range lrs[i].shares {
				loc := &lrs[i].shares[j]
				if loc.err != nil {
					continue
				}
				g.Go(func() error {
					loc.err = c.verifyBlocks(gctx, vc.SI, loc)
					return nil
				})
			}
		}
		g.Wait()
	}
	rep := &CheckReport{
		StorageIndex: vc.SI.String(), K: vc.K, N: vc.N, Size: vc.Size, Verified: verify,
		Shares: []ShareStatus{}, MissingShares: []int{}, CorruptServers: []string{},
	}
	good := make(map[int]bool)
	goodServers := make(map[ServerID]bool)
	for _, lr := range lrs {
		if lr.err != nil {
			rep.UnreachableServers = append(rep.UnreachableServers, ServerProblem{lr.srv.ID().String(), lr.err.Error()})
			continue
		}
		corrupt := false
		for _, loc := range lr.shares {
			st := ShareStatus{Shnum: loc.shnum, Server: lr.srv.ID().String(), Status: ShareOK}
			switch {
			case loc.err == nil:
				good[loc.shnum] = true
				goodServers[lr.srv.ID()] = true
			case isCorruption(loc.err):
				st.Status, st.Problem = ShareCorrupt, loc.err.Error()
				corrupt = true
			default:
				st.Status, st.Problem = ShareUnreadable, loc.err.Error()
			}
			rep.Shares = append(rep.Shares, st)
		}
		if corrupt {
			rep.CorruptServers = append(rep.CorruptServers, lr.srv.ID().String())
		}
	}
	slices.SortStableFunc(rep.Shares, func(a, b ShareStatus) int { return a.Shnum - b.Shnum })
	for shnum := range vc.N {
		if !good[shnum] {
			rep.MissingShares = append(rep.MissingShares, shnum)
		}
	}
	rep.GoodShares = len(good)
	rep.GoodServers = len(goodServers)
	rep.Healthy = len(good) == vc.N
	rep.Recoverable = len(good) >= vc.K
	return rep, lrs
}

// isCorruption tells bad bytes (the server's fault, for sure) from failures
// to deliver (which may be the network's).
func isCorruption(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, caps.ErrIntegrity) || errors.Is(err, caps.ErrFormat)
}

// verifyChunk is the most share bytes one verify request reads.
const verifyChunk = 4 << 20

// verifyBlocks reads every block of a share whose trailer is verified, a few
// MiB per request, and checks each against the share's proof.
func (c *Client) verifyBlocks(ctx context.Context, si caps.StorageIndex, loc *shareLoc) error {
	l := loc.layout
	nseg := l.NumSegments()
	for first := 0; first < nseg; {
		if err := ctx.Err(); err != nil {
			return err
		}
		base := l.BlockOffset(first)
		last := first
		for last+1 < nseg && l.BlockOffset(last+1)+int64(l.BlockSize(last+1))-base <= verifyChunk {
			last++
		}
		end := l.BlockOffset(last) + int64(l.BlockSize(last))
		if end < base {
			return fmt.Errorf("share %d: layout has blocks out of order: %w", loc.shnum, ErrCorrupt)
		}
		buf, err := c.readShare(ctx, loc.srv, si, loc.shnum, base, end-base)
		if err != nil {
			return fmt.Errorf("share %d: %w", loc.shnum, err)
		}
		for seg := first; seg <= last; seg++ {
			off := l.BlockOffset(seg) - base
			if off < 0 || off+int64(l.BlockSize(seg)) > int64(len(buf)) {
				return fmt.Errorf("share %d: layout has blocks out of order: %w", loc.shnum, ErrCorrupt)
			}
			if err := loc.proof.CheckBlock(seg, buf[off:off+int64(l.BlockSize(seg))]); err != nil {
				return err // says "share N segment S: ..." and wraps caps.ErrIntegrity
			}
		}
		first = last + 1
	}
	return nil
}

// repair re-creates the missing shares of rep: it decodes every segment from
// good shares, re-encodes it (the encoder is deterministic for one key and
// params, so share i comes out byte for byte as uploaded) and streams the
// missing shares to servers that hold no good share yet, in ring order, then
// servers with the fewest. Servers that served corrupt shares or could not
// be reached get none. dec must be the decoder whose verifier checked lrs.
func (c *Client) repair(ctx context.Context, rc caps.CHKCap, dec *caps.Decoder, rep *CheckReport, lrs []listResult) *RepairReport {
	out := &RepairReport{Created: []ShareStatus{}}
	fail := func(err error) *RepairReport {
		out.Error = err.Error()
		c.log.Warn("Repair failed", "si", rc.VerifyCap().SI, "err", err)
		return out
	}
	f, err := c.newFile(ctx, rc.VerifyCap(), dec, lrs)
	if err != nil {
		return fail(fmt.Errorf("repair: %w", err))
	}
	defer f.Close()
	l := f.l
	p := caps.Params{K: rc.K, N: rc.N, Happy: min(max(c.params.Happy, rc.K), rc.N), SegmentSize: l.SegmentSize}
	enc, err := caps.NewEncoder(rc.Key, p, rc.Size)
	if err != nil {
		return fail(fmt.Errorf("repair: %w", err))
	}
	si := enc.StorageIndex()
	if si != f.si || enc.Layout() != l {
		return fail(errors.New("repair: re-encoding does not reproduce the stored layout"))
	}

	targets, spares := c.repairTargets(ctx, si, l.ShareSize(), rep.MissingShares, lrs)
	if len(targets) == 0 {
		return fail(errors.New("repair: no server can take the missing shares"))
	}
	sw := c.startShareWriters(ctx, si, l.ShareSize(), enc.ShareHeader, targets, spares)
	for shnum := range targets {
		sw.send(shnum, enc.ShareHeader(shnum))
	}
	load := func(ctx context.Context, seg int, _ []byte) ([]byte, error) { return f.fetchSegment(ctx, seg) }
	emit := func(seg int, _ []byte, blocks [][]byte, ref *segBuf) error {
		if err := sw.sendBlocks(l, seg, blocks, ref); err != nil {
			return err
		}
		if sw.aliveServers() == 0 {
			return errors.New("every target server failed")
		}
		return nil
	}
	if err := encodeSegments(ctx, l, enc, load, emit); err != nil {
		sw.abort(err)
		return fail(fmt.Errorf("repair: %w", err))
	}
	trailers, capv, err := enc.Finish()
	if err == nil && capv != rc {
		err = errors.New("re-encoding produced a different cap")
	}
	if err == nil {
		err = sw.finish(trailers)
	}
	if err != nil {
		sw.abort(err)
		return fail(fmt.Errorf("repair: %w", err))
	}
	return c.repairPlaced(out, sw, rep.MissingShares)
}

// repairPlaced fills out with where the writers of sw placed the missing
// shares.
func (c *Client) repairPlaced(out *RepairReport, sw *shareWriters, missing []int) *RepairReport {
	var failed []string
	for _, res := range sw.collect() {
		st := ShareStatus{Shnum: res.shnum, Server: res.srv.ID().String(), Status: ShareOK}
		if res.err != nil {
			st.Status, st.Problem = ShareUnreadable, res.err.Error()
			failed = append(failed, fmt.Sprintf("share %d: %v", res.shnum, res.err))
		}
		out.Created = append(out.Created, st)
	}
	slices.SortFunc(out.Created, func(a, b ShareStatus) int { return a.Shnum - b.Shnum })
	if len(out.Created) < len(missing) || len(failed) > 0 {
		msg := fmt.Sprintf("repair: placed %d of %d missing shares", countOK(out.Created), len(missing))
		if len(failed) > 0 {
			msg += ": " + strings.Join(failed, "; ")
		}
		out.Error = msg
	}
	return out
}

// repairKeyless is repair with a verify cap: each segment's k blocks are
// reconstructed into the ciphertext, checked against the verified segment
// hash, and erasure-coded again into the missing blocks; the rebuilt
// trailers must give the cap's root before the last bytes go out. No key,
// no plaintext. dec must be the keyless decoder whose verifier checked lrs.
func (c *Client) repairKeyless(ctx context.Context, vc caps.CHKVerifyCap, dec *caps.Decoder, rep *CheckReport, lrs []listResult) *RepairReport {
	out := &RepairReport{Created: []ShareStatus{}}
	fail := func(err error) *RepairReport {
		out.Error = err.Error()
		c.log.Warn("Repair failed", "si", vc.SI, "err", err)
		return out
	}
	f, err := c.newFile(ctx, vc, dec, lrs)
	if err != nil {
		return fail(fmt.Errorf("repair: %w", err))
	}
	defer f.Close()
	rb, err := dec.NewRebuilder()
	if err != nil {
		return fail(fmt.Errorf("repair: %w", err))
	}
	l := rb.Layout()
	if l != f.l {
		return fail(errors.New("repair: verified layouts disagree"))
	}
	targets, spares := c.repairTargets(ctx, vc.SI, l.ShareSize(), rep.MissingShares, lrs)
	if len(targets) == 0 {
		return fail(errors.New("repair: no server can take the missing shares"))
	}
	sw := c.startShareWriters(ctx, vc.SI, l.ShareSize(), rb.ShareHeader, targets, spares)
	for shnum := range targets {
		sw.send(shnum, rb.ShareHeader(shnum))
	}
	for seg := range l.NumSegments() {
		blocks, err := f.rebuildSegment(ctx, rb, seg)
		if err == nil {
			err = sw.sendBlocks(l, seg, blocks, nil)
		}
		if err == nil && sw.aliveServers() == 0 {
			err = errors.New("every target server failed")
		}
		if err != nil {
			sw.abort(err)
			return fail(fmt.Errorf("repair: %w", err))
		}
	}
	trailers, err := rb.Finish()
	if err == nil {
		err = sw.finish(trailers)
	}
	if err != nil {
		sw.abort(err)
		return fail(fmt.Errorf("repair: %w", err))
	}
	return c.repairPlaced(out, sw, rep.MissingShares)
}

// rebuildSegment fetches k blocks of seg and rebuilds all n; a bad data
// block drops its share and the segment is fetched again without it (as
// fetchSegmentInto does).
func (f *File) rebuildSegment(ctx context.Context, rb *caps.Rebuilder, seg int) ([][]byte, error) {
	for attempt := 0; ; attempt++ {
		blocks, srcs, err := f.fetchBlocks(ctx, seg)
		if err != nil {
			return nil, err
		}
		all, err := rb.Rebuild(seg, blocks)
		if err == nil {
			f.recycle(blocks, srcs)
			return all, nil
		}
		rerr := fmt.Errorf("rebuild segment %d of %v: %w", seg, f.si, err)
		if !errors.Is(err, caps.ErrIntegrity) || attempt >= f.l.N {
			return nil, rerr
		}
		if f.checkDataBlocks(seg, blocks, srcs) == 0 {
			return nil, rerr
		}
	}
}

// repairTargets picks a server for each missing share: among servers that
// answered, held nothing corrupt and have room, in ring order, the one with
// the fewest good shares of this file and no copy (good or bad) of that
// share number — a server keeps an existing share of the same size, so a
// corrupt one cannot be overwritten in place.
func (c *Client) repairTargets(ctx context.Context, si caps.StorageIndex, shareSize int64, missing []int, lrs []listResult) (targets map[int]Server, spares []Server) {
	bad := make(map[ServerID]bool)
	load := make(map[ServerID]int)
	holds := make(map[ServerID]map[int]bool)
	for _, lr := range lrs {
		id := lr.srv.ID()
		if lr.err != nil {
			bad[id] = true
			continue
		}
		holds[id] = make(map[int]bool)
		for _, loc := range lr.shares {
			holds[id][loc.shnum] = true
			switch {
			case loc.err == nil:
				load[id]++
			case isCorruption(loc.err):
				bad[id] = true
			}
		}
	}
	var ring []Server
	for _, s := range c.selectServers(ctx, si, shareSize) {
		if !bad[s.ID()] {
			ring = append(ring, s)
		}
	}
	targets = make(map[int]Server, len(missing))
	for _, shnum := range missing {
		var pick Server
		for _, s := range ring {
			if holds[s.ID()][shnum] {
				continue
			}
			if pick == nil || load[s.ID()] < load[pick.ID()] {
				pick = s
			}
		}
		if pick == nil {
			c.log.Warn("No server for a repaired share", "si", si, "shnum", shnum)
			continue
		}
		targets[shnum] = pick
		load[pick.ID()]++
	}
	return targets, ring
}

// RenewLeases adds or extends this client's lease on every server holding
// shares of the file cp names (read or verify cap; lit caps need none). It
// fails only if no server holding shares accepted the lease.
func (c *Client) RenewLeases(ctx context.Context, cp caps.Cap) error {
	if _, ok := asLit(cp); ok {
		return nil
	}
	vc, ok := asVerify(cp)
	if !ok {
		return fmt.Errorf("renew leases: a %q cap is not an immutable file's cap", kindOf(cp))
	}
	si := vc.SI
	type result struct {
		held bool
		err  error
	}
	res := make([]result, len(c.servers))
	g, gctx := errgroup.WithContext(ctx)
	for i, srv := range c.servers {
		g.Go(func() error {
			rctx, cancel := context.WithTimeout(gctx, c.timeout)
			defer cancel()
			err := srv.AddLease(rctx, si, c.lease(si, srv.ID()))
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				res[i] = result{true, fmt.Errorf("%v: %w", srv.ID(), err)}
				c.log.Warn("Lease renewal failed", "si", si, "server", srv.ID().String(), "err", err)
			default:
				res[i] = result{held: true}
			}
			return nil
		})
	}
	g.Wait()
	renewed, held := 0, 0
	var errs []error
	for _, r := range res {
		if r.held {
			held++
			if r.err == nil {
				renewed++
			} else {
				errs = append(errs, r.err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("renew leases on %v: %w", si, err)
	}
	if renewed == 0 {
		if held == 0 {
			return fmt.Errorf("renew leases on %v: no server holds shares: %w", si, ErrNotFound)
		}
		return fmt.Errorf("renew leases on %v: %w", si, errors.Join(errs...))
	}
	return nil
}
