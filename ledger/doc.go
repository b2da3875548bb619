// Package ledger holds each peer's signed, hash-chained log and what is
// computed from it: lease agreements both parties sign, delivery receipts,
// measured peer performance, tit-for-tat accounting, audits, and learned peer
// recommendations.
//
// A node appends entries to its own log (Store.Append); each entry carries
// its index, the hash of the previous entry, a timestamp, a typed body and
// the author's Ed25519 signature over a canonical encoding prefixed with a
// domain-separation tag (docs/spec/ledger.md). Logs received from peers are
// verified end to end (VerifyChain) and a peer that signs two different
// entries at one index is caught with a self-contained ForkProof.
//
// Accounting counts only what the other party signed: a lease's byte-days
// count when both storer and owner signed its terms, a receipt when its
// receiver signed it. A peer's claims about itself count for nothing.
//
// The package imports nothing else from Sphere; grid asks it whom to trust
// and whom to serve.
package ledger
