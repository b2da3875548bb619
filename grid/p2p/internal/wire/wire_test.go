package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
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

func sampleRequests() []*Request {
	si, l := testSI(), testLease()
	return []*Request{
		{Method: MethodWriteShare, SI: si, Shnum: 3, Size: 1 << 20, Lease: l},
		{Method: MethodReadShare, SI: si, Shnum: 255, Off: 10, Length: 1 << 40},
		{Method: MethodListShares, SI: si},
		{Method: MethodAddLease, SI: si, Lease: l},
		{Method: MethodReadSlot, SI: si},
		{Method: MethodWriteSlot, SI: si, WE: grid.WriteEnabler{1, 2, 3}, Lease: l, Writes: []grid.SlotShare{
			{Shnum: 0, Seq: 7, Data: []byte("hello")}, {Shnum: 9, Seq: math.MaxUint64, Data: []byte{}}}},
		{Method: MethodStat},
		{Method: MethodCancelLease, SI: si, CancelSecret: [32]byte{9}},
	}
}

type respCase struct {
	m Method
	r *Response
}

func sampleResponses() []respCase {
	return []respCase{
		{MethodWriteShare, &Response{Status: StatusContinue}},
		{MethodWriteShare, &Response{Status: StatusOK}},
		{MethodReadShare, &Response{Status: StatusOK, DataLen: 12345}},
		{MethodListShares, &Response{Status: StatusOK, Shares: []grid.ShareInfo{{Shnum: 1, Size: 10}, {Shnum: 4, Size: 0}}}},
		{MethodReadSlot, &Response{Status: StatusOK, Slot: []grid.SlotShare{{Shnum: 2, Seq: 3, Data: []byte("x")}}}},
		{MethodStat, &Response{Status: StatusOK, Stat: grid.Stat{Quota: 1 << 30, Used: 5, Shares: 2}}},
		{MethodReadShare, &Response{Status: StatusError, Code: CodeNotFound, Msg: "read share 0: not found"}},
		{MethodWriteSlot, &Response{Status: StatusError, Code: CodeStale, Msg: "stale", Stale: grid.StaleError{Shnum: 4, Have: 9, Want: 3}}},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		t.Run(r.Method.String(), func(t *testing.T) {
			b, err := AppendRequest(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeRequest(b, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, c := range sampleResponses() {
		b, err := AppendResponse(nil, c.m, c.r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResponse(c.m, b, 1<<20)
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
		{"ListShares", &Request{Method: MethodListShares, SI: si},
			"0103" + "00000010" + "00000000000000000000000000000001"},
		{"ReadShare", &Request{Method: MethodReadShare, SI: si, Shnum: 2, Off: 0, Length: 4096},
			"0102" + "00000024" + "00000000000000000000000000000001" + "00000002" + "0000000000000000" + "0000000000001000"},
		{"Stat", &Request{Method: MethodStat}, "0107" + "00000000"},
	} {
		b, err := AppendRequest(nil, c.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
	if b, _ := AppendResponse(nil, MethodWriteShare, &Response{Status: StatusContinue}); hex.EncodeToString(b) != "0100000000" {
		t.Errorf("continue: got %x", b)
	}
	r := &Response{Status: StatusError, Code: CodeNotFound, Msg: "not found"}
	b, _ := AppendResponse(nil, MethodReadShare, r)
	if got, want := hex.EncodeToString(b), "02"+"0000000c"+"02"+"0009"+hex.EncodeToString([]byte("not found")); got != want {
		t.Errorf("error response:\n got %s\nwant %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := AppendRequest(nil, sampleRequests()[5]) // WriteSlot
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
			r := sampleRequests()[3] // AddLease
			b, _ := AppendRequest(nil, r)
			copy(b[len(b)-4:], []byte{0xff, 0xff, 0xff, 0xff})
			return b
		}()},
	} {
		if r, err := DecodeRequest(c.b, 1<<20); err == nil || !errors.Is(err, ErrMalformed) {
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
		{Method: MethodWriteSlot, Writes: []grid.SlotShare{{Shnum: -1}}},
		{Method: 0},
	} {
		if b, err := AppendRequest([]byte("keep"), r); err == nil || string(b) != "keep" {
			t.Errorf("AppendRequest(%+v) = %q, %v; want an error and dst unchanged", r, b, err)
		}
	}
}

func TestErrorMsgTruncated(t *testing.T) {
	msg := string(bytes.Repeat([]byte("é"), MaxErrorMsg)) // 2 bytes each
	b, err := AppendResponse(nil, MethodStat, &Response{Status: StatusError, Code: CodeInternal, Msg: msg})
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeResponse(MethodStat, b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Msg) > MaxErrorMsg || len(r.Msg) < MaxErrorMsg-1 {
		t.Fatalf("message of %d bytes, want about %d", len(r.Msg), MaxErrorMsg)
	}
}

func FuzzRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		b, err := AppendRequest(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b, 1<<16)
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

func FuzzResponse(f *testing.F) {
	for _, c := range sampleResponses() {
		b, err := AppendResponse(nil, c.m, c.r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(c.m), b)
	}
	f.Fuzz(func(t *testing.T, m byte, b []byte) {
		r, err := DecodeResponse(Method(m), b, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := AppendResponse(nil, Method(m), r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}
