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
// Policy decides admission (tit for tat with a newcomer allowance);
// Challenge and CheckAudit catch a storer that dropped a share; Recommender
// fits a weighted ALS factorization of who measured whom (learn.go) with
// trust bounded by first-hand experience, and Select blends its scores with
// the permuted ring under per-/24 and per-cluster caps. ledger/sim runs all
// of it on a simulated grid (`sphere sim`).
//
// The package imports nothing else from Sphere but caps; grid asks it whom
// to trust and whom to serve.
package ledger
