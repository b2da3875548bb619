// Package wire encodes and decodes the messages of the Sphere storage
// protocol, versions 1 and 2 (docs/spec/storage-protocol.md). It does no I/O: the
// p2p package frames these bytes onto libp2p streams. Decoders take
// untrusted bytes and return errors wrapping ErrMalformed, never panic, and
// never allocate more than the input they were given justifies.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// Protocol versions carried in every request header. Version 2 differs
// from 1 only in ReadSlot and WriteSlot: their messages carry slot share
// heads (SlotHead) and the share data follows raw on the stream, so a slot
// is not bounded by the message size limit.
const (
	V1      = 1
	V2      = 2
	Version = V2 // the newest
)

// Header sizes in bytes.
const (
	RequestHeaderSize  = 6 // version u8 || method u8 || bodyLen u32
	ResponseHeaderSize = 5 // status u8 || bodyLen u32
)

// Fixed field sizes.
const (
	siSize    = len(caps.StorageIndex{})
	leaseSize = 32 + 32 + 8 + 4
	// slotShareMin is the encoded size of a slot share with no data (v1).
	slotShareMin = 4 + 8 + 4
	// SlotHeadSize is the encoded size of a SlotHead (v2).
	SlotHeadSize = 4 + 8 + 8
	// MaxErrorMsg bounds the text of an error response.
	MaxErrorMsg = 1024
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed message")

// Method selects the grid.Server method a request calls.
type Method uint8

// Methods of version 1.
const (
	MethodWriteShare  Method = 1
	MethodReadShare   Method = 2
	MethodListShares  Method = 3
	MethodAddLease    Method = 4
	MethodReadSlot    Method = 5
	MethodWriteSlot   Method = 6
	MethodStat        Method = 7
	MethodCancelLease Method = 8
)

var methodNames = [...]string{"", "WriteShare", "ReadShare", "ListShares", "AddLease", "ReadSlot", "WriteSlot", "Stat", "CancelLease"}

func (m Method) String() string {
	if int(m) < len(methodNames) && m != 0 {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// Valid reports whether m is a method of version 1.
func (m Method) Valid() bool { return m >= MethodWriteShare && m <= MethodCancelLease }

// fixedBodySize is the exact request body size of m, or -1 if it varies.
func (m Method) fixedBodySize() int {
	switch m {
	case MethodWriteShare:
		return siSize + 4 + 8 + leaseSize
	case MethodReadShare:
		return siSize + 4 + 8 + 8
	case MethodListShares, MethodReadSlot:
		return siSize
	case MethodAddLease:
		return siSize + leaseSize
	case MethodStat:
		return 0
	case MethodCancelLease:
		return siSize + 32
	}
	return -1
}

// Status is the first byte of a response.
type Status uint8

// Statuses of version 1.
const (
	StatusOK       Status = 0
	StatusContinue Status = 1 // WriteShare only: send the share bytes now
	StatusError    Status = 2
)

// Code classifies an error response; the p2p package maps codes to the
// sentinel errors of package grid and back.
type Code uint8

// Codes of version 1. A receiver treats an unknown code as CodeInternal.
const (
	CodeInternal        Code = 1
	CodeNotFound        Code = 2
	CodeNoSpace         Code = 3
	CodeBadWriteEnabler Code = 4
	CodeUnauthorized    Code = 5
	CodeCorrupt         Code = 6
	CodeStale           Code = 7
	CodeBusy            Code = 8
	CodeBadRequest      Code = 9
	CodeUnsupported     Code = 10
	CodeUnexpectedEOF   Code = 11
	CodeTimeout         Code = 12
)

// SlotHead describes one mutable slot share in a version 2 ReadSlot
// response or WriteSlot request: Len bytes of its data follow the message
// on the stream, in the order of the heads.
type SlotHead struct {
	Shnum int
	Seq   uint64
	Len   int64
}

// Heads returns the heads of ss.
func Heads(ss []grid.SlotShare) []SlotHead {
	h := make([]SlotHead, len(ss))
	for i, s := range ss {
		h[i] = SlotHead{Shnum: s.Shnum, Seq: s.Seq, Len: int64(len(s.Data))}
	}
	return h
}

// Request is a decoded request. Which fields are meaningful depends on
// Method and Version (see the spec); the others are zero.
type Request struct {
	Version      uint8 // V1 or V2; 0 encodes as Version
	Method       Method
	SI           caps.StorageIndex
	Shnum        int
	Size         int64 // WriteShare
	Off, Length  int64 // ReadShare
	Lease        grid.Lease
	WE           grid.WriteEnabler
	Writes       []grid.SlotShare // WriteSlot, v1
	Heads        []SlotHead       // WriteSlot, v2: the data follows the request
	CancelSecret [32]byte
}

// Response is a decoded response. For StatusOK the field for the request's
// method is set; for StatusError, Code, Msg and (CodeStale) Stale.
type Response struct {
	Status  Status
	DataLen int64            // ReadShare: share bytes that follow the body
	Shares  []grid.ShareInfo // ListShares
	Slot    []grid.SlotShare // ReadSlot, v1
	Heads   []SlotHead       // ReadSlot, v2: the data follows the response
	Stat    grid.Stat        // Stat
	Code    Code             // StatusError
	Msg     string           // StatusError
	Stale   grid.StaleError  // StatusError with CodeStale
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// AppendRequest appends the header and body of r to dst. It fails if a field
// cannot be represented (negative sizes, share numbers beyond 32 bits).
func AppendRequest(dst []byte, r *Request) ([]byte, error) {
	if !r.Method.Valid() {
		return dst, fmt.Errorf("encode request: unknown method %d", r.Method)
	}
	v := r.Version
	if v == 0 {
		v = Version
	}
	if v != V1 && v != V2 {
		return dst, fmt.Errorf("encode request: unknown version %d", v)
	}
	start := len(dst)
	dst = append(dst, v, byte(r.Method), 0, 0, 0, 0)
	var err error
	switch r.Method {
	case MethodWriteShare:
		if r.Size < 0 {
			return dst[:start], fmt.Errorf("encode request: negative size %d", r.Size)
		}
		dst = append(dst, r.SI[:]...)
		if dst, err = appendShnum(dst, r.Shnum); err != nil {
			return dst[:start], err
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Size))
		dst = appendLease(dst, &r.Lease)
	case MethodReadShare:
		if r.Off < 0 || r.Length < 0 {
			return dst[:start], fmt.Errorf("encode request: negative offset %d or length %d", r.Off, r.Length)
		}
		dst = append(dst, r.SI[:]...)
		if dst, err = appendShnum(dst, r.Shnum); err != nil {
			return dst[:start], err
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Off))
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Length))
	case MethodListShares, MethodReadSlot:
		dst = append(dst, r.SI[:]...)
	case MethodAddLease:
		dst = append(dst, r.SI[:]...)
		dst = appendLease(dst, &r.Lease)
	case MethodWriteSlot:
		dst = append(dst, r.SI[:]...)
		dst = append(dst, r.WE[:]...)
		dst = appendLease(dst, &r.Lease)
		if v == V1 {
			dst, err = appendSlot(dst, r.Writes)
		} else {
			dst, err = appendHeads(dst, r.Heads)
		}
		if err != nil {
			return dst[:start], err
		}
	case MethodStat:
	case MethodCancelLease:
		dst = append(dst, r.SI[:]...)
		dst = append(dst, r.CancelSecret[:]...)
	}
	n := len(dst) - start - RequestHeaderSize
	if uint64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("encode request: body of %d bytes too large", n)
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(n))
	return dst, nil
}

