// Package caps holds Sphere's capabilities and pure cryptographic formats: key
// derivation, cap strings, encoding a file into erasure-coded shares and back,
// mutable-file versions and directory tables.
//
// Everything here is a function over bytes: no I/O, no network, no clock, and
// randomness only from an io.Reader the caller passes in. That keeps every
// format deterministic, testable with known-answer vectors and fuzzable.
package caps
