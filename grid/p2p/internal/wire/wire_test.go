package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

func testLease() grid.Lease {
	var l grid.Lease
	for i := range l.RenewSecret {
		l.RenewSecret[i] = byte(i)
		l.CancelSecret[i] = byte(0x80 + i)
	}
	l.Expires = time.Unix(1_800_000_000, 123456789).UTC()
	return l
}

func testSI() caps.StorageIndex {
	var si caps.StorageIndex
	for i := range si {
		si[i] = byte(0xa0 + i)
	}
	return si
}

// sampleRequests returns one request per method of version v.
func sampleRequests(v uint8) []*Request {
	si, l := testSI(), testLease()
	ws := &Request{Version: v, Method: MethodWriteSlot, SI: si, WE: grid.WriteEnabler{1, 2, 3}, Lease: l}
	slot := []grid.SlotShare{{Shnum: 0, Seq: 7, Data: []byte("hello")}, {Shnum: 9, Seq: math.MaxUint64, Data: []byte{}}}
	if v == V1 {
		ws.Writes = slot
	} else {
		ws.Heads = Heads(slot)
	}
	return []*Request{
		{Version: v, Method: MethodWriteShare, SI: si, Shnum: 3, Size: 1 << 20, Lease: l},
		{Version: v, Method: MethodReadShare, SI: si, Shnum: 255, Off: 10, Length: 1 << 40},
		{Version: v, Method: MethodListShares, SI: si},
		{Version: v, Method: MethodAddLease, SI: si, Lease: l},
		{Version: v, Method: MethodReadSlot, SI: si},
		ws,
		{Version: v, Method: MethodStat},
		{Version: v, Method: MethodCancelLease, SI: si, CancelSecret: [32]byte{9}},
	}
}

var versions = []uint8{V1, V2}

type respCase struct {
	v uint8
	m Method
	r *Response
}

func sampleResponses() []respCase {
	cs := []respCase{
		{0, MethodWriteShare, &Response{Status: StatusContinue}},
		{0, MethodWriteShare, &Response{Status: StatusOK}},
		{0, MethodReadShare, &Response{Status: StatusOK, DataLen: 12345}},
		{0, MethodListShares, &Response{Status: StatusOK, Shares: []grid.ShareInfo{{Shnum: 1, Size: 10}, {Shnum: 4, Size: 0}}}},
		{V1, MethodReadSlot, &Response{Status: StatusOK, Slot: []grid.SlotShare{{Shnum: 2, Seq: 3, Data: []byte("x")}}}},
		{V2, MethodReadSlot, &Response{Status: StatusOK, Heads: []SlotHead{{Shnum: 2, Seq: 3, Len: 1}, {Shnum: 7, Seq: 3, Len: 100 << 20}}}},
		{0, MethodStat, &Response{Status: StatusOK, Stat: grid.Stat{Quota: 1 << 30, Used: 5, Shares: 2}}},
		{0, MethodReadShare, &Response{Status: StatusError, Code: CodeNotFound, Msg: "read share 0: not found"}},
		{0, MethodWriteSlot, &Response{Status: StatusError, Code: CodeStale, Msg: "stale", Stale: grid.StaleError{Shnum: 4, Have: 9, Want: 3}}},
	}
	// Messages that do not differ between versions are checked in both.
	for _, c := range cs[:len(cs):len(cs)] {
		if c.v == 0 {
			c.v = V1
			cs = append(cs, c)
		}
	}
	for i := range cs {
		if cs[i].v == 0 {
			cs[i].v = V2
		}
	}
	return cs
}