// ParseRequestHeader checks a request header of protocol version v and
// returns the method and the body length, which is at most maxBody (and
// exact for fixed-size methods).
func ParseRequestHeader(h []byte, v uint8, maxBody int) (Method, int, error) {
	if len(h) != RequestHeaderSize {
		return 0, 0, malformed("request header is %d bytes, want %d", len(h), RequestHeaderSize)
	}
	if h[0] != v {
		return 0, 0, malformed("unsupported version, want=%d have=%d", v, h[0])
	}
	m := Method(h[1])
	if !m.Valid() {
		return m, 0, malformed("unknown method %d", h[1])
	}
	n := binary.BigEndian.Uint32(h[2:])
	if fixed := m.fixedBodySize(); fixed >= 0 {
		if n != uint32(fixed) {
			return m, 0, malformed("%v body is %d bytes, want %d", m, n, fixed)
		}
		return m, int(n), nil
	}
	if uint64(n) > uint64(max(maxBody, 0)) {
		return m, 0, malformed("%v body of %d bytes exceeds limit %d", m, n, maxBody)
	}
	return m, int(n), nil
}

// DecodeRequestBody decodes the body of a version v request for method m.
// Slices in the result (slot share data) alias body.
func DecodeRequestBody(v uint8, m Method, body []byte) (*Request, error) {
	if v != V1 && v != V2 {
		return nil, malformed("unknown version %d", v)
	}
	r := &Request{Version: v, Method: m}
	d := decoder{b: body}
	switch m {
	case MethodWriteShare:
		d.si(&r.SI)
		r.Shnum = d.shnum()
		r.Size = d.i64("size")
		d.lease(&r.Lease)
	case MethodReadShare:
		d.si(&r.SI)
		r.Shnum = d.shnum()
		r.Off = d.i64("offset")
		r.Length = d.i64("length")
	case MethodListShares, MethodReadSlot:
		d.si(&r.SI)
	case MethodAddLease:
		d.si(&r.SI)
		d.lease(&r.Lease)
	case MethodWriteSlot:
		d.si(&r.SI)
		copy(r.WE[:], d.take(32))
		d.lease(&r.Lease)
		if v == V1 {
			r.Writes = d.slot()
		} else {
			r.Heads = d.heads()
		}
	case MethodStat:
	case MethodCancelLease:
		d.si(&r.SI)
		copy(r.CancelSecret[:], d.take(32))
	default:
		return nil, malformed("unknown method %d", m)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode %v request: %w", m, err)
	}
	return r, nil
}

