package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A log file carries a log for offline verification (`sphere ledger verify
// FILE`): "sphere-ledger-log-v1\n" || author(32) || start u64 ||
// count u32 || count × (len u16 || entry).
const logFileMagic = "sphere-ledger-log-v1\n"

// MaxLogFileEntries bounds a log file.
const MaxLogFileEntries = 1 << 20

// EncodeLogFile writes author's entries from index start as a log file.
func EncodeLogFile(author PeerID, start uint64, raw [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(logFileMagic)
	b.Write(author[:])
	b.Write(binary.BigEndian.AppendUint64(nil, start))
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(raw))))
	for _, r := range raw {
		b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(r))))
		b.Write(r)
	}
	return b.Bytes()
}

// DecodeLogFile parses a log file (entries are not yet verified).
func DecodeLogFile(b []byte) (author PeerID, start uint64, raw [][]byte, err error) {
	if !bytes.HasPrefix(b, []byte(logFileMagic)) {
		return author, 0, nil, fmt.Errorf("log file: not a sphere ledger log (bad magic): %w", ErrFormat)
	}
	b = b[len(logFileMagic):]
	if len(b) < 44 {
		return author, 0, nil, fmt.Errorf("log file: truncated header: %w", ErrFormat)
	}
	copy(author[:], b)
	start = binary.BigEndian.Uint64(b[32:])
	n := binary.BigEndian.Uint32(b[40:])
	if n > MaxLogFileEntries {
		return author, 0, nil, fmt.Errorf("log file: %d entries, max %d: %w", n, MaxLogFileEntries, ErrFormat)
	}
	b = b[44:]
	raw = make([][]byte, 0, min(int(n), len(b)/(headerSize+SigSize)+1))
	for i := range n {
		if len(b) < 2 {
			return author, 0, nil, fmt.Errorf("log file: entry %d truncated: %w", i, ErrFormat)
		}
		l := int(binary.BigEndian.Uint16(b))
		if l > MaxEntrySize || len(b) < 2+l {
			return author, 0, nil, fmt.Errorf("log file: entry %d of %d bytes does not fit: %w", i, l, ErrFormat)
		}
		raw = append(raw, b[2:2+l])
		b = b[2+l:]
	}
	if len(b) != 0 {
		return author, 0, nil, fmt.Errorf("log file: %d trailing bytes: %w", len(b), ErrFormat)
	}
	return author, start, raw, nil
}
