package grid_test

import (
	"errors"
	"math"
	"testing"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func TestPublishRefusesSeqWrap(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	c := mutClient(t, servers)
	wc := mutCreate(t, c, []byte("v1"), false)
	if _, err := grid.PublishAt(c, mutCtx(t), wc, []byte("last"), math.MaxUint64-1); err != nil {
		t.Fatalf("publish at 2^64-2: %v", err)
	}
	if _, err := c.Publish(mutCtx(t), wc, []byte("wraps")); !errors.Is(err, grid.ErrSeqExhausted) {
		t.Fatalf("Publish after 2^64-2: %v, want ErrSeqExhausted", err)
	}
	if _, err := c.Modify(mutCtx(t), wc, func(old []byte, _ grid.Version) ([]byte, error) {
		return append(old, '!'), nil
	}); !errors.Is(err, grid.ErrSeqExhausted) {
		t.Fatalf("Modify after 2^64-2: %v, want ErrSeqExhausted", err)
	}
	if _, err := grid.PublishAt(c, mutCtx(t), wc, []byte("max"), math.MaxUint64); !errors.Is(err, grid.ErrSeqExhausted) {
		t.Fatalf("publish at 2^64-1: %v, want ErrSeqExhausted", err)
	}
	got, v, err := c.Retrieve(mutCtx(t), wc.ReadCap())
	if err != nil || string(got) != "last" || v.Seq != math.MaxUint64-1 {
		t.Fatalf("Retrieve: %q seq %d %v; want \"last\" at 2^64-2", got, v.Seq, err)
	}
}
