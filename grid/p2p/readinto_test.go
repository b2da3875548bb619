package p2p

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// ReadShareInto returns the same bytes as ReadShare, in the caller's buffer.
func TestReadShareInto(t *testing.T) {
	c := newHost(t, tcpNoise, false)
	cl, _ := remote(t, c, tcpNoise, memStore(), ServeOptions{}, ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var si caps.StorageIndex
	si[0] = 7
	share := make([]byte, 300<<10)
	for i := range share {
		share[i] = byte(i * 7)
	}
	if err := cl.WriteShare(ctx, si, 2, int64(len(share)), bytes.NewReader(share), grid.Lease{Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200<<10)
	got, err := cl.ReadShareInto(ctx, si, 2, 1000, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &buf[0] {
		t.Fatal("result is not in the caller's buffer")
	}
	want, err := cl.ReadShare(ctx, si, 2, 1000, int64(len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || !bytes.Equal(got, share[1000:1000+len(buf)]) {
		t.Fatal("ReadShareInto bytes differ from the share")
	}
	// Near the end: a short answer is a prefix of buf, as ReadShare's.
	got, err = cl.ReadShareInto(ctx, si, 2, int64(len(share)-10), buf)
	if err != nil || !bytes.Equal(got, share[len(share)-10:]) {
		t.Fatalf("tail read: %d bytes, %v", len(got), err)
	}
	if _, err := cl.ReadShareInto(ctx, si, 3, 0, buf); !errors.Is(err, grid.ErrNotFound) {
		t.Fatalf("missing share: %v, want ErrNotFound", err)
	}
}
