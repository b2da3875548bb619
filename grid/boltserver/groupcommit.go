package boltserver

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs bbolt updates so that those arriving while a commit is
// in progress share the next commit (and its fsyncs). Unlike bolt's
// DB.Batch it adds no delay: a lone writer commits at once, and grouping
// happens only while writers are already waiting for the disk.
//
// As with DB.Batch, a function may run more than once (after another
// function in its group failed), so it must reset whatever it records.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []*commitReq
	running bool // a leader is committing
}

// maxGroup bounds the functions in one transaction.
const maxGroup = 256

type commitReq struct {
	fn   func(*bolt.Tx) error
	err  error
	lead bool          // woken to lead the next group, not because done
	wake chan struct{} // one send: done, or lead
}

// update runs fn in a read-write transaction, possibly shared with other
// callers' functions, and returns once that transaction committed (nil) or
// fn's own error.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	r := &commitReq{fn: fn, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.running {
		g.mu.Unlock()
		<-r.wake
		if !r.lead {
			return r.err
		}
		g.mu.Lock()
	}
	g.running = true
	// Lead: commit groups until this caller's request is done, then hand
	// the lead to the first waiter, if any.
	for {
		n := min(len(g.queue), maxGroup)
		group := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		g.commit(group)
		mine := false
		for _, q := range group {
			if q == r {
				mine = true
			} else {
				q.wake <- struct{}{}
			}
		}
		g.mu.Lock()
		if mine {
			break
		}
	}
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		g.running = false
		g.queue = nil
	}
	g.mu.Unlock()
	return r.err
}

// commit runs group in one transaction; if that fails, it runs each
// function in a transaction of its own so that every caller gets its own
// error and one failure does not fail the others.
func (g *groupCommit) commit(group []*commitReq) {
	if len(group) == 1 {
		group[0].err = g.db.Update(group[0].fn)
		return
	}
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, q := range group {
			if err := q.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, q := range group {
			q.err = nil
		}
		return
	}
	for _, q := range group {
		q.err = g.db.Update(q.fn)
	}
}
