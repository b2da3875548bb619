package grid_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/faultserver"
	"github.com/sphere-grid/sphere/grid/gridtest"
)

func TestRoundTrip(t *testing.T) {
	seg := testSegSize
	cases := []struct {
		name   string
		size   int
		segSz  int
		isLit  bool
		large  bool
		random bool
	}{
		{name: "empty", size: 0, isLit: true},
		{name: "one byte", size: 1, isLit: true},
		{name: "literal max", size: caps.LiteralMax, isLit: true},
		{name: "smallest chk", size: caps.LiteralMax + 1},
		{name: "segment minus one", size: seg - 1},
		{name: "one segment", size: seg},
		{name: "segment plus one", size: seg + 1},
		{name: "several segments", size: 7*seg + 123},
		{name: "several segments random key", size: 5*seg + 1, random: true},
		{name: "256 MiB default params", size: 256 << 20, segSz: caps.DefaultParams().SegmentSize, large: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.large && testing.Short() {
				t.Skip("large upload skipped in -short mode")
			}
			p := testParams()
			if tc.segSz != 0 {
				p.SegmentSize = tc.segSz
			}
			c, faults := faultGrid(t, 10, p, 10*time.Second)
			data := gridtest.Data(uint64(tc.size), tc.size)
			var last int64
			cp, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{
				RandomKey: tc.random,
				Progress: func(done int64) {
					if done < last {
						t.Errorf("progress went back from %d to %d", last, done)
					}
					last = done
				},
			})
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			_, lit := cp.(caps.LitCap)
			if lit != tc.isLit {
				t.Fatalf("cap kind %q, want lit=%v", cp.Kind(), tc.isLit)
			}
			writes := int64(0)
			for _, f := range faults {
				writes += f.Calls("WriteShare")
			}
			if tc.isLit && writes != 0 {
				t.Errorf("lit upload wrote %d shares", writes)
			}
			if !tc.isLit {
				if writes != 10 {
					t.Errorf("upload made %d WriteShare calls, want 10", writes)
				}
				if last != int64(tc.size) {
					t.Errorf("last progress %d, want %d", last, tc.size)
				}
			}
			// The cap survives a trip through its string form.
			parsed, err := caps.Parse(cp.String())
			if err != nil {
				t.Fatalf("Parse(cap): %v", err)
			}
			var got []byte
			{
				var buf bytes.Buffer
				var prog int64
				err := c.Download(ctxT(t), parsed, &buf, func(n int64) {
					if n < prog {
						t.Errorf("download progress went back from %d to %d", prog, n)
					}
					prog = n
				})
				if err != nil {
					t.Fatalf("Download: %v", err)
				}
				if prog != int64(tc.size) && tc.size > 0 {
					t.Errorf("last download progress %d, want %d", prog, tc.size)
				}
				got = buf.Bytes()
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("Download returned %d bytes differing from the %d uploaded", len(got), len(data))
			}
			f, err := c.Open(ctxT(t), cp)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if f.Size() != int64(tc.size) {
				t.Errorf("Size() = %d, want %d", f.Size(), tc.size)
			}
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(f); err != nil {
				t.Fatalf("read File: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), data) {
				t.Fatalf("reading the File sequentially gave different bytes")
			}
		})
	}
}

