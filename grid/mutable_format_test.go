package grid_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

// TestMutableNewerFormat: a slot whose shares are all in a format newer
// than this client reads fails with caps.ErrNewerFormat, saying so, rather
// than "not found" or garbage; shares this client writes are the current
// version.
func TestMutableNewerFormat(t *testing.T) {
	servers := gridtest.NewMemGrid(10)
	c := mutClient(t, servers)
	wc := mutCreate(t, c, []byte("today"), true)
	for _, s := range servers {
		ss, err := s.ReadSlot(mutCtx(t), wc.StorageIndex())
		if err != nil || len(ss) != 1 || ss[0].Data[0] != caps.MutableVersion {
			t.Fatalf("server %v: %d shares (%v), want one of version %d", s.ID(), len(ss), err, caps.MutableVersion)
		}
	}
	future, _, err := caps.EncodeMutable(wc, 2, []byte("from the future"), 3, 10, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A newer writer replaces the share each server holds; after fewer
	// than k servers the old version is still read, from k on the reader
	// refuses to hide the newer version behind it.
	for i, s := range servers {
		ss, err := s.ReadSlot(mutCtx(t), wc.StorageIndex())
		if err != nil {
			t.Fatal(err)
		}
		sh := bytes.Clone(future[ss[0].Shnum])
		sh[0] = caps.MutableVersion + 1
		err = s.WriteSlot(mutCtx(t), wc.StorageIndex(), caps.WriteEnabler(wc, []byte(s.ID())),
			[]grid.SlotShare{{Shnum: ss[0].Shnum, Seq: 2, Data: sh}}, grid.Lease{Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = mutClient(t, servers).Retrieve(mutCtx(t), wc.ReadCap())
		if i+1 < 3 && err != nil {
			t.Fatalf("%d servers newer: %v, want the old version", i+1, err)
		}
		if i+1 >= 3 && (!errors.Is(err, caps.ErrNewerFormat) || !strings.Contains(err.Error(), "newer format")) {
			t.Fatalf("%d servers newer: Retrieve: %v, want caps.ErrNewerFormat", i+1, err)
		}
	}
}
