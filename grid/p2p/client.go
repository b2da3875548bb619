package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/p2p/internal/wire"
)

// Compile-time checks: a Client offers every ability a remote may have.
var (
	_ grid.Server          = (*Client)(nil)
	_ grid.Statter         = (*Client)(nil)
	_ grid.LeaseCanceller  = (*Client)(nil)
	_ grid.ShareReaderInto = (*Client)(nil)
)

// Client is a grid.Server backed by a remote peer running Serve. Each call
// opens one stream on h to the peer. It is safe for concurrent use and
// holds no resources of its own: drop it when done.
//
// Stat and CancelLease return an error wrapping errors.ErrUnsupported if
// the remote store lacks them.
type Client struct {
	h    host.Host
	id   peer.ID
	opts ClientOptions
	sem  chan struct{}
	log  *slog.Logger
}

// NewClient returns a client for the storage server at peer id, reached
// through h. The host must know how to reach id (h.Peerstore().AddAddrs or
// h.Connect first). ID() is grid.ServerID(id), the raw peer ID bytes, so
// placement is the same as for an in-process server of the same store.
func NewClient(h host.Host, id peer.ID, opts ClientOptions) *Client {
	opts = opts.withDefaults()
	return &Client{
		h: h, id: id, opts: opts,
		sem: make(chan struct{}, opts.MaxConcurrent),
		log: opts.Logger.With(slog.String("peer", shortPeer(id))),
	}
}

// ID returns grid.ServerID(peer id).
func (c *Client) ID() grid.ServerID { return grid.ServerID(c.id) }

// Peer returns the remote peer's ID.
func (c *Client) Peer() peer.ID { return c.id }

// protocols are the protocol IDs the client offers, preferred first.
func (c *Client) protocols() []protocol.ID {
	switch c.opts.Version {
	case wire.V1:
		return []protocol.ID{ProtocolIDV1}
	case wire.V2:
		return []protocol.ID{ProtocolID}
	}
	return []protocol.ID{ProtocolID, ProtocolIDV1}
}

// call is one request on its own stream. It opens the stream (speaking
// the newest version both ends know), sends req in that version, then
// hands the open stream to fn (nil: just read the response), which reads
// the response. The stream is closed if fn succeeds and reset otherwise.
func (c *Client) call(ctx context.Context, req *wire.Request, fn func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error)) (*wire.Response, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()

	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	dl := deadliner{idle: c.opts.IdleTimeout}
	dl.overall, _ = ctx.Deadline()

	// Libp2p knows the peer's protocols from identify, so choosing among
	// two costs no round trip.
	s, err := c.h.NewStream(ctx, c.id, c.protocols()...)
	if err != nil {
		return nil, c.ctxErr(ctx, fmt.Errorf("open stream: %w", err))
	}
	v := uint8(wire.V2)
	if s.Protocol() == ProtocolIDV1 {
		v = wire.V1
	}
	req.Version = v
	bp := chunkPool.Get().(*[]byte)
	msg, err := wire.AppendRequest((*bp)[:0], req)
	if err == nil && len(msg)-wire.RequestHeaderSize > c.opts.MaxMessageSize {
		err = fmt.Errorf("request body of %d bytes exceeds limit %d", len(msg)-wire.RequestHeaderSize, c.opts.MaxMessageSize)
	}
	if err != nil {
		chunkPool.Put(bp)
		_ = s.Reset()
		return nil, err
	}
	// Cancelling ctx unblocks every read and write on s.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	err = writeAll(s, msg, dl)
	chunkPool.Put(bp)
	if err != nil {
		_ = s.Reset()
		return nil, c.ctxErr(ctx, fmt.Errorf("send request: %w", err))
	}
	if req.Method != wire.MethodWriteShare && (req.Method != wire.MethodWriteSlot || v == wire.V1) {
		// The error is ignored: a server that already answered may have
		// closed its read side (QUIC then refuses our FIN); the response
		// decides.
		_ = s.CloseWrite()
	}
	var resp *wire.Response
	if fn != nil {
		resp, err = fn(s, v, dl)
	} else {
		resp, err = readResponse(s, v, req.Method, c.opts.MaxMessageSize, dl)
	}
	if err != nil {
		_ = s.Reset()
		return nil, c.ctxErr(ctx, err)
	}
	_ = s.Close()
	if resp.Status == wire.StatusError {
		return nil, c.remoteErr(resp)
	}
	if resp.Status != wire.StatusOK {
		return nil, fmt.Errorf("%w: unexpected status %d", ErrProtocol, resp.Status)
	}
	return resp, nil
}

