package ledger

import (
	"encoding/binary"
	"fmt"
)

// Exchange messages (docs/spec/ledger.md, "Exchange"): peers send each other
// the heads of the logs they hold, ask for missing ranges, answer with
// entries, and pass on fork proofs. Every message is bounded in items and
// bytes so a hostile peer cannot make us allocate much.

// MsgType is the type of an exchange message.
type MsgType uint8

// Message types.
const (
	MsgHeads   MsgType = 1 // items: the last entry of each log the sender holds
	MsgWant    MsgType = 2 // items: author(32) || from u64 || count u16
	MsgEntries MsgType = 3 // item 0: author(32) || start u64; then encoded entries
	MsgForks   MsgType = 4 // items: encoded fork proofs
)

// Limits on one message.
const (
	MaxMsgItems = 1024
	MaxMsgSize  = 1 << 20
	// MaxWant bounds the entries one Want item may ask for.
	MaxWant = 1024
)

// Msg is a decoded exchange message: a type and its raw items.
type Msg struct {
	Type  MsgType
	Items [][]byte
}

// Encode returns the wire form: version(1) || type(1) || count u16 ||
// count × (len u16 || item).
func (m *Msg) Encode() ([]byte, error) {
	if len(m.Items) > MaxMsgItems {
		return nil, fmt.Errorf("message of %d items, max %d: %w", len(m.Items), MaxMsgItems, ErrFormat)
	}
	b := []byte{Version, byte(m.Type)}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Items)))
	for _, it := range m.Items {
		if len(it) > 0xffff {
			return nil, fmt.Errorf("message item of %d bytes: %w", len(it), ErrFormat)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(it)))
		b = append(b, it...)
	}
	if len(b) > MaxMsgSize {
		return nil, fmt.Errorf("message of %d bytes, max %d: %w", len(b), MaxMsgSize, ErrFormat)
	}
	return b, nil
}

// DecodeMsg parses a message and checks each item's shape for its type
// (entries and proofs are decoded, not yet verified).
func DecodeMsg(b []byte) (*Msg, error) {
	if len(b) > MaxMsgSize {
		return nil, fmt.Errorf("message of %d bytes, max %d: %w", len(b), MaxMsgSize, ErrFormat)
	}
	if len(b) < 4 || b[0] != Version {
		return nil, fmt.Errorf("message: bad header: %w", ErrFormat)
	}
	m := &Msg{Type: MsgType(b[1])}
	if m.Type < MsgHeads || m.Type > MsgForks {
		return nil, fmt.Errorf("message: unknown type %d: %w", b[1], ErrFormat)
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > MaxMsgItems {
		return nil, fmt.Errorf("message of %d items, max %d: %w", n, MaxMsgItems, ErrFormat)
	}
	rest := b[4:]
	m.Items = make([][]byte, 0, n)
	for i := range n {
		if len(rest) < 2 {
			return nil, fmt.Errorf("message item %d: truncated: %w", i, ErrFormat)
		}
		l := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+l {
			return nil, fmt.Errorf("message item %d: want %d bytes, have %d: %w", i, l, len(rest)-2, ErrFormat)
		}
		m.Items = append(m.Items, rest[2:2+l])
		rest = rest[2+l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("message: %d trailing bytes: %w", len(rest), ErrFormat)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Msg) check() error {
	for i, it := range m.Items {
		var err error
		switch {
		case m.Type == MsgHeads, m.Type == MsgEntries && i > 0:
			_, err = DecodeEntry(it)
		case m.Type == MsgWant:
			_, err = decodeWant(it)
		case m.Type == MsgEntries:
			if len(it) != 40 {
				err = fmt.Errorf("entries header: want 40 bytes, have %d: %w", len(it), ErrFormat)
			}
		case m.Type == MsgForks:
			_, err = DecodeForkProof(it)
		}
		if err != nil {
			return fmt.Errorf("message item %d: %w", i, err)
		}
	}
	if m.Type == MsgEntries && len(m.Items) == 0 {
		return fmt.Errorf("entries message without header: %w", ErrFormat)
	}
	return nil
}

// Want asks for Count entries of Author's log from index From.
type Want struct {
	Author PeerID
	From   uint64
	Count  uint16
}

func (w Want) encode() []byte {
	b := append([]byte(nil), w.Author[:]...)
	b = binary.BigEndian.AppendUint64(b, w.From)
	return binary.BigEndian.AppendUint16(b, w.Count)
}

func decodeWant(b []byte) (Want, error) {
	var w Want
	if len(b) != 42 {
		return w, fmt.Errorf("want: need 42 bytes, have %d: %w", len(b), ErrFormat)
	}
	copy(w.Author[:], b)
	w.From = binary.BigEndian.Uint64(b[32:])
	w.Count = binary.BigEndian.Uint16(b[40:])
	if w.Count == 0 || w.Count > MaxWant {
		return w, fmt.Errorf("want: count %d not in 1..%d: %w", w.Count, MaxWant, ErrFormat)
	}
	return w, nil
}

// Wants returns a Want message's requests.
func (m *Msg) Wants() []Want {
	out := make([]Want, 0, len(m.Items))
	for _, it := range m.Items {
		if w, err := decodeWant(it); err == nil {
			out = append(out, w)
		}
	}
	return out
}

// WantMsg builds a Want message.
func WantMsg(ws []Want) *Msg {
	m := &Msg{Type: MsgWant}
	for _, w := range ws {
		m.Items = append(m.Items, w.encode())
	}
	return m
}

// EntriesMsg builds an Entries message for author's entries from start.
func EntriesMsg(author PeerID, start uint64, raw [][]byte) *Msg {
	hdr := append([]byte(nil), author[:]...)
	return &Msg{Type: MsgEntries, Items: append([][]byte{binary.BigEndian.AppendUint64(hdr, start)}, raw...)}
}

// EntriesOf returns the author, start and entries of an Entries message.
func (m *Msg) EntriesOf() (PeerID, uint64, [][]byte) {
	return PeerID(m.Items[0][:32]), binary.BigEndian.Uint64(m.Items[0][32:]), m.Items[1:]
}
