package recovery

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every recovery code's text.
const Prefix = "sphere-recovery-"

// Alphabet is bech32's: lower-case letters and digits without 1, b, i
// and o, which are easily confused with l, 6/8, l/j and 0.
const Alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

const (
	groupData = 4             // data characters per group
	groupLen  = groupData + 1 // plus one check character
	groupBits = groupData * 5
	hashLen   = 5 // bytes of the whole-code checksum
	// TextVersion is the version in the header group; it names the
	// payload version and the text layout after the header.
	TextVersion = 1
	ctxHash     = "sphere recovery code v1"
	// MaxTextLen bounds the input Parse looks at.
	MaxTextLen = 8192
)

var charValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range []byte(Alphabet) {
		t[c] = int8(i)
	}
	return t
}()

// GF(32) with the primitive polynomial x^5 + x^2 + 1: alpha = x = 2.
func gfMulAlpha(v byte) byte {
	v <<= 1
	if v&32 != 0 {
		v ^= 0x25
	}
	return v
}

// alphaPow returns alpha^e.
func alphaPow(e int) byte {
	v := byte(1)
	for range e % 31 {
		v = gfMulAlpha(v)
	}
	return v
}

func gfMul(a, b byte) byte {
	var p byte
	for range 5 {
		if b&1 != 0 {
			p ^= a
		}
		a = gfMulAlpha(a)
		b >>= 1
	}
	return p
}

// checkChar is group g's check value over its data values d:
// alpha^(g mod 31) + sum_i alpha^(i+1) * d_i in GF(32). With the check
// character weighted 1, the five positions of a group have distinct
// non-zero weights, so any one changed character and any two swapped
// characters of a group change the sum.
func checkChar(g int, d []byte) byte {
	c := alphaPow(g)
	for i, v := range d {
		c ^= gfMul(alphaPow(i+1), v)
	}
	return c
}

func checksum(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(ctxHash))
	h.Write(payload)
	return h.Sum(nil)[:hashLen]
}

// Encode returns the text of c: Prefix, then groups of five characters
// separated by '-'.
func Encode(c *Code) (string, error) {
	p, err := c.MarshalBinary()
	if err != nil {
		return "", err
	}
	return encodePayload(p)
}

func encodePayload(p []byte) (string, error) {
	if len(p) > MaxPayload {
		return "", fmt.Errorf("recovery code: payload of %d bytes, want at most %d: %w", len(p), MaxPayload, ErrFormat)
	}
	header := []byte{TextVersion, byte(len(p) >> 10 & 31), byte(len(p) >> 5 & 31), byte(len(p) & 31)}
	body := bitsTo5(append(append([]byte(nil), p...), checksum(p)...))
	for len(body)%groupData != 0 {
		body = append(body, 0)
	}
	data := append(header, body...)
	var sb strings.Builder
	sb.WriteString(Prefix)
	for g := 0; g*groupData < len(data); g++ {
		if g > 0 {
			sb.WriteByte('-')
		}
		d := data[g*groupData : (g+1)*groupData]
		for _, v := range d {
			sb.WriteByte(Alphabet[v])
		}
		sb.WriteByte(Alphabet[checkChar(g, d)])
	}
	return sb.String(), nil
}

// bitsTo5 splits bytes into 5-bit values, big-endian, the last one padded
// with zero bits.
func bitsTo5(b []byte) []byte {
	out := make([]byte, 0, (len(b)*8+4)/5)
	var acc, n uint
	for _, x := range b {
		acc = acc<<8 | uint(x)
		n += 8
		for n >= 5 {
			n -= 5
			out = append(out, byte(acc>>n&31))
		}
	}
	if n > 0 {
		out = append(out, byte(acc<<(5-n)&31))
	}
	return out
}

// Lines splits a code's groups into lines of perLine groups, for paper.
// Parse accepts the lines joined by any white space.
func Lines(code string, perLine int) []string {
	groups := strings.Split(strings.TrimPrefix(code, Prefix), "-")
	var out []string
	for i := 0; i < len(groups); i += perLine {
		line := strings.Join(groups[i:min(i+perLine, len(groups))], "-")
		if i == 0 {
			line = Prefix + line
		}
		out = append(out, line)
	}
	return out
}

