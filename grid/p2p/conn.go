package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// chunkSize is the unit of share data copied per stream write: large enough
// that noise and yamux frame overheads vanish, small enough to renew the
// idle deadline often on slow links.
const chunkSize = 256 << 10

// trailerCommit is the byte that follows a share's data to say the writer
// sent exactly the declared bytes and wants them stored.
const trailerCommit = 0x01

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// deadliner computes per-operation deadlines: each single read or write
// gets idle, none goes past the request's overall deadline, and with a
// rate floor none goes past the time by which the bytes so far (and the
// ones of this operation) must have moved at the floor's rate.
type deadliner struct {
	overall time.Time
	idle    time.Duration
	floor   *rateFloor // nil: no floor
}

// rateFloor is the minimum average rate of one phase of a stream (a
// request arriving, share data moving): after grace, n bytes must have
// moved by start + grace + n/rate. Its clock runs only while an operation
// on the stream is under way, so time the server spends on its own (in the
// store, waiting for budget or a slot) is not charged to the peer.
type rateFloor struct {
	start    time.Time
	grace    time.Duration
	rate     float64   // bytes per second
	n        int64     // bytes moved since start
	idleFrom time.Time // end of the last operation; zero while one runs
}

// restart begins a new phase of the floor (no-op without one).
func (d deadliner) restart() {
	if d.floor != nil {
		d.floor.start, d.floor.n, d.floor.idleFrom = time.Now(), 0, time.Time{}
	}
}

// moved records the end of an operation that moved k bytes.
func (d deadliner) moved(k int) {
	if f := d.floor; f != nil {
		f.n += int64(k)
		f.idleFrom = time.Now()
	}
}

// next is the deadline for an operation, starting now, that must move k
// more bytes.
func (d deadliner) next(k int) time.Time {
	now := time.Now()
	t := now.Add(d.idle)
	if f := d.floor; f != nil {
		if !f.idleFrom.IsZero() { // the gap since the last operation was ours
			f.start = f.start.Add(now.Sub(f.idleFrom))
			f.idleFrom = time.Time{}
		}
		by := f.start.Add(f.grace + time.Duration(float64(f.n+int64(k))/f.rate*float64(time.Second)))
		if by.Before(t) {
			t = by
		}
	}
	if !d.overall.IsZero() && d.overall.Before(t) {
		return d.overall
	}
	return t
}

