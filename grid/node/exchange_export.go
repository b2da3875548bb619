package node

import (
	"encoding/binary"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Encoders of /sphere/peers parts for tests that speak the member exchange
// as another node would, hostile ones included (cmd/sphere's hostile-member
// test): they check nothing, so a test can send what a node never would.

// ExchangeMessage encodes one member-exchange message, its 4-byte length
// prefix included (docs/spec/node.md, "Member exchange"): list (may be
// empty), then records (signed peer record envelopes) and delegations as
// given. More than 65535 chunks wrap the count, as a forger's would.
func ExchangeMessage(list []byte, records, delegations [][]byte) []byte {
	out := []byte{exchangeVersion}
	out = binary.BigEndian.AppendUint32(out, uint32(len(list)))
	out = append(out, list...)
	out = appendChunks(out, records)
	out = appendChunks(out, delegations)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(out))), out...)
}

// SignDelegation encodes member's delegation of client on the grid with
// gridKey, as a node sends its own in the member exchange.
func SignDelegation(member crypto.PrivKey, gridKey []byte, client peer.ID) ([]byte, error) {
	return signDelegation(member, GridID(gridKey), client)
}
