package memserver_test

import (
	"testing"
	"time"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
	"github.com/sphere-grid/sphere/grid/memserver"
)

func TestConformance(t *testing.T) {
	gridtest.TestServer(t, func(t *testing.T) grid.Server { return memserver.New("mem-test") })
}

func TestQuota(t *testing.T) {
	gridtest.TestQuota(t, func(t *testing.T, quota int64) grid.Server {
		return memserver.New("mem-quota", memserver.WithQuota(quota))
	})
}

func TestSweep(t *testing.T) {
	gridtest.TestSweep(t, func(t *testing.T, now func() time.Time, grace time.Duration) (grid.Server, gridtest.Sweeper) {
		s := memserver.New("mem-sweep", memserver.WithClock(now), memserver.WithGrace(grace))
		return s, s
	})
}

func TestExpiringSoon(t *testing.T) {
	gridtest.TestExpiringSoon(t, func(t *testing.T, now func() time.Time) grid.Server {
		return memserver.New("mem-exp", memserver.WithClock(now))
	})
}

func TestFailed(t *testing.T) {
	gridtest.TestFailed(t, func(t *testing.T) gridtest.Failing { return memserver.New("mem-failed") })
}

func TestLeaseFlood(t *testing.T) {
	const quota = 1 << 20
	gridtest.TestLeaseFlood(t, memserver.New("mem-flood", memserver.WithQuota(quota)), quota)
}
