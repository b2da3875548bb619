// Package p2p carries the grid.Server interface over libp2p streams: Serve
// exposes a local store to peers under ProtocolID, and NewClient returns a
// grid.Server whose methods run on a remote peer.
//
// The wire format (docs/spec/storage-protocol.md) is one request per stream:
// a bounded header, then, for WriteShare and ReadShare, the share bytes as a
// raw run of declared length, so a 300 MB share is streamed and never held
// whole by the protocol layer. Errors that callers branch on (grid.ErrNotFound,
// *grid.StaleError, ...) cross the wire as codes and come back as the same
// sentinels, so errors.Is and grid.IsPermanent work on remote servers as on
// local ones.
//
// Hostile peers are bounded three ways: libp2p's resource manager (use
// ResourceManager when building the host), per-peer and total concurrency
// limits in the Service, and deadlines on every read and write (a peer that
// opens streams and sends nothing is cut off after ServeOptions.IdleTimeout).
//
// Wiring, in a node: build the host with libp2p.ResourceManager(rm) where
// rm comes from ResourceManager(Limits{}); call Serve(h, store, opts) to
// offer storage; for each storage peer, add its addresses to h's peerstore
// and keep one NewClient(h, id, opts) for it (the client's MaxConcurrent is
// per Client value, and matches the server's per-peer limit).
package p2p
