package site

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/sphere-grid/sphere/caps"
)

// BundleWriter writes objects into a bundle and records their index
// entries.
type BundleWriter struct {
	w       *bufio.Writer
	off     uint64
	entries []IndexEntry
	seen    map[ID]bool
}

// NewBundleWriter starts a bundle on w.
func NewBundleWriter(w io.Writer) (*BundleWriter, error) {
	bw := &BundleWriter{w: bufio.NewWriterSize(w, 1<<20), seen: map[ID]bool{}}
	if _, err := bw.w.WriteString(BundleMagic); err != nil {
		return nil, err
	}
	bw.off = uint64(len(BundleMagic))
	return bw, nil
}

// Add appends one object's content (size bytes from r).
func (b *BundleWriter) Add(id ID, typ byte, r io.Reader, size int64) error {
	if TypeName(typ) == "" || size < 0 {
		return fmt.Errorf("bundle: object %s: type %d size %d: %w", id, typ, size, ErrFormat)
	}
	if b.seen[id] {
		_, err := io.CopyN(io.Discard, r, size)
		return err
	}
	n, err := io.CopyN(b.w, r, size)
	if err != nil {
		return fmt.Errorf("bundle: object %s: %w", id, err)
	}
	b.entries = append(b.entries, IndexEntry{ID: id, Loc: Loc{Type: typ, Offset: b.off, Size: uint64(n)}})
	b.seen[id] = true
	b.off += uint64(n)
	return nil
}

// Len is the number of objects added.
func (b *BundleWriter) Len() int { return len(b.entries) }

// Size is the bundle's size so far.
func (b *BundleWriter) Size() int64 { return int64(b.off) }

// Finish flushes the bundle and returns its index file.
func (b *BundleWriter) Finish() ([]byte, error) {
	if err := b.w.Flush(); err != nil {
		return nil, err
	}
	return EncodeIndex(b.entries), nil
}

// Commit stores a bundle (size bytes of bundle) with its index, adds it to
// the site wc names and applies edit to the refs, in one update of the
// refs file. With an empty index no pack is added.
func Commit(ctx context.Context, st Store, wc caps.Cap, bundle io.ReaderAt, size int64, index []byte, edit func(*Refs) error) (*Refs, error) {
	var pack *Pack
	if len(index) > len(IndexMagic)+4 {
		bc, err := st.Upload(ctx, bundle, size)
		if err != nil {
			return nil, fmt.Errorf("store bundle: %w", err)
		}
		ic, err := st.Upload(ctx, bytesReaderAt(index), int64(len(index)))
		if err != nil {
			return nil, fmt.Errorf("store index: %w", err)
		}
		pack = &Pack{Bundle: bc, Index: ic}
	}
	var out *Refs
	err := st.Modify(ctx, wc, func(old []byte) ([]byte, error) {
		r, err := ParseRefs(old)
		if err != nil {
			return nil, err
		}
		if pack != nil {
			r.Packs = append(r.Packs, *pack)
		}
		if edit != nil {
			if err := edit(r); err != nil {
				return nil, err
			}
		}
		out = r
		return r.Encode()
	})
	if err != nil {
		return nil, fmt.Errorf("update refs: %w", err)
	}
	return out, nil
}

// New creates an empty site and returns its write cap.
func New(ctx context.Context, st Store) (caps.Cap, error) {
	b, err := (&Refs{}).Encode()
	if err != nil {
		return nil, err
	}
	wc, err := st.Create(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("create site: %w", err)
	}
	return wc, nil
}

// Fork creates a new site holding the refs and packs of the site at
// address: every object is shared, nothing but a refs file is stored.
func Fork(ctx context.Context, st Store, address caps.Cap) (caps.Cap, error) {
	b, err := st.Retrieve(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("read site: %w", err)
	}
	r, err := ParseRefs(b)
	if err != nil {
		return nil, err
	}
	nb, err := r.Encode()
	if err != nil {
		return nil, err
	}
	wc, err := st.Create(ctx, nb)
	if err != nil {
		return nil, fmt.Errorf("create fork: %w", err)
	}
	return wc, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