// DecodeRequest decodes a whole request (header and body) of version v
// held in b.
func DecodeRequest(b []byte, v uint8, maxBody int) (*Request, error) {
	if len(b) < RequestHeaderSize {
		return nil, malformed("request of %d bytes is shorter than its header", len(b))
	}
	m, n, err := ParseRequestHeader(b[:RequestHeaderSize], v, maxBody)
	if err != nil {
		return nil, err
	}
	if len(b)-RequestHeaderSize != n {
		return nil, malformed("request body is %d bytes, header says %d", len(b)-RequestHeaderSize, n)
	}
	return DecodeRequestBody(v, m, b[RequestHeaderSize:])
}

// AppendResponse appends the header and body of r, a version v response
// to method m.
func AppendResponse(dst []byte, v uint8, m Method, r *Response) ([]byte, error) {
	start := len(dst)
	dst = append(dst, byte(r.Status), 0, 0, 0, 0)
	var err error
	switch r.Status {
	case StatusContinue:
	case StatusError:
		dst = append(dst, byte(r.Code))
		msg := truncateUTF8(r.Msg, MaxErrorMsg)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
		dst = append(dst, msg...)
		if r.Code == CodeStale {
			if dst, err = appendShnum(dst, r.Stale.Shnum); err != nil {
				return dst[:start], err
			}
			dst = binary.BigEndian.AppendUint64(dst, r.Stale.Have)
			dst = binary.BigEndian.AppendUint64(dst, r.Stale.Want)
		}
	case StatusOK:
		switch m {
		case MethodReadShare:
			if r.DataLen < 0 {
				return dst[:start], fmt.Errorf("encode response: negative data length %d", r.DataLen)
			}
			dst = binary.BigEndian.AppendUint64(dst, uint64(r.DataLen))
		case MethodListShares:
			if uint64(len(r.Shares)) > math.MaxUint32 {
				return dst[:start], fmt.Errorf("encode response: %d shares", len(r.Shares))
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Shares)))
			for _, s := range r.Shares {
				if s.Size < 0 {
					return dst[:start], fmt.Errorf("encode response: share %d has negative size", s.Shnum)
				}
				if dst, err = appendShnum(dst, s.Shnum); err != nil {
					return dst[:start], err
				}
				dst = binary.BigEndian.AppendUint64(dst, uint64(s.Size))
			}
		case MethodReadSlot:
			if v == V1 {
				dst, err = appendSlot(dst, r.Slot)
			} else {
				dst, err = appendHeads(dst, r.Heads)
			}
			if err != nil {
				return dst[:start], err
			}
		case MethodStat:
			if r.Stat.Quota < 0 || r.Stat.Used < 0 || r.Stat.Shares < 0 {
				return dst[:start], fmt.Errorf("encode response: negative stat %+v", r.Stat)
			}
			dst = binary.BigEndian.AppendUint64(dst, uint64(r.Stat.Quota))
			dst = binary.BigEndian.AppendUint64(dst, uint64(r.Stat.Used))
			dst = binary.BigEndian.AppendUint64(dst, uint64(r.Stat.Shares))
		}
	default:
		return dst[:start], fmt.Errorf("encode response: unknown status %d", r.Status)
	}
	n := len(dst) - start - ResponseHeaderSize
	if uint64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("encode response: body of %d bytes too large", n)
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(n))
	return dst, nil
}

