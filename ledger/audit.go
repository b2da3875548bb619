package ledger

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/sphere-grid/sphere/caps"
)

// Audits: to catch a storer that acknowledged a lease and then dropped the
// share, the owner asks for one random block with the share's header and
// trailer and checks it against the root in the verify cap. The storer
// cannot answer without holding the block; a random segment per audit makes
// keeping a few blocks useless.

// Challenge asks a storer for one block of one share. The segment is
// Pick mod the share's segment count, fixed once the header is known.
type Challenge struct {
	SI    caps.StorageIndex
	Shnum int
	Pick  uint64
}

// NewChallenge draws a challenge for share shnum of the file vc names.
func NewChallenge(rnd io.Reader, vc caps.CHKVerifyCap, shnum int) (Challenge, error) {
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return Challenge{}, fmt.Errorf("audit challenge: %w", err)
	}
	return Challenge{SI: vc.SI, Shnum: shnum, Pick: binary.BigEndian.Uint64(b[:])}, nil
}

// Segment returns the segment challenged in a share of layout l.
func (c Challenge) Segment(l caps.Layout) int { return int(c.Pick % uint64(l.NumSegments())) }

// Ranges returns the byte ranges of a share the storer must send: the
// header, the block and the trailer.
func (c Challenge) Ranges(l caps.Layout) (blockOff int64, blockLen int, trailerOff int64, trailerLen int) {
	seg := c.Segment(l)
	return l.BlockOffset(seg), l.BlockSize(seg), l.TrailerOffset(), l.TrailerSize()
}

// CheckAudit verifies a storer's answer: the share's header, its trailer and
// the challenged block must all be genuine for the file vc names. The error
// wraps caps.ErrIntegrity or caps.ErrFormat when the storer failed.
func CheckAudit(vc caps.CHKVerifyCap, c Challenge, header, trailer, block []byte) error {
	if c.SI != vc.SI {
		return fmt.Errorf("audit: challenge is for another file")
	}
	v := caps.NewVerifier(vc)
	l, err := v.ParseHeader(c.Shnum, header)
	if err != nil {
		return fmt.Errorf("audit share %d: %w", c.Shnum, err)
	}
	proof, err := v.VerifyTrailer(c.Shnum, l, trailer)
	if err != nil {
		return fmt.Errorf("audit share %d: %w", c.Shnum, err)
	}
	if err := proof.CheckBlock(c.Segment(l), block); err != nil {
		return fmt.Errorf("audit share %d: %w", c.Shnum, err)
	}
	return nil
}
