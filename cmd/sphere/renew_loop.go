package main

// Keeping the drive alive while its owner is away: the running node renews
// the drive's leases on its own, and every renewal is recorded in the home
// (renew.json) so `sphere status` can say when the leases run out.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/grid"
)

const (
	// driveLeaseTerm is how long a renewed lease lasts: servers date
	// leases themselves, grid.DefaultLeaseTerm from each renewal (then
	// grid.DefaultLeaseGrace before they delete the share).
	driveLeaseTerm = grid.DefaultLeaseTerm
	// renewEvery is how often the node renews the drive's leases.
	renewEvery = 24 * time.Hour
	// renewFirstDelay is how long after start the node first renews, if
	// the last renewal is older than renewEvery.
	renewFirstDelay = 2 * time.Minute
	// renewTimeout bounds one renewal pass.
	renewTimeout = time.Hour
	renewFile    = "renew.json"
)

// renewRecord is renew.json: the last renewal of the drive's leases.
type renewRecord struct {
	Time    time.Time `json:"time"`
	Caps    int       `json:"caps"`
	Renewed int       `json:"renewed"`
	Failed  int       `json:"failed"`
	By      string    `json:"by"` // "node" or "renew"
}

// RunsOut is when the leases of this renewal end.
func (r renewRecord) RunsOut() time.Time { return r.Time.Add(driveLeaseTerm) }

func saveRenewal(h *home.Home, r renewRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := h.Path(renewFile + ".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record renewal: %w", err)
	}
	if err := os.Rename(tmp, h.Path(renewFile)); err != nil {
		return fmt.Errorf("record renewal: %w", err)
	}
	return nil
}

// loadRenewal reads renew.json; nil if the drive was never renewed.
func loadRenewal(h *home.Home) (*renewRecord, error) {
	b, err := os.ReadFile(h.Path(renewFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r renewRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", renewFile, err)
	}
	return &r, nil
}

// renewDrive renews the leases of the drive's tree and of the caps file,
// as `sphere renew` does.
func renewDrive(ctx context.Context, h *home.Home, stderr io.Writer) (renewRecord, error) {
	rec := renewRecord{Time: time.Now().UTC()}
	list, err := readCapsFile(h.CapsFile())
	if err != nil {
		return rec, err
	}
	root, err := rootCapIfAny(h)
	if err != nil {
		return rec, err
	}
	rec.Caps = len(list)
	if len(list) == 0 && root == nil {
		return rec, nil
	}
	c, closeFn, err := openClient(ctx, h)
	if err != nil {
		return rec, err
	}
	defer closeFn()
	for _, cp := range list {
		if err := c.RenewLeases(ctx, cp); err != nil {
			rec.Failed++
			fmt.Fprintf(stderr, "sphere: renew: %v\n", err)
			continue
		}
		rec.Renewed++
	}
	if root != nil {
		w := renewWalk{c: c, stderr: stderr, seen: map[string]bool{}}
		w.walk(ctx, root, 0)
		rec.Caps += w.total
		rec.Renewed += w.renewed
		rec.Failed += w.failed
	}
	return rec, ctx.Err()
}

// renewInterval is renewEvery, or SPHERE_RENEW_EVERY (a Go duration, at
// least one second) for tests and for owners who want it more often.
func renewInterval() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SPHERE_RENEW_EVERY")); err == nil && d >= time.Second {
		return d
	}
	return renewEvery
}

// renewLoop renews the drive's leases every renewInterval until ctx ends,
// one pass at a time, each bounded by renewTimeout. A pass that renews
// nothing it tried is logged and not recorded.
func renewLoop(ctx context.Context, h *home.Home, log *slog.Logger) {
	every := renewInterval()
	wait := min(renewFirstDelay, every)
	if last, err := loadRenewal(h); err == nil && last != nil && time.Since(last.Time) < every {
		wait = max(wait, every-time.Since(last.Time))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The home as it is now: the node may have switched grids
		// (sphere join) since the loop started.
		if fresh, err := home.Open(h.Dir); err == nil {
			h = fresh
		}
		pctx, cancel := context.WithTimeout(ctx, renewTimeout)
		rec, err := renewDrive(pctx, h, io.Discard)
		cancel()
		rec.By = "node"
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("Drive lease renewal failed", "err", err)
		case rec.Caps > 0 && rec.Renewed == 0:
			log.Warn("Drive lease renewal reached no server", "caps", rec.Caps, "failed", rec.Failed)
		default:
			if err := saveRenewal(h, rec); err != nil {
				log.Warn("Drive lease renewal not recorded", "err", err)
			}
			log.Info("Renewed the drive's leases", "caps", rec.Caps, "renewed", rec.Renewed, "failed", rec.Failed,
				"runOut", rec.RunsOut().Format(time.DateOnly))
		}
		t.Reset(every)
	}
}