// PosError is a refused code with where the mistake is. Pos and Group
// are 1-based; 0 means not known.
type PosError struct {
	Pos   int    // character position in the text as given
	Group int    // group number (the header group is 1)
	Msg   string // what is wrong
	Hint  string // a likely correction, if one was found
}

func (e *PosError) Error() string {
	s := "recovery code: "
	switch {
	case e.Group > 0 && e.Pos > 0:
		s += fmt.Sprintf("group %d (at character %d): ", e.Group, e.Pos)
	case e.Pos > 0:
		s += fmt.Sprintf("character %d: ", e.Pos)
	case e.Group > 0:
		s += fmt.Sprintf("group %d: ", e.Group)
	}
	s += e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrFormat) true.
func (e *PosError) Unwrap() error { return ErrFormat }

// confusable maps characters outside the alphabet to what was likely
// meant, for hints only (a code is never corrected silently).
var confusable = map[byte]byte{'o': '0', 'i': 'l', '1': 'l', 'b': '6'}

// isSep reports characters that may separate groups.
func isSep(c byte) bool { return c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Parse reads a code's text. It accepts upper case, and any mix of '-'
// and white space between groups; it refuses everything else with an
// error that names the character or group at fault.
func Parse(s string) (*Code, error) {
	if len(s) > MaxTextLen {
		return nil, &PosError{Msg: fmt.Sprintf("%d characters, want at most %d", len(s), MaxTextLen)}
	}
	s = strings.ToLower(s)
	start := 0
	for start < len(s) && isSep(s[start]) {
		start++
	}
	if strings.HasPrefix(s[start:], Prefix) {
		start += len(Prefix)
	} else if strings.HasPrefix(s[start:], "sphere:") {
		return nil, &PosError{Msg: "this is a capability, not a recovery code (a code starts with " + Prefix + ")"}
	}
	// vals are the code's characters as values; pos their 1-based
	// positions in s; tokens the runs between separators.
	var vals []byte
	var pos []int
	type token struct{ from, n int }
	var tokens []token
	inTok := false
	for i := start; i < len(s); i++ {
		c := s[i]
		if isSep(c) {
			inTok = false
			continue
		}
		v := charValue[c]
		if v < 0 {
			e := &PosError{Pos: i + 1, Msg: fmt.Sprintf("%q is not a character of recovery codes", c)}
			if m, ok := confusable[c]; ok {
				e.Hint = fmt.Sprintf("did you mean %q?", m)
			}
			return nil, e
		}
		if !inTok {
			tokens = append(tokens, token{from: len(vals)})
			inTok = true
		}
		tokens[len(tokens)-1].n++
		vals = append(vals, byte(v))
		pos = append(pos, i+1)
	}
	if len(vals) == 0 {
		return nil, &PosError{Msg: "empty"}
	}
	// With separators, a run that is not whole groups shows where a
	// character went missing or came extra.
	if len(tokens) > 1 {
		group := 1
		for _, t := range tokens {
			if t.n%groupLen != 0 {
				g := group
				if t.n >= 2*groupLen {
					g += t.n / groupLen
				}
				e := &PosError{Group: g, Pos: pos[t.from]}
				switch {
				case t.n < groupLen:
					e.Msg = fmt.Sprintf("%d characters between separators, want %d: one is missing", t.n, groupLen)
				case t.n < 2*groupLen:
					e.Msg = fmt.Sprintf("%d characters between separators, want %d: one is extra", t.n, groupLen)
				default:
					e.Msg = fmt.Sprintf("%d characters between separators, want a multiple of %d: one is missing or extra", t.n, groupLen)
				}
				return nil, e
			}
			group += t.n / groupLen
		}
	}
	c, err := decodeVals(vals, pos)
	if err == nil {
		return c, nil
	}
	var pe *PosError
	if errors.As(err, &pe) && pe.Group > 0 && pe.Msg == msgGroupCheck {
		if h := suggest(vals, pos, pe.Group-1); h != "" {
			pe.Hint = h
		}
	}
	return nil, err
}

const msgGroupCheck = "fails its check: a character in it is wrong, or one is missing or extra here or just before"

// decodeVals checks groups, header, length, padding and checksum, then
// parses the payload.
func decodeVals(vals []byte, pos []int) (*Code, error) {
	full := len(vals) / groupLen
	for g := 0; g < full; g++ {
		grp := vals[g*groupLen : (g+1)*groupLen]
		if checkChar(g, grp[:groupData]) != grp[groupData] {
			return nil, &PosError{Group: g + 1, Pos: pos[g*groupLen], Msg: msgGroupCheck}
		}
		if g == 0 && grp[0] > TextVersion {
			return nil, fmt.Errorf("recovery code: made by a newer Sphere (code version %d, this Sphere reads %d): upgrade Sphere: %w",
				grp[0], TextVersion, ErrNewerVersion)
		}
	}
	if r := len(vals) % groupLen; r != 0 {
		return nil, &PosError{Group: full + 1, Pos: pos[full*groupLen],
			Msg: fmt.Sprintf("the last group has %d characters, want %d: one or more is missing or extra", r, groupLen)}
	}
	if vals[0] != TextVersion {
		return nil, &PosError{Group: 1, Pos: pos[0], Msg: fmt.Sprintf("code version %d, want %d", vals[0], TextVersion)}
	}
	n := int(vals[1])<<10 | int(vals[2])<<5 | int(vals[3])
	if n > MaxPayload {
		return nil, &PosError{Group: 1, Pos: pos[0], Msg: fmt.Sprintf("says %d bytes, want at most %d", n, MaxPayload)}
	}
	bodyChars := ((n+hashLen)*8 + 4) / 5
	wantGroups := 1 + (bodyChars+groupData-1)/groupData
	if full != wantGroups {
		e := &PosError{Msg: fmt.Sprintf("%d groups, want %d: ", full, wantGroups)}
		if full < wantGroups {
			e.Msg += "groups are missing at the end"
		} else {
			e.Group, e.Pos = wantGroups+1, pos[wantGroups*groupLen]
			e.Msg += "the code goes on after its end"
		}
		return nil, e
	}
	var body []byte
	for g := 1; g < full; g++ {
		body = append(body, vals[g*groupLen:g*groupLen+groupData]...)
	}
	raw, ok := from5(body, n+hashLen)
	if !ok {
		return nil, &PosError{Group: full, Pos: pos[(full-1)*groupLen], Msg: "padding bits are not zero: a character in it is wrong"}
	}
	p, sum := raw[:n], raw[n:]
	if string(checksum(p)) != string(sum) {
		return nil, &PosError{Msg: "the whole-code checksum does not match: two or more characters in one group are wrong, or groups are swapped or repeated"}
	}
	var c Code
	if err := c.UnmarshalBinary(p); err != nil {
		return nil, err
	}
	return &c, nil
}

// from5 joins 5-bit values into n bytes; ok is false if more than the
// padding remains or the padding bits are not zero.
func from5(v []byte, n int) ([]byte, bool) {
	out := make([]byte, 0, n)
	var acc, bits uint
	i := 0
	for ; i < len(v) && len(out) < n; i++ {
		acc = acc<<5 | uint(v[i])
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	if len(out) < n {
		return nil, false
	}
	if acc != 0 {
		return nil, false
	}
	for ; i < len(v); i++ {
		if v[i] != 0 {
			return nil, false
		}
	}
	return out, true
}

// suggest looks for the one correction in group g (0-based) that makes the
// whole code valid: a changed character or two neighbours swapped. It
// returns a hint, or "" if there is none or more than one.
func suggest(vals []byte, pos []int, g int) string {
	if (g+1)*groupLen > len(vals) {
		return ""
	}
	try := make([]byte, len(vals))
	var hints []string
	valid := func() bool {
		grp := try[g*groupLen : (g+1)*groupLen]
		if checkChar(g, grp[:groupData]) != grp[groupData] {
			return false
		}
		_, err := decodeVals(try, make([]int, len(try)))
		return err == nil
	}
	base := g * groupLen
	for i := range groupLen {
		for v := range byte(32) {
			if v == vals[base+i] {
				continue
			}
			copy(try, vals)
			try[base+i] = v
			if valid() {
				hints = append(hints, fmt.Sprintf("character %d should probably be %q", pos[base+i], Alphabet[v]))
			}
		}
	}
	for i := range groupLen - 1 {
		copy(try, vals)
		try[base+i], try[base+i+1] = try[base+i+1], try[base+i]
		if try[base+i] != try[base+i+1] && valid() {
			hints = append(hints, fmt.Sprintf("characters %d and %d are probably swapped", pos[base+i], pos[base+i+1]))
		}
	}
	if len(hints) != 1 {
		return ""
	}
	return hints[0]
}