func TestUploadConvergent(t *testing.T) {
	c, _ := faultGrid(t, 10, testParams(), 10*time.Second)
	data := gridtest.Data(1, 3*testSegSize)
	a := upload(t, c, data)
	b := upload(t, c, data)
	if a.String() != b.String() {
		t.Errorf("same content and secret gave two caps:\n%v\n%v", a, b)
	}
	r, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{RandomKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.String() == a.String() {
		t.Errorf("random-key upload gave the convergent cap")
	}
}

func TestUploadPlacement(t *testing.T) {
	cases := []struct {
		name      string
		servers   int
		perServer int // most shares any server may get
	}{
		{name: "more servers than shares", servers: 13, perServer: 1},
		{name: "exactly n", servers: 10, perServer: 1},
		{name: "happy servers", servers: 7, perServer: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, faults := faultGrid(t, tc.servers, testParams(), 10*time.Second)
			cp := upload(t, c, gridtest.Data(2, 2*testSegSize))
			rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Healthy {
				t.Fatalf("fresh upload not healthy:\n%v", rep)
			}
			per := map[string]int{}
			for _, s := range rep.Shares {
				per[s.Server]++
			}
			for srv, n := range per {
				if n > tc.perServer {
					t.Errorf("server %s holds %d shares, want at most %d", srv, n, tc.perServer)
				}
			}
			if want := min(tc.servers, 10); len(per) != want {
				t.Errorf("shares on %d servers, want %d", len(per), want)
			}
			// The servers that got shares are the first of the permuted ring.
			si, _ := caps.ParseStorageIndex(rep.StorageIndex)
			servers := make([]grid.Server, len(faults))
			for i, f := range faults {
				servers[i] = f
			}
			for i, s := range grid.PermutedRing(si, servers)[:min(tc.servers, 10)] {
				if per[s.ID().String()] == 0 {
					t.Errorf("ring position %d (%s) got no share", i, s.ID())
				}
			}
		})
	}
}

func TestUploadNotHappy(t *testing.T) {
	cases := []struct {
		name  string
		setup func(faults []*faultserver.Server)
	}{
		{name: "too few servers", setup: func(faults []*faultserver.Server) {}},
		{name: "servers full", setup: func(faults []*faultserver.Server) {
			for _, f := range faults[:4] {
				f.Set(faultserver.Faults{Full: true})
			}
		}},
		{name: "servers vanish", setup: func(faults []*faultserver.Server) {
			for _, f := range faults[:4] {
				f.Set(faultserver.Faults{Vanish: true})
			}
		}},
	}
	for _, tc := range cases {
		for _, size := range testUploadSizes {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				n := 10
				if tc.name == "too few servers" {
					n = 6
				}
				c, faults := faultGrid(t, n, testParams(), 2*time.Second)
				tc.setup(faults)
				data := gridtest.Data(3, size)
				_, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
				if !errors.Is(err, grid.ErrNotHappy) {
					t.Fatalf("Upload error = %v, want ErrNotHappy", err)
				}
				if want := fmt.Sprintf("need %d", testParams().Happy); !bytes.Contains([]byte(err.Error()), []byte(want)) {
					t.Errorf("error %q does not say %q", err, want)
				}
			})
		}
	}
}

// testUploadSizes are a streamed file (several segments) and a file of one
// segment, which takes Upload's in-memory path.
var testUploadSizes = []int{3 * testSegSize, testSegSize / 2}

func TestUploadSurvivesLostServers(t *testing.T) {
	// Two of ten servers are gone before the upload: the ring skips them
	// and the 10 shares land on the other 8.
	c, faults := faultGrid(t, 10, testParams(), 500*time.Millisecond)
	faults[0].Set(faultserver.Faults{Vanish: true})
	faults[1].Set(faultserver.Faults{Hang: true})
	data := gridtest.Data(4, 9*testSegSize+5)
	cp := upload(t, c, data)
	faults[1].Reset()
	got, err := download(t, c, cp)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download after degraded upload: %v (equal=%v)", err, bytes.Equal(got, data))
	}
	rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GoodShares != 10 || rep.GoodServers != 8 {
		t.Errorf("check after losing 2 servers: %d good shares on %d servers; want 10 on 8\n%v", rep.GoodShares, rep.GoodServers, rep)
	}
}

// midFailServer accepts the upload's Stat but fails (or stalls) its
// WriteShare after reading some bytes: a server lost mid-upload.
type midFailServer struct {
	grid.Server
	after int64
	stall bool
}

func (s *midFailServer) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	if _, err := io.CopyN(io.Discard, r, s.after); err != nil {
		return err
	}
	if s.stall {
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("connection reset")
}