// ctxErr prefers the context's error over the stream error it caused.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func (c *Client) remoteErr(r *wire.Response) error {
	return &RemoteError{Peer: c.id, Msg: r.Msg, Err: codeError(r)}
}

// WriteShare implements grid.Server. It reads r only after the server has
// accepted the request (so a full server refuses without consuming r), and
// streams it in chunks; the share is never held whole in memory.
func (c *Client) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	req := &wire.Request{Method: wire.MethodWriteShare, SI: si, Shnum: shnum, Size: size, Lease: lease}
	_, err := c.call(ctx, req, func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error) {
		resp, err := readResponse(s, v, wire.MethodWriteShare, c.opts.MaxMessageSize, dl)
		if err != nil || resp.Status != wire.StatusContinue {
			return resp, err // refused (or accepted) without wanting the data
		}
		return c.sendShare(s, v, wire.MethodWriteShare, dl, size, ctxReader{ctx, r})
	})
	if err != nil {
		return fmt.Errorf("write share %d of %v: %w", shnum, si, err)
	}
	return nil
}

// ctxReader fails reads once ctx has ended, so a write whose context ends
// mid-stream never reaches its commit trailer (the stream's reset on ctx
// end is asynchronous and may come too late).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sendShare streams exactly size bytes of r and the commit trailer, while a
// goroutine waits for the final response (to a request for m) so an early
// refusal stops the copy.
func (c *Client) sendShare(s network.Stream, v uint8, m wire.Method, dl deadliner, size int64, r io.Reader) (*wire.Response, error) {
	type result struct {
		resp *wire.Response
		err  error
	}
	done := make(chan result, 1)
	var answered atomic.Bool
	go func() {
		// The server may take as long as the whole transfer to answer.
		_ = s.SetReadDeadline(dl.overall)
		var h [wire.ResponseHeaderSize]byte
		if _, err := io.ReadFull(s, h[:]); err != nil {
			done <- result{err: fmt.Errorf("read response: %w", err)}
			return
		}
		resp, err := finishResponse(s, h, v, m, c.opts.MaxMessageSize, dl)
		done <- result{resp, err}
		// An answer before the data ended means the server stopped
		// reading: unblock a write waiting for window it will never get.
		answered.Store(true)
		_ = s.SetWriteDeadline(time.Unix(1, 0))
	}()
	wait := func(sendErr error) (*wire.Response, error) {
		if sendErr != nil {
			// The server may have answered (and reset) already; give its
			// answer a moment, else report why sending stopped.
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case res := <-done:
				if res.err == nil { // the server's answer explains the failure
					return res.resp, nil
				}
				return nil, sendErr
			case <-t.C:
				_ = s.Reset()
				<-done // the reset ends the reader at once
				return nil, sendErr
			}
		}
		res := <-done
		return res.resp, res.err
	}

	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	var sent int64
	for sent < size {
		select {
		case res := <-done: // the server answered before the data ended
			return res.resp, res.err
		default:
		}
		n, rerr := r.Read(buf[:min(int64(len(buf)), size-sent)])
		if n > 0 {
			if err := s.SetWriteDeadline(dl.next(n)); err != nil {
				return wait(err)
			}
			if answered.Load() {
				return wait(errors.New("server answered before the share ended"))
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return wait(fmt.Errorf("send share data: %w", err))
			}
			sent += int64(n)
		}
		if rerr == io.EOF && sent < size {
			return wait(fmt.Errorf("data ended after %d of %d bytes: %w", sent, size, io.ErrUnexpectedEOF))
		}
		if rerr != nil && rerr != io.EOF {
			return wait(fmt.Errorf("read share data: %w", rerr))
		}
	}
	// r must end exactly here; a reader with more is the caller's bug and
	// nothing may be stored.
	for i := 0; ; i++ {
		n, rerr := r.Read(buf[:1])
		if n > 0 {
			return wait(fmt.Errorf("data longer than declared size %d", size))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return wait(fmt.Errorf("read share data: %w", rerr))
		}
		if i == 100 {
			return wait(fmt.Errorf("read share data: %w", io.ErrNoProgress))
		}
	}
	buf[0] = trailerCommit
	if err := s.SetWriteDeadline(dl.next(1)); err != nil {
		return wait(err)
	}
	if _, err := s.Write(buf[:1]); err != nil {
		return wait(fmt.Errorf("send trailer: %w", err))
	}
	_ = s.CloseWrite() // as in call: the trailer was written, the response decides
	return wait(nil)
}

