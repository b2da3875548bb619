package grid

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/sphere-grid/sphere/caps"
)

// ringKey is a server's position on the permuted ring of one storage index:
// SHA-256("sphere-ring-v1" || si || server id). Every client computes the same
// order for the same file, so a downloader asks the servers an uploader most
// likely used first, and different files spread over different servers.
func ringKey(si caps.StorageIndex, id ServerID) [32]byte {
	h := sha256.New()
	h.Write([]byte("sphere-ring-v1"))
	h.Write(si[:])
	h.Write([]byte(id))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// PermutedRing returns servers sorted by their ring key for si (Tahoe's
// permuted ring). Ties (duplicate ids) keep their input order. The input is
// not modified.
func PermutedRing(si caps.StorageIndex, servers []Server) []Server {
	type ringEntry struct {
		key [32]byte
		s   Server
	}
	es := make([]ringEntry, len(servers))
	for i, s := range servers {
		es[i] = ringEntry{ringKey(si, s.ID()), s}
	}
	sort.SliceStable(es, func(i, j int) bool { return bytes.Compare(es[i].key[:], es[j].key[:]) < 0 })
	out := make([]Server, len(es))
	for i, e := range es {
		out[i] = e.s
	}
	return out
}

// selectServers walks the permuted ring of si and keeps the servers willing
// to take a share of shareSize bytes: a server that implements Statter and
// reports less free quota than shareSize, or whose Stat fails or times out,
// is dropped. Servers without Statter, or whose Stat answers
// errors.ErrUnsupported, are assumed willing (their WriteShare
// may still answer ErrNoSpace, which loses that share only).
func (c *Client) selectServers(ctx context.Context, si caps.StorageIndex, shareSize int64) []Server {
	ring := PermutedRing(si, c.servers)
	ok := make([]bool, len(ring))
	var wg sync.WaitGroup
	for i, s := range ring {
		st, isStatter := s.(Statter)
		if !isStatter {
			ok[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			stat, err := st.Stat(rctx)
			if errors.Is(err, errors.ErrUnsupported) {
				// A wrapper or remote peer whose server cannot say: as if
				// it had no Statter (WriteShare may still refuse).
				ok[i] = true
				return
			}
			if err != nil {
				c.log.Debug("Server stat failed", "server", s.ID().String(), "err", err)
				return
			}
			ok[i] = stat.Quota == 0 || stat.Quota-stat.Used >= shareSize
		}()
	}
	wg.Wait()
	out := ring[:0:0]
	for i, s := range ring {
		if ok[i] {
			out = append(out, s)
		}
	}
	return out
}

// assignShares gives share i to ring[i mod len(ring)]: one share per server
// when there are at least n servers, otherwise round-robin so that every
// server carries as few shares as possible.
func assignShares(ring []Server, n int) []Server {
	if len(ring) == 0 {
		return nil
	}
	out := make([]Server, n)
	for i := range out {
		out[i] = ring[i%len(ring)]
	}
	return out
}

// ErrNotHappy: an upload could not place shares on enough distinct servers
// (the Happy parameter). The error text says how many it reached.
var ErrNotHappy = errors.New("not enough distinct servers hold shares")

func notHappy(have, want int) error {
	return fmt.Errorf("upload: shares on %d distinct servers, need %d: %w", have, want, ErrNotHappy)
}
