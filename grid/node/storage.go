package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/boltserver"
	"github.com/sphere-grid/sphere/grid/p2p"
)

// servedStore is a bbolt store served on a libp2p host.
type servedStore struct {
	*boltserver.Server
	svc *p2p.Service
	log *slog.Logger
}

// openServedStore opens the bbolt store in dir under h's identity and
// serves it on h with the storage protocol, through acct if not nil.
func openServedStore(h host.Host, dir string, quota int64, cfg Config, acct *accounting, log *slog.Logger) (*servedStore, error) {
	s, err := boltserver.Open(dir, boltserver.Options{
		ID: grid.ServerID(h.ID()), Quota: quota, Now: cfg.Now, Grace: cfg.Grace,
		LeaseTerm: cfg.LeaseTerm, SweepEvery: cfg.SweepEvery, Logger: log,
	})
	switch {
	case errors.Is(err, boltserver.ErrInUse):
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	case err != nil:
		// A damaged store must not take the node (and the other stores of
		// the local grid) down: serve a stand-in that answers every call
		// with the failure, and name it in status.
		log.Error("Store failed to open; serving it as failed", "dir", dir, "err", err)
		s = boltserver.NewFailed(dir, grid.ServerID(h.ID()), err)
	}
	var served grid.Server = s
	if acct != nil { // count each peer's bytes, admit new shares by the ledger's policy
		served = accountedStore{Server: s, a: acct}
	}
	svc := p2p.Serve(h, served, p2p.ServeOptions{Logger: log})
	return &servedStore{Server: s, svc: svc, log: log}, nil
}

// run sweeps expired leases until ctx ends.
func (s *servedStore) run(ctx context.Context) {
	if s.Failure() != nil {
		return // a failed store is not swept
	}
	if err := s.Server.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("Lease sweeper stopped", "err", err)
	}
}

// Close stops serving, then closes the store.
func (s *servedStore) Close() error {
	_ = s.svc.Close()
	return s.Server.Close()
}

// memoryStatus reads the heap and sums the protocol's budgets of stores.
func memoryStatus(stores []*servedStore) MemoryStatus {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := MemoryStatus{HeapInuse: ms.HeapInuse}
	for _, s := range stores {
		ps := s.svc.Stats()
		m.Buffered += ps.Buffered
		m.Budget += ps.BufferBudget
		m.Refused += ps.Refused
		m.CutOff += ps.CutOff
		m.ServedStreams += ps.Streams
		m.ServedSources = max(m.ServedSources, ps.Sources)
	}
	return m
}

// newResourceManager bounds what peers can make the host allocate.
func newResourceManager() (network.ResourceManager, error) {
	return p2p.ResourceManager(p2p.Limits{})
}