func TestRequestRoundTrip(t *testing.T) {
	for _, v := range versions {
		for _, r := range sampleRequests(v) {
			t.Run(fmt.Sprintf("v%d/%v", v, r.Method), func(t *testing.T) {
				b, err := AppendRequest(nil, r)
				if err != nil {
					t.Fatal(err)
				}
				if b[0] != v {
					t.Fatalf("version byte %d, want %d", b[0], v)
				}
				got, err := DecodeRequest(b, v, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, r) {
					t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
				}
				other := V1 + V2 - v
				if _, err := DecodeRequest(b, other, 1<<20); !errors.Is(err, ErrMalformed) {
					t.Fatalf("v%d request decoded as v%d: %v", v, other, err)
				}
			})
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, c := range sampleResponses() {
		b, err := AppendResponse(nil, c.v, c.m, c.r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResponse(c.v, c.m, b, 1<<20)
		if err != nil {
			t.Fatalf("%v %+v: %v", c.m, c.r, err)
		}
		if !reflect.DeepEqual(got, c.r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, c.r)
		}
	}
}

// TestVectors pins the byte layout given in docs/spec/storage-protocol.md.
func TestVectors(t *testing.T) {
	var si caps.StorageIndex
	si[15] = 1
	for _, c := range []struct {
		name string
		req  *Request
		want string
	}{
		{"ListShares", &Request{Version: V1, Method: MethodListShares, SI: si},
			"0103" + "00000010" + "00000000000000000000000000000001"},
		{"ReadShare", &Request{Version: V1, Method: MethodReadShare, SI: si, Shnum: 2, Off: 0, Length: 4096},
			"0102" + "00000024" + "00000000000000000000000000000001" + "00000002" + "0000000000000000" + "0000000000001000"},
		{"Stat", &Request{Version: V1, Method: MethodStat}, "0107" + "00000000"},
		{"StatV2", &Request{Method: MethodStat}, "0207" + "00000000"},
	} {
		b, err := AppendRequest(nil, c.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
	if b, _ := AppendResponse(nil, V1, MethodWriteShare, &Response{Status: StatusContinue}); hex.EncodeToString(b) != "0100000000" {
		t.Errorf("continue: got %x", b)
	}
	r := &Response{Status: StatusError, Code: CodeNotFound, Msg: "not found"}
	b, _ := AppendResponse(nil, V1, MethodReadShare, r)
	if got, want := hex.EncodeToString(b), "02"+"0000000c"+"02"+"0009"+hex.EncodeToString([]byte("not found")); got != want {
		t.Errorf("error response:\n got %s\nwant %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := AppendRequest(nil, sampleRequests(V1)[5]) // WriteSlot
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"shortHeader", good[:3]},
		{"badVersion", append([]byte{2}, good[1:]...)},
		{"unknownMethod", append([]byte{1, 99}, good[2:]...)},
		{"truncatedBody", good[:len(good)-1]},
		{"trailingBytes", append(bytes.Clone(good), 0)},
		{"bodyOverLimit", func() []byte { b := bytes.Clone(good); b[2] = 0xff; return b }()},
		{"hugeCount", func() []byte {
			b := bytes.Clone(good[:RequestHeaderSize+16+32+76+4])
			copy(b[len(b)-4:], []byte{0xff, 0xff, 0xff, 0xff})
			b[5] = byte(len(b) - RequestHeaderSize)
			return b
		}()},
		{"badNanos", func() []byte {
			r := sampleRequests(V1)[3] // AddLease
			b, _ := AppendRequest(nil, r)
			copy(b[len(b)-4:], []byte{0xff, 0xff, 0xff, 0xff})
			return b
		}()},
	} {
		if r, err := DecodeRequest(c.b, V1, 1<<20); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decoded %+v, %v; want ErrMalformed", c.name, r, err)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, r := range []*Request{
		{Method: MethodWriteShare, Size: -1},
		{Method: MethodWriteShare, Shnum: -1},
		{Method: MethodReadShare, Off: -1},
		{Method: MethodReadShare, Length: -1},
		{Version: V1, Method: MethodWriteSlot, Writes: []grid.SlotShare{{Shnum: -1}}},
		{Method: MethodWriteSlot, Heads: []SlotHead{{Shnum: -1}}},
		{Method: MethodWriteSlot, Heads: []SlotHead{{Len: -1}}},
		{Version: 3, Method: MethodStat},
		{Method: 0},
	} {
		if b, err := AppendRequest([]byte("keep"), r); err == nil || string(b) != "keep" {
			t.Errorf("AppendRequest(%+v) = %q, %v; want an error and dst unchanged", r, b, err)
		}
	}
}

func TestErrorMsgTruncated(t *testing.T) {
	msg := string(bytes.Repeat([]byte("é"), MaxErrorMsg)) // 2 bytes each
	b, err := AppendResponse(nil, V2, MethodStat, &Response{Status: StatusError, Code: CodeInternal, Msg: msg})
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeResponse(V2, MethodStat, b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Msg) > MaxErrorMsg || len(r.Msg) < MaxErrorMsg-1 {
		t.Fatalf("message of %d bytes, want about %d", len(r.Msg), MaxErrorMsg)
	}
}

// FuzzRequest decodes requests of both versions (the version the stream
// negotiated is the first byte, as it must match the header's).
func FuzzRequest(f *testing.F) {
	for _, v := range versions {
		for _, r := range sampleRequests(v) {
			b, err := AppendRequest(nil, r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := uint8(V2)
		if len(b) > 0 && b[0] == V1 {
			v = V1
		}
		r, err := DecodeRequest(b, v, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same bytes: one encoding per
		// message.
		again, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}

// FuzzResponse decodes responses of both versions (v is 1 or 2 by its low
// bit).
func FuzzResponse(f *testing.F) {
	for _, c := range sampleResponses() {
		b, err := AppendResponse(nil, c.v, c.m, c.r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.v, byte(c.m), b)
	}
	f.Fuzz(func(t *testing.T, v, m byte, b []byte) {
		v = 1 + v&1
		r, err := DecodeResponse(v, Method(m), b, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := AppendResponse(nil, v, Method(m), r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}

// TestVectorsV2 pins the version 2 slot messages given in the spec.
func TestVectorsV2(t *testing.T) {
	var si caps.StorageIndex
	si[15] = 1
	req := &Request{Method: MethodWriteSlot, SI: si, Lease: grid.Lease{Expires: time.Unix(0, 0)}, Heads: []SlotHead{{Shnum: 3, Seq: 5, Len: 1 << 24}}}
	b, err := AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	want := "0206" + "00000094" + "00000000000000000000000000000001" + hex.EncodeToString(make([]byte, 32+76)) +
		"00000001" + "00000003" + "0000000000000005" + "0000000001000000"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("WriteSlot v2:\n got %s\nwant %s", got, want)
	}
	b, err = AppendResponse(nil, V2, MethodReadSlot, &Response{Status: StatusOK, Heads: []SlotHead{{Shnum: 3, Seq: 5, Len: 1 << 24}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(b), "00"+"00000018"+"00000001"+"00000003"+"0000000000000005"+"0000000001000000"; got != want {
		t.Errorf("ReadSlot v2 response:\n got %s\nwant %s", got, want)
	}
}

func TestSlotDataSize(t *testing.T) {
	for _, c := range []struct {
		hs    []SlotHead
		limit int64
		want  int64
		ok    bool
	}{
		{nil, 0, 0, true},
		{[]SlotHead{{Len: 10}, {Len: 20}}, 30, 30, true},
		{[]SlotHead{{Len: 10}, {Len: 21}}, 30, 0, false},
		{[]SlotHead{{Len: math.MaxInt64}, {Len: math.MaxInt64}}, math.MaxInt64, 0, false},
		{[]SlotHead{{Len: -1}}, 30, 0, false},
	} {
		got, err := SlotDataSize(c.hs, c.limit)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("SlotDataSize(%v, %d) = %d, %v; want %d, ok=%v", c.hs, c.limit, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("error %v does not wrap ErrMalformed", err)
		}
	}
}
