// Package ledger will hold each peer's signed, hash-chained log: lease
// agreements, accounting (tit-for-tat balances), measured peer performance
// and the recommendations built from them. Not implemented yet: the grid
// currently trusts every member of a private grid equally.
package ledger
