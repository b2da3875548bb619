package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// sharesUsage explains --shares, shared by init and put.
const sharesUsage = "encoding K,H,N: any K shares rebuild a file, shares must reach H distinct servers (happy), N shares in all (default 3,7,10; a grid of three: 2,3,3)"

// parseShares parses "K,H,N" into base with K, Happy and N replaced.
func parseShares(s string, base caps.Params) (caps.Params, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return caps.Params{}, usageError{fmt.Errorf("--shares: want K,H,N (e.g. 2,3,3), have %q", s)}
	}
	var v [3]int
	for i, x := range f {
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return caps.Params{}, usageError{fmt.Errorf("--shares: want K,H,N (e.g. 2,3,3), have %q", s)}
		}
		v[i] = n
	}
	p := base
	if p.SegmentSize == 0 {
		p.SegmentSize = caps.DefaultParams().SegmentSize
	}
	p.K, p.Happy, p.N = v[0], v[1], v[2]
	if err := p.Validate(); err != nil {
		return caps.Params{}, usageError{fmt.Errorf("--shares %s: %w", s, err)}
	}
	return p, nil
}

// sharesString prints p as --shares takes it.
func sharesString(p caps.Params) string { return fmt.Sprintf("%d,%d,%d", p.K, p.Happy, p.N) }

// hintNotHappy adds to an error about too few servers the setting that
// changes how many are needed. Errors from a node arrive as text, hence
// the second test.
func hintNotHappy(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, grid.ErrNotHappy) || strings.Contains(err.Error(), grid.ErrNotHappy.Error()) {
		return fmt.Errorf("%w: use --shares K,H,N or `sphere init --shares` (the home's encoding) to need fewer servers", err)
	}
	return err
}