// ParseResponseHeader checks a response header and returns the status and
// body length (at most maxBody).
func ParseResponseHeader(h []byte, maxBody int) (Status, int, error) {
	if len(h) != ResponseHeaderSize {
		return 0, 0, malformed("response header is %d bytes, want %d", len(h), ResponseHeaderSize)
	}
	st := Status(h[0])
	if st > StatusError {
		return st, 0, malformed("unknown status %d", h[0])
	}
	n := binary.BigEndian.Uint32(h[1:])
	if uint64(n) > uint64(max(maxBody, 0)) {
		return st, 0, malformed("response body of %d bytes exceeds limit %d", n, maxBody)
	}
	return st, int(n), nil
}

// DecodeResponseBody decodes the body of a response with status st to a
// version v request for method m. Slices in the result alias body.
func DecodeResponseBody(v uint8, m Method, st Status, body []byte) (*Response, error) {
	r := &Response{Status: st}
	d := decoder{b: body}
	switch st {
	case StatusContinue:
		if m != MethodWriteShare {
			return nil, malformed("continue in response to %v", m)
		}
	case StatusError:
		r.Code = Code(d.u8())
		n := int(d.u16())
		msg := d.take(n)
		if !utf8.Valid(msg) {
			return nil, malformed("error message is not UTF-8")
		}
		r.Msg = string(msg)
		if r.Code == CodeStale {
			r.Stale.Shnum = d.shnum()
			r.Stale.Have = d.u64()
			r.Stale.Want = d.u64()
		}
	case StatusOK:
		switch m {
		case MethodReadShare:
			r.DataLen = d.i64("data length")
		case MethodListShares:
			n := d.count(4 + 8)
			r.Shares = make([]grid.ShareInfo, 0, n)
			for range n {
				sh := d.shnum()
				r.Shares = append(r.Shares, grid.ShareInfo{Shnum: sh, Size: d.i64("share size")})
			}
		case MethodReadSlot:
			if v == V1 {
				r.Slot = d.slot()
			} else {
				r.Heads = d.heads()
			}
		case MethodStat:
			r.Stat.Quota = d.i64("quota")
			r.Stat.Used = d.i64("used")
			r.Stat.Shares = int(d.i64("shares"))
		case MethodWriteShare, MethodAddLease, MethodWriteSlot, MethodCancelLease:
		default:
			return nil, malformed("unknown method %d", m)
		}
	default:
		return nil, malformed("unknown status %d", st)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode %v response: %w", m, err)
	}
	return r, nil
}

// DecodeResponse decodes a whole version v response (header and body)
// held in b.
func DecodeResponse(v uint8, m Method, b []byte, maxBody int) (*Response, error) {
	if len(b) < ResponseHeaderSize {
		return nil, malformed("response of %d bytes is shorter than its header", len(b))
	}
	st, n, err := ParseResponseHeader(b[:ResponseHeaderSize], maxBody)
	if err != nil {
		return nil, err
	}
	if len(b)-ResponseHeaderSize != n {
		return nil, malformed("response body is %d bytes, header says %d", len(b)-ResponseHeaderSize, n)
	}
	return DecodeResponseBody(v, m, st, b[ResponseHeaderSize:])
}

func appendShnum(dst []byte, shnum int) ([]byte, error) {
	if shnum < 0 || uint64(shnum) > math.MaxUint32 {
		return dst, fmt.Errorf("encode: share number %d out of range 0..%d", shnum, uint32(math.MaxUint32))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(shnum)), nil
}