func TestUploadMidFailure(t *testing.T) {
	cases := []struct {
		name    string
		broken  int
		stall   bool
		wantErr error
	}{
		{name: "three servers fail", broken: 3},
		{name: "three servers stall", broken: 3, stall: true},
		{name: "four servers fail", broken: 4, wantErr: grid.ErrNotHappy},
		{name: "four servers stall", broken: 4, stall: true, wantErr: grid.ErrNotHappy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := gridtest.NewMemGrid(10)
			for i := range tc.broken {
				servers[i] = &midFailServer{Server: servers[i], after: 3 * testSegSize / 3, stall: tc.stall}
			}
			c := newClient(t, servers, testParams(), 300*time.Millisecond)
			data := gridtest.Data(6, 30*testSegSize)
			cp, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Upload: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			got, err := download(t, c, cp)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("download: %v (equal=%v)", err, bytes.Equal(got, data))
			}
			rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.GoodShares != 10-tc.broken {
				t.Errorf("%d good shares after upload, want %d", rep.GoodShares, 10-tc.broken)
			}
		})
	}
}

func TestUploadShortReader(t *testing.T) {
	c, _ := faultGrid(t, 10, testParams(), 2*time.Second)
	for _, size := range testUploadSizes {
		data := gridtest.Data(5, size)
		_, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data))+10, grid.UploadOptions{})
		if err == nil {
			t.Fatalf("upload of a reader shorter than size (%d) succeeded", size)
		}
		_, err = c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data))+10, grid.UploadOptions{RandomKey: true})
		if err == nil {
			t.Fatalf("random-key upload of a reader shorter than size (%d) succeeded", size)
		}
	}
}

// fullServer refuses every share with ErrNoSpace before reading it, and
// does not implement Statter, so the upload only learns at WriteShare.
type fullServer struct{ grid.Server }

func (fullServer) WriteShare(ctx context.Context, si caps.StorageIndex, shnum int, size int64, r io.Reader, lease grid.Lease) error {
	return fmt.Errorf("full: %w", grid.ErrNoSpace)
}

func TestUploadNoSpaceMovesShare(t *testing.T) {
	cases := []struct {
		name        string
		servers     int
		full        int
		wantServers int
	}{
		{name: "spares take refused shares", servers: 13, full: 3, wantServers: 10},
		{name: "no spares: doubled up", servers: 10, full: 2, wantServers: 8},
		{name: "too many full", servers: 10, full: 4, wantServers: 0},
	}
	for _, tc := range cases {
		for _, size := range testUploadSizes {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				servers := gridtest.NewMemGrid(tc.servers)
				for i := range tc.full {
					servers[i] = fullServer{servers[i]}
				}
				c := newClient(t, servers, testParams(), time.Second)
				data := gridtest.Data(7, size)
				cp, err := c.Upload(ctxT(t), bytes.NewReader(data), int64(len(data)), grid.UploadOptions{})
				if tc.wantServers == 0 {
					if !errors.Is(err, grid.ErrNotHappy) {
						t.Fatalf("Upload: %v, want ErrNotHappy", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Upload: %v", err)
				}
				rep, err := c.Check(ctxT(t), cp, grid.CheckOptions{Verify: true})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.Healthy || rep.GoodServers != tc.wantServers {
					t.Fatalf("want healthy on %d servers:\n%v", tc.wantServers, rep)
				}
			})
		}
	}
}

func TestUploadCancelled(t *testing.T) {
	c, _ := faultGrid(t, 10, testParams(), time.Second)
	data := gridtest.Data(8, 50*testSegSize)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	_, err := c.Upload(ctx, bytes.NewReader(data), int64(len(data)), grid.UploadOptions{
		Progress: func(done int64) {
			if done >= 3*testSegSize {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Upload after cancel: %v, want context.Canceled", err)
	}
	// The servers stored nothing: an interrupted share stream is dropped.
	h := caps.NewKeyHasher(bytes.Repeat([]byte{7}, 32), testParams())
	h.Write(data)
	si := caps.StorageIndexOf(h.Key())
	for _, srv := range c.Servers() {
		infos, err := srv.ListShares(ctxT(t), si)
		if err != nil || len(infos) != 0 {
			t.Errorf("server %v after a cancelled upload: %v, %v", srv.ID(), infos, err)
		}
	}
	// Control: the same upload, not cancelled, lands at that storage index.
	cp := upload(t, c, data)
	if got := cp.(caps.CHKCap).VerifyCap().SI; got != si {
		t.Fatalf("upload went to %v, the test looked at %v", got, si)
	}
}
