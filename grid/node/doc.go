// Package node runs a grid member: a libp2p host with a persistent
// identity that serves its bbolt store(s) over the storage protocol
// (grid/p2p), sweeps expired leases, keeps connected to the grid's other
// members and answers a local control API for the CLI.
//
// A grid is admitted by its 32-byte key: hosts bind their Noise handshakes
// to it (gridPrologue), so hosts without the key cannot connect at all.
// Members find each other from invites (Invite, a short text code) and
// then by exchanging member lists on every new connection
// (PeersProtocol); what they learn is persisted so restarts reconnect. An
// optional Kademlia DHT under the "/sphere" prefix adds discovery for
// larger grids.
//
// The embedded grid of `sphere up` is the same Node with LocalServers:
// each a host of its own on 127.0.0.1 serving one store, so the CLI talks
// to it exactly as to a real grid. Byte formats: docs/spec/node.md.
package node