func appendLease(dst []byte, l *grid.Lease) []byte {
	dst = append(dst, l.RenewSecret[:]...)
	dst = append(dst, l.CancelSecret[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(l.Expires.Unix()))
	return binary.BigEndian.AppendUint32(dst, uint32(l.Expires.Nanosecond()))
}

func appendSlot(dst []byte, ss []grid.SlotShare) ([]byte, error) {
	if uint64(len(ss)) > math.MaxUint32 {
		return dst, fmt.Errorf("encode: %d slot shares", len(ss))
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(ss)))
	var err error
	for _, s := range ss {
		if dst, err = appendShnum(dst, s.Shnum); err != nil {
			return dst, err
		}
		if uint64(len(s.Data)) > math.MaxUint32 {
			return dst, fmt.Errorf("encode: slot share %d of %d bytes", s.Shnum, len(s.Data))
		}
		dst = binary.BigEndian.AppendUint64(dst, s.Seq)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s.Data)))
		dst = append(dst, s.Data...)
	}
	return dst, nil
}

func appendHeads(dst []byte, hs []SlotHead) ([]byte, error) {
	if uint64(len(hs)) > math.MaxUint32 {
		return dst, fmt.Errorf("encode: %d slot shares", len(hs))
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(hs)))
	var err error
	for _, h := range hs {
		if h.Len < 0 {
			return dst, fmt.Errorf("encode: slot share %d of negative length %d", h.Shnum, h.Len)
		}
		if dst, err = appendShnum(dst, h.Shnum); err != nil {
			return dst, err
		}
		dst = binary.BigEndian.AppendUint64(dst, h.Seq)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.Len))
	}
	return dst, nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// decoder reads big-endian fields from b. The first error sticks; later
// reads return zero values, so callers check once in finish.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = malformed("truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// i64 reads a u64 that must fit in an int64.
func (d *decoder) i64(what string) int64 {
	v := d.u64()
	if v > math.MaxInt64 && d.err == nil {
		d.err = malformed("%s %d out of range", what, v)
		return 0
	}
	return int64(v)
}

func (d *decoder) shnum() int {
	v := d.u32()
	if uint64(v) > uint64(math.MaxInt) && d.err == nil {
		d.err = malformed("share number %d out of range", v)
		return 0
	}
	return int(v)
}

func (d *decoder) si(si *caps.StorageIndex) { copy(si[:], d.take(siSize)) }

func (d *decoder) lease(l *grid.Lease) {
	copy(l.RenewSecret[:], d.take(32))
	copy(l.CancelSecret[:], d.take(32))
	sec := int64(d.u64())
	nsec := d.u32()
	if nsec >= 1e9 && d.err == nil {
		d.err = malformed("lease expiry nanoseconds %d out of range", nsec)
		return
	}
	l.Expires = time.Unix(sec, int64(nsec)).UTC()
}

// count reads an element count and checks that the rest of the message can
// hold that many elements of at least minSize bytes, so no allocation is
// larger than the input justifies.
func (d *decoder) count(minSize int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.err = malformed("count %d needs at least %d bytes, have %d", n, uint64(n)*uint64(minSize), len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) slot() []grid.SlotShare {
	n := d.count(slotShareMin)
	ss := make([]grid.SlotShare, 0, n)
	for range n {
		var s grid.SlotShare
		s.Shnum = d.shnum()
		s.Seq = d.u64()
		s.Data = d.take(int(d.u32()))
		if d.err != nil {
			return nil
		}
		ss = append(ss, s)
	}
	return ss
}

// heads reads a v2 slot head list. The data lengths are not checked
// against anything here (the data is not in the message); the caller
// bounds their sum before reading.
func (d *decoder) heads() []SlotHead {
	n := d.count(SlotHeadSize)
	hs := make([]SlotHead, 0, n)
	for range n {
		var h SlotHead
		h.Shnum = d.shnum()
		h.Seq = d.u64()
		h.Len = d.i64("slot share length")
		if d.err != nil {
			return nil
		}
		hs = append(hs, h)
	}
	return hs
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return malformed("%d trailing bytes", len(d.b))
	}
	return nil
}

// SlotDataSize returns the sum of the data lengths of hs, or an error
// wrapping ErrMalformed if it exceeds limit (checked without overflow).
func SlotDataSize(hs []SlotHead, limit int64) (int64, error) {
	var sum int64
	for _, h := range hs {
		if h.Len < 0 || h.Len > limit-sum {
			return 0, malformed("slot data exceeds limit %d bytes", limit)
		}
		sum += h.Len
	}
	return sum, nil
}
