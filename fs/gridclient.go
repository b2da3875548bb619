package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/grid"
)

// FromClient adapts a grid client to Grid: files are CHK/literal uploads,
// directories are mutable files holding a caps directory table.
func FromClient(c *grid.Client) Grid { return clientGrid{c} }

type clientGrid struct{ c *grid.Client }

var _ StatFSer = clientGrid{}

func (g clientGrid) Upload(ctx context.Context, r io.ReaderAt, size int64) (caps.Cap, error) {
	return g.c.Upload(ctx, r, size, grid.UploadOptions{})
}

// OpenFile opens with a context that is not cancelled with ctx: a grid.File
// lives as long as its Open context, and the tree keeps files open across
// requests (it closes them itself).
func (g clientGrid) OpenFile(ctx context.Context, c caps.Cap) (File, error) {
	return g.c.Open(context.WithoutCancel(ctx), c)
}

func (g clientGrid) CreateDir(ctx context.Context, entries map[string]Entry) (caps.Cap, error) {
	empty, err := caps.NewTable().Encode(nil)
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	c, err := g.c.CreateMutable(ctx, empty, true)
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	if len(entries) > 0 {
		changes := make([]Change, 0, len(entries))
		for name, e := range entries {
			changes = append(changes, Change{Name: name, New: &e})
		}
		if err := g.ModifyDir(ctx, c, changes); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// dirWriteCap returns the directory write cap in c, if it is one.
func dirWriteCap(c caps.Cap) (caps.MutableWriteCap, bool) {
	switch wc := c.(type) {
	case caps.MutableWriteCap:
		return wc, wc.Dir
	case *caps.MutableWriteCap:
		if wc != nil {
			return *wc, wc.Dir
		}
	}
	return caps.MutableWriteCap{}, false
}

func (g clientGrid) ReadDir(ctx context.Context, c caps.Cap) (map[string]Entry, error) {
	if !g.IsDir(c) {
		return nil, fmt.Errorf("read directory: a %s cap: %w", c.Kind(), ErrNotDir)
	}
	content, _, err := g.c.Retrieve(ctx, c)
	if err != nil {
		return nil, err
	}
	var wcp *caps.MutableWriteCap
	if wc, ok := dirWriteCap(c); ok {
		wcp = &wc
	}
	t, err := caps.DecodeTable(content, wcp)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Entry, t.Len())
	for _, ce := range t.Entries() {
		e, err := fromTableEntry(ce)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", ce.Name, err)
		}
		out[ce.Name] = e
	}
	return out, nil
}

func fromTableEntry(ce caps.Entry) (Entry, error) {
	e := Entry{Type: ce.Type, Size: int64(ce.Size), Mode: ce.Mode & 0o7777,
		Mtime: time.Unix(0, ce.MTime), Target: ce.Target}
	if e.Size < 0 {
		return Entry{}, fmt.Errorf("size %d: %w", ce.Size, caps.ErrFormat)
	}
	s := ce.WriteCap
	if s == "" {
		s = ce.ReadCap
	}
	if s != "" {
		c, err := caps.Parse(s)
		if err != nil {
			return Entry{}, err
		}
		e.Cap = c
	}
	return e, nil
}

func (g clientGrid) toTableEntry(name string, e *Entry) (*caps.Entry, error) {
	if e == nil {
		return nil, nil
	}
	ce := &caps.Entry{Name: name, Type: e.Type, Size: uint64(e.Size), Mode: e.Mode,
		MTime: e.Mtime.UnixNano(), Target: e.Target}
	if e.Type != TypeSymlink {
		if e.Cap == nil {
			return nil, fmt.Errorf("entry %q: no cap", name)
		}
		rc, err := g.ReadOnly(e.Cap)
		if err != nil {
			return nil, err
		}
		ce.ReadCap = rc.String()
		if g.Writable(e.Cap) {
			ce.WriteCap = e.Cap.String()
		}
	}
	if e.Mtime.IsZero() {
		ce.MTime = 0
	}
	return ce, nil
}

func (g clientGrid) ModifyDir(ctx context.Context, c caps.Cap, changes []Change) error {
	wc, ok := dirWriteCap(c)
	if !ok {
		return fmt.Errorf("modify directory: a %s cap: %w", c.Kind(), ErrReadOnly)
	}
	cchanges := make([]caps.Change, len(changes))
	for i, ch := range changes {
		ne, err := g.toTableEntry(ch.Name, ch.New)
		if err != nil {
			return fmt.Errorf("modify directory: %w", err)
		}
		cchanges[i] = caps.Change{Name: ch.Name, New: ne, Prev: ch.Prev.Ident(g.ReadOnly)}
	}
	_, err := g.c.Modify(ctx, wc, func(old []byte, _ grid.Version) ([]byte, error) {
		t, err := caps.DecodeTable(old, &wc)
		if err != nil {
			return nil, err
		}
		if err := t.Apply(cchanges); err != nil {
			return nil, err
		}
		return t.Encode(&wc)
	})
	var ce *caps.ConflictError
	if errors.As(err, &ce) {
		return &ConflictError{Name: ce.Name}
	}
	return err
}

func (g clientGrid) IsDir(c caps.Cap) bool {
	k := c.Kind()
	return k == caps.KindDirWrite || k == caps.KindDirRead
}

func (g clientGrid) Writable(c caps.Cap) bool { return c.Kind() == caps.KindDirWrite }

func (g clientGrid) ReadOnly(c caps.Cap) (caps.Cap, error) {
	switch c.Kind() {
	case caps.KindDirWrite, caps.KindMutableWrite:
		rc, ok := caps.MutableReadCapOf(c)
		if !ok {
			return nil, fmt.Errorf("read cap of a %s cap: %w", c.Kind(), ErrInvalid)
		}
		return rc, nil
	}
	return c, nil
}

// StatFS sums the servers' quotas and use, asking them all at once within
// 2 s (df must not hang on a stalled server); servers without a quota, or
// that do not answer, count as a nominal 1 TiB each.
func (g clientGrid) StatFS(ctx context.Context) (total, free uint64, err error) {
	const nominal = 1 << 40
	servers := g.c.Servers()
	type answer struct{ total, free uint64 }
	answers := make(chan answer, len(servers))
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, s := range servers {
		go func() {
			a := answer{nominal, nominal}
			if st, ok := s.(grid.Statter); ok {
				if v, err := st.Stat(sctx); err == nil && v.Quota > 0 {
					a.total, a.free = uint64(v.Quota), 0
					if v.Quota > v.Used {
						a.free = uint64(v.Quota - v.Used)
					}
				}
			}
			answers <- a
		}()
	}
	for range servers {
		select {
		case a := <-answers:
			total += a.total
			free += a.free
		case <-sctx.Done():
			total += nominal // a stalled server: count it nominally
			free += nominal
		}
	}
	// Every byte is stored about N/K times over.
	if p := g.c.Params(); p.K > 0 && p.N > 0 {
		total = total / uint64(p.N) * uint64(p.K)
		free = free / uint64(p.N) * uint64(p.K)
	}
	return total, free, nil
}
