// Package p2p carries the grid.Server interface over libp2p streams: Serve
// exposes a local store to peers under ProtocolID, and NewClient returns a
// grid.Server whose methods run on a remote peer.
//
// The wire format (docs/spec/storage-protocol.md) is one request per stream:
// a bounded header, then, for WriteShare, ReadShare and (version 2) the
// slot methods, the data as raw runs of declared length, so a 300 MB share
// is streamed and never held whole by the protocol layer, and a slot is
// not bounded by the message size. A Service serves versions 2 and 1; a
// Client speaks the newest the peer has. Errors that callers branch on (grid.ErrNotFound,
// *grid.StaleError, ...) cross the wire as codes and come back as the same
// sentinels, so errors.Is and grid.IsPermanent work on remote servers as on
// local ones.
//
// Hostile peers are bounded four ways: libp2p's resource manager (use
// ResourceManager when building the host); concurrency limits in the
// Service per peer, per source (IP address or IPv6 /64, so throwaway
// identities share one) and in total; a memory budget, per peer, per
// source and in total, that every buffer a request holds is reserved from
// before it is allocated (a ReadShare is answered in pieces of
// ServeOptions.ReadPiece); and deadlines on every read and write, with a
// rate floor (a peer that trickles a byte at a time is cut off after
// ServeOptions.RateGrace). Service.Stats reports what is held.
//
// Wiring, in a node: build the host with libp2p.ResourceManager(rm) where
// rm comes from ResourceManager(Limits{}); call Serve(h, store, opts) to
// offer storage; for each storage peer, add its addresses to h's peerstore
// and keep one NewClient(h, id, opts) for it (the client's MaxConcurrent is
// per Client value, and matches the server's per-peer limit).
package p2p
