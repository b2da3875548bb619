package grid

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sphere-grid/sphere/caps"
)

// CancelLeases drops this client's lease on the shares of the file or
// directory cp names (any cap but lit) on every server that can cancel
// leases (LeaseCanceller). Shares left with no lease are deleted by their
// servers, so a caller that means to keep a file adds its other lease
// first (as `sphere recovery --rotate` does before dropping the old
// secret's leases). It returns how many servers dropped a lease and how
// many could not be asked (no LeaseCanceller, or the call failed);
// servers that hold nothing or no lease of this client are neither.
func (c *Client) CancelLeases(ctx context.Context, cp caps.Cap) (cancelled, failed int, err error) {
	if _, ok := asLit(cp); ok {
		return 0, 0, nil
	}
	var si caps.StorageIndex
	if vc, ok := asVerify(cp); ok {
		si = vc.SI
	} else if mv, ok := caps.MutableVerifyCapOf(cp); ok {
		si = mv.SI
	} else {
		return 0, 0, fmt.Errorf("cancel leases: unsupported cap kind %q", kindOf(cp))
	}
	errs := make([]error, len(c.servers))
	var wg sync.WaitGroup
	for i, s := range c.servers {
		lc, ok := s.(LeaseCanceller)
		if !ok {
			errs[i] = errors.ErrUnsupported
			continue
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			errs[i] = lc.CancelLease(rctx, si, c.lease(si, s.ID()).CancelSecret)
		})
	}
	wg.Wait()
	for i, e := range errs {
		switch {
		case e == nil:
			cancelled++
		case errors.Is(e, ErrNotFound), errors.Is(e, ErrUnauthorized):
		default:
			failed++
			c.log.Debug("Lease cancel failed", "si", si, "server", c.servers[i].ID().String(), "err", e)
		}
	}
	if err := ctx.Err(); err != nil {
		return cancelled, failed, fmt.Errorf("cancel leases on %v: %w", si, err)
	}
	return cancelled, failed, nil
}