// readFull reads len(b) bytes from s. Under a rate floor it renews the
// read deadline per read (so a trickle is measured byte by byte). Like
// io.ReadFull it returns io.EOF only if no byte was read.
func readFull(s network.Stream, b []byte, dl deadliner) error {
	if dl.floor == nil { // no trickle to measure: one deadline per MiB
		for got := 0; got < len(b); {
			n := min(len(b)-got, 1<<20)
			if err := s.SetReadDeadline(dl.next(n)); err != nil {
				return err
			}
			k, err := io.ReadFull(s, b[got:got+n])
			if err != nil {
				if err == io.EOF && got > 0 {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			got += k
		}
		return nil
	}
	got := 0
	for got < len(b) {
		if err := s.SetReadDeadline(dl.next(1)); err != nil {
			return err
		}
		n, err := s.Read(b[got:])
		got += n
		dl.moved(n)
		if err != nil {
			if got == len(b) {
				return nil
			}
			if err == io.EOF && got > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// writeAll writes b to s, renewing the write deadline per chunk. Under a
// rate floor the chunks are small, since a write's deadline allows for its
// whole length at the floor's rate.
func writeAll(s network.Stream, b []byte, dl deadliner) error {
	chunk := 1 << 20
	if dl.floor != nil {
		chunk = 64 << 10
	}
	for len(b) > 0 {
		n := min(len(b), chunk)
		if err := s.SetWriteDeadline(dl.next(n)); err != nil {
			return err
		}
		if _, err := s.Write(b[:n]); err != nil {
			return err
		}
		dl.moved(n)
		b = b[n:]
	}
	return nil
}

// readData reads n bytes of share data (n already checked against a
// limit), allocating at most maxPrealloc ahead of the bytes received.
func readData(s network.Stream, n int64, dl deadliner) ([]byte, error) {
	data := make([]byte, min(n, maxPrealloc))
	if err := readFull(s, data, dl); err != nil {
		return nil, err
	}
	for int64(len(data)) < n {
		k := int(min(n-int64(len(data)), maxPrealloc))
		data = slices.Grow(data, k)[:len(data)+k]
		if err := readFull(s, data[len(data)-k:], dl); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// readBody reads a body of n bytes (n already checked against a limit),
// growing the buffer as bytes arrive so a peer that announces a large body
// and sends little costs little memory.
func readBody(s network.Stream, n int, dl deadliner) ([]byte, error) {
	const step = 64 << 10
	b := make([]byte, 0, min(n, step))
	for len(b) < n {
		k := min(n-len(b), max(len(b), step))
		b = append(b, make([]byte, k)...)
		if err := readFull(s, b[len(b)-k:], dl); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// readResponse reads one response header and body to a version v request
// for m.
func readResponse(s network.Stream, v uint8, m wire.Method, maxBody int, dl deadliner) (*wire.Response, error) {
	var h [wire.ResponseHeaderSize]byte
	if err := readFull(s, h[:], dl); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	st, n, err := wire.ParseResponseHeader(h[:], maxBody)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	body, err := readBody(s, n, dl)
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	r, err := wire.DecodeResponseBody(v, m, st, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return r, nil
}

// errorCode classifies a server-side error for the wire.
func errorCode(err error) (wire.Code, *grid.StaleError) {
	var se *grid.StaleError
	switch {
	case errors.As(err, &se):
		return wire.CodeStale, se
	case errors.Is(err, grid.ErrNotFound):
		return wire.CodeNotFound, nil
	case errors.Is(err, grid.ErrNoSpace):
		return wire.CodeNoSpace, nil
	case errors.Is(err, grid.ErrBadWriteEnabler):
		return wire.CodeBadWriteEnabler, nil
	case errors.Is(err, grid.ErrUnauthorized):
		return wire.CodeUnauthorized, nil
	case errors.Is(err, grid.ErrCorrupt):
		return wire.CodeCorrupt, nil
	case errors.Is(err, grid.ErrStale):
		return wire.CodeStale, &grid.StaleError{}
	case errors.Is(err, ErrBusy):
		return wire.CodeBusy, nil
	case errors.Is(err, ErrProtocol):
		return wire.CodeBadRequest, nil
	case errors.Is(err, errors.ErrUnsupported):
		return wire.CodeUnsupported, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		return wire.CodeUnexpectedEOF, nil
	case errors.Is(err, context.DeadlineExceeded):
		return wire.CodeTimeout, nil
	}
	return wire.CodeInternal, nil
}

// codeError is the local error a wire code stands for; nil for codes that
// carry no meaning beyond "it failed" (internal, timeout, unknown).
func codeError(r *wire.Response) error {
	switch r.Code {
	case wire.CodeNotFound:
		return grid.ErrNotFound
	case wire.CodeNoSpace:
		return grid.ErrNoSpace
	case wire.CodeBadWriteEnabler:
		return grid.ErrBadWriteEnabler
	case wire.CodeUnauthorized:
		return grid.ErrUnauthorized
	case wire.CodeCorrupt:
		return grid.ErrCorrupt
	case wire.CodeStale:
		se := r.Stale
		return &se
	case wire.CodeBusy:
		return ErrBusy
	case wire.CodeBadRequest:
		return ErrProtocol
	case wire.CodeUnsupported:
		return errors.ErrUnsupported
	case wire.CodeUnexpectedEOF:
		return io.ErrUnexpectedEOF
	}
	return nil
}
