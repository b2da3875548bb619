package gridtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// Break one server of an in-process grid and see the error a client would.
func ExampleNewFaultGrid() {
	servers, faults := gridtest.NewFaultGrid(3)
	ctx := context.Background()
	si := gridtest.SI()
	for i, s := range servers {
		_ = s.WriteShare(ctx, si, i, 4, bytes.NewReader([]byte("abcd")), gridtest.NewLease("me", time.Now().Add(time.Hour)))
	}
	faults[1].Set(faultserver.Faults{Vanish: true})
	faults[2].Set(faultserver.Faults{Flip: faultserver.FlipAtOffset, FlipOffset: 0})
	for i, s := range servers {
		b, err := s.ReadShare(ctx, si, i, 0, 4)
		fmt.Printf("%s: %q transient=%v vanished=%v\n", string(s.ID()), b, err != nil && !grid.IsPermanent(err), errors.Is(err, faultserver.ErrVanished))
	}
	// Output:
	// mem-00: "abcd" transient=false vanished=false
	// mem-01: "" transient=true vanished=true
	// mem-02: "`bcd" transient=false vanished=false
}