// finishResponse reads the body after an already-read header.
func finishResponse(s network.Stream, h [wire.ResponseHeaderSize]byte, v uint8, m wire.Method, maxBody int, dl deadliner) (*wire.Response, error) {
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

// maxPrealloc bounds how much of a ReadShare result is allocated before the
// bytes arrive; beyond it the buffer grows with the data.
const maxPrealloc = 64 << 20

// ReadShare implements grid.Server.
func (c *Client) ReadShare(ctx context.Context, si caps.StorageIndex, shnum int, off, length int64) ([]byte, error) {
	var data []byte
	req := &wire.Request{Method: wire.MethodReadShare, SI: si, Shnum: shnum, Off: off, Length: length}
	_, err := c.call(ctx, req, func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error) {
		resp, err := readResponse(s, v, wire.MethodReadShare, c.opts.MaxMessageSize, dl)
		if err != nil || resp.Status != wire.StatusOK {
			return resp, err
		}
		if resp.DataLen > length {
			return nil, fmt.Errorf("%w: server sent %d bytes for a read of %d", ErrProtocol, resp.DataLen, length)
		}
		if data, err = readData(s, resp.DataLen, dl); err != nil {
			return nil, fmt.Errorf("read share data: %w", err)
		}
		return resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read share %d of %v: %w", shnum, si, err)
	}
	return data, nil
}

// ReadShareInto implements grid.ShareReaderInto: ReadShare of len(buf)
// bytes at off, read into buf (the result is a prefix of buf), so a
// caller that recycles buffers pays no allocation and no first-touch page
// faults per read.
func (c *Client) ReadShareInto(ctx context.Context, si caps.StorageIndex, shnum int, off int64, buf []byte) ([]byte, error) {
	var data []byte
	length := int64(len(buf))
	req := &wire.Request{Method: wire.MethodReadShare, SI: si, Shnum: shnum, Off: off, Length: length}
	_, err := c.call(ctx, req, func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error) {
		resp, err := readResponse(s, v, wire.MethodReadShare, c.opts.MaxMessageSize, dl)
		if err != nil || resp.Status != wire.StatusOK {
			return resp, err
		}
		if resp.DataLen > length {
			return nil, fmt.Errorf("%w: server sent %d bytes for a read of %d", ErrProtocol, resp.DataLen, length)
		}
		data = buf[:resp.DataLen]
		if err := readFull(s, data, dl); err != nil {
			return nil, fmt.Errorf("read share data: %w", err)
		}
		return resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read share %d of %v: %w", shnum, si, err)
	}
	return data, nil
}

// ListShares implements grid.Server.
func (c *Client) ListShares(ctx context.Context, si caps.StorageIndex) ([]grid.ShareInfo, error) {
	resp, err := c.call(ctx, &wire.Request{Method: wire.MethodListShares, SI: si}, nil)
	if err != nil {
		return nil, fmt.Errorf("list shares of %v: %w", si, err)
	}
	if resp.Shares == nil {
		resp.Shares = []grid.ShareInfo{}
	}
	return resp.Shares, nil
}

// AddLease implements grid.Server.
func (c *Client) AddLease(ctx context.Context, si caps.StorageIndex, lease grid.Lease) error {
	if _, err := c.call(ctx, &wire.Request{Method: wire.MethodAddLease, SI: si, Lease: lease}, nil); err != nil {
		return fmt.Errorf("add lease on %v: %w", si, err)
	}
	return nil
}

// ReadSlot implements grid.Server. In version 2 the slot may be up to
// ClientOptions.MaxSlotSize; in version 1 it must fit MaxMessageSize.
func (c *Client) ReadSlot(ctx context.Context, si caps.StorageIndex) ([]grid.SlotShare, error) {
	var slot []grid.SlotShare
	_, err := c.call(ctx, &wire.Request{Method: wire.MethodReadSlot, SI: si}, func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error) {
		resp, err := readResponse(s, v, wire.MethodReadSlot, c.opts.MaxMessageSize, dl)
		if err != nil || resp.Status != wire.StatusOK {
			return resp, err
		}
		if v == wire.V1 {
			slot = resp.Slot
			return resp, nil
		}
		if _, err := wire.SlotDataSize(resp.Heads, c.opts.MaxSlotSize); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		slot = make([]grid.SlotShare, len(resp.Heads))
		for i, h := range resp.Heads {
			data, err := readData(s, h.Len, dl)
			if err != nil {
				return nil, fmt.Errorf("read slot share %d: %w", h.Shnum, err)
			}
			slot[i] = grid.SlotShare{Shnum: h.Shnum, Seq: h.Seq, Data: data}
		}
		return resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read slot %v: %w", si, err)
	}
	if slot == nil {
		slot = []grid.SlotShare{}
	}
	return slot, nil
}

// WriteSlot implements grid.Server. In version 2 the shares may hold up to
// ClientOptions.MaxSlotSize bytes in all and are streamed after the
// request; in version 1 the whole request must fit MaxMessageSize.
func (c *Client) WriteSlot(ctx context.Context, si caps.StorageIndex, we grid.WriteEnabler, writes []grid.SlotShare, lease grid.Lease) error {
	heads := wire.Heads(writes)
	size, err := wire.SlotDataSize(heads, c.opts.MaxSlotSize)
	if err != nil {
		return fmt.Errorf("write slot %v: %w", si, err)
	}
	req := &wire.Request{Method: wire.MethodWriteSlot, SI: si, WE: we, Writes: writes, Heads: heads, Lease: lease}
	_, err = c.call(ctx, req, func(s network.Stream, v uint8, dl deadliner) (*wire.Response, error) {
		if v == wire.V1 {
			return readResponse(s, v, wire.MethodWriteSlot, c.opts.MaxMessageSize, dl)
		}
		rs := make([]io.Reader, len(writes))
		for i, w := range writes {
			rs[i] = bytes.NewReader(w.Data)
		}
		return c.sendShare(s, v, wire.MethodWriteSlot, dl, size, ctxReader{ctx, io.MultiReader(rs...)})
	})
	if err != nil {
		return fmt.Errorf("write slot %v: %w", si, err)
	}
	return nil
}

// Stat implements grid.Statter.
func (c *Client) Stat(ctx context.Context) (grid.Stat, error) {
	resp, err := c.call(ctx, &wire.Request{Method: wire.MethodStat}, nil)
	if err != nil {
		return grid.Stat{}, fmt.Errorf("stat: %w", err)
	}
	return resp.Stat, nil
}

// CancelLease implements grid.LeaseCanceller.
func (c *Client) CancelLease(ctx context.Context, si caps.StorageIndex, cancelSecret [32]byte) error {
	if _, err := c.call(ctx, &wire.Request{Method: wire.MethodCancelLease, SI: si, CancelSecret: cancelSecret}, nil); err != nil {
		return fmt.Errorf("cancel lease on %v: %w", si, err)
	}
	return nil
}
