package ledger

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// Body is the typed content of an entry.
type Body interface {
	Kind() Kind
	appendTo(b []byte) []byte
	// check enforces the body's own rules given the entry's author.
	check(author PeerID) error
	// countersigs lists the signatures inside the body (other than the
	// entry's own) that verification must check.
	countersigs(sigs []sigCheck) []sigCheck
}

// sigCheck is one Ed25519 signature to verify: key, tag||message, signature.
type sigCheck struct {
	key PeerID
	msg []byte
	sig []byte
}

// LeaseTerms say who stores how many bytes for whom, from when until when.
// Times are Unix seconds.
type LeaseTerms struct {
	ID     [16]byte // chosen by the owner; a renewal repeats it
	Storer PeerID   // who keeps the bytes
	Owner  PeerID   // whose bytes they are
	Bytes  uint64
	Start  int64
	Until  int64
}

const termsSize = 16 + 32 + 32 + 8 + 8 + 8

func (t *LeaseTerms) appendTo(b []byte) []byte {
	b = append(b, t.ID[:]...)
	b = append(b, t.Storer[:]...)
	b = append(b, t.Owner[:]...)
	b = binary.BigEndian.AppendUint64(b, t.Bytes)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Start))
	return binary.BigEndian.AppendUint64(b, uint64(t.Until))
}

func (t *LeaseTerms) decode(b []byte) {
	copy(t.ID[:], b[0:16])
	copy(t.Storer[:], b[16:48])
	copy(t.Owner[:], b[48:80])
	t.Bytes = binary.BigEndian.Uint64(b[80:88])
	t.Start = int64(binary.BigEndian.Uint64(b[88:96]))
	t.Until = int64(binary.BigEndian.Uint64(b[96:104]))
}

// SignedBytes is what each party signs: TagLease || terms.
func (t *LeaseTerms) SignedBytes() []byte { return tagged(TagLease, t.appendTo(nil)) }

// ByteDays is the lease's size times its length in days.
func (t *LeaseTerms) ByteDays() float64 {
	return float64(t.Bytes) * float64(t.Until-t.Start) / 86400
}

func (t *LeaseTerms) check() error {
	switch {
	case t.Storer == t.Owner:
		return fmt.Errorf("lease: storer and owner are both %v: %w", t.Storer, ErrFormat)
	case t.Bytes == 0:
		return fmt.Errorf("lease: zero bytes: %w", ErrFormat)
	case t.Start < 0 || t.Until <= t.Start:
		return fmt.Errorf("lease: until %d not after start %d: %w", t.Until, t.Start, ErrFormat)
	}
	return nil
}

// SignTerms returns key's signature over the terms.
func SignTerms(key ed25519.PrivateKey, t LeaseTerms) [SigSize]byte {
	return [SigSize]byte(ed25519.Sign(key, t.SignedBytes()))
}

// Lease is a lease agreement (KindLease) or renewal (KindRenew): the terms
// and both parties' signatures over them.
type Lease struct {
	Terms     LeaseTerms
	StorerSig [SigSize]byte
	OwnerSig  [SigSize]byte
	Renewal   bool
}

func (l *Lease) Kind() Kind {
	if l.Renewal {
		return KindRenew
	}
	return KindLease
}

func (l *Lease) appendTo(b []byte) []byte {
	b = l.Terms.appendTo(b)
	b = append(b, l.StorerSig[:]...)
	return append(b, l.OwnerSig[:]...)
}

func (l *Lease) check(author PeerID) error {
	if err := l.Terms.check(); err != nil {
		return err
	}
	if author != l.Terms.Storer && author != l.Terms.Owner {
		return fmt.Errorf("lease: author %v is neither storer nor owner: %w", author, ErrFormat)
	}
	return nil
}

func (l *Lease) countersigs(s []sigCheck) []sigCheck {
	m := l.Terms.SignedBytes()
	return append(s, sigCheck{l.Terms.Storer, m, l.StorerSig[:]}, sigCheck{l.Terms.Owner, m, l.OwnerSig[:]})
}

// End records that one party ended a lease at Time (Unix seconds).
type End struct {
	ID     [16]byte
	Storer PeerID
	Owner  PeerID
	Time   int64
	Reason EndReason
}

// EndReason says why a lease ended.
type EndReason uint8

// End reasons.
const (
	EndExpired   EndReason = 1 // not renewed
	EndCancelled EndReason = 2 // the owner no longer needs it
	EndDropped   EndReason = 3 // the storer lost or refused to keep the share
	EndAudit     EndReason = 4 // the storer failed an audit
)

const endSize = 16 + 32 + 32 + 8 + 1

func (e *End) Kind() Kind { return KindEnd }

func (e *End) appendTo(b []byte) []byte {
	b = append(b, e.ID[:]...)
	b = append(b, e.Storer[:]...)
	b = append(b, e.Owner[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	return append(b, byte(e.Reason))
}

func (e *End) check(author PeerID) error {
	if e.Storer == e.Owner || (author != e.Storer && author != e.Owner) {
		return fmt.Errorf("end: author must be one of two distinct parties: %w", ErrFormat)
	}
	if e.Reason < EndExpired || e.Reason > EndAudit {
		return fmt.Errorf("end: unknown reason %d: %w", e.Reason, ErrFormat)
	}
	if e.Time < 0 {
		return fmt.Errorf("end: negative time: %w", ErrFormat)
	}
	return nil
}

func (e *End) countersigs(s []sigCheck) []sigCheck { return s }

// Op is what a receipt acknowledges.
type Op uint8

// Receipt operations.
const (
	OpStored Op = 1 // the provider accepted and keeps the receiver's bytes
	OpServed Op = 2 // the provider sent the receiver bytes
)

// ReceiptTerms say that Provider delivered Bytes to Receiver.
type ReceiptTerms struct {
	Provider PeerID
	Receiver PeerID
	Op       Op
	Bytes    uint64
	Time     int64    // Unix milliseconds
	Ref      [32]byte // what was delivered, e.g. a storage index; opaque here
}

const receiptTermsSize = 32 + 32 + 1 + 8 + 8 + 32

func (r *ReceiptTerms) appendTo(b []byte) []byte {
	b = append(b, r.Provider[:]...)
	b = append(b, r.Receiver[:]...)
	b = append(b, byte(r.Op))
	b = binary.BigEndian.AppendUint64(b, r.Bytes)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	return append(b, r.Ref[:]...)
}

// SignedBytes is what the receiver signs: TagReceipt || terms.
func (r *ReceiptTerms) SignedBytes() []byte { return tagged(TagReceipt, r.appendTo(nil)) }

// SignReceipt returns the receiver's signature over r.
func SignReceipt(key ed25519.PrivateKey, r ReceiptTerms) [SigSize]byte {
	return [SigSize]byte(ed25519.Sign(key, r.SignedBytes()))
}

// Receipt is a delivery receipt, signed by the receiver of the service.
type Receipt struct {
	Terms       ReceiptTerms
	ReceiverSig [SigSize]byte
}

func (r *Receipt) Kind() Kind { return KindReceipt }

func (r *Receipt) appendTo(b []byte) []byte {
	return append(r.Terms.appendTo(b), r.ReceiverSig[:]...)
}

func (r *Receipt) check(author PeerID) error {
	t := &r.Terms
	switch {
	case t.Provider == t.Receiver:
		return fmt.Errorf("receipt: provider is receiver: %w", ErrFormat)
	case author != t.Provider && author != t.Receiver:
		return fmt.Errorf("receipt: author is neither provider nor receiver: %w", ErrFormat)
	case t.Op != OpStored && t.Op != OpServed:
		return fmt.Errorf("receipt: unknown op %d: %w", t.Op, ErrFormat)
	case t.Time < 0:
		return fmt.Errorf("receipt: negative time: %w", ErrFormat)
	}
	return nil
}

func (r *Receipt) countersigs(s []sigCheck) []sigCheck {
	return append(s, sigCheck{r.Terms.Receiver, r.Terms.SignedBytes(), r.ReceiverSig[:]})
}

// Observation is the author's measurement of a peer on real transfers over
// a window: a rating others may weigh by how far they trust the author.
type Observation struct {
	Subject      PeerID
	Samples      uint32
	LatencyMicro uint32 // median request latency
	Throughput   uint64 // bytes per second, median over transfers
	Availability uint16 // successful attempts per 10,000
}

const observationSize = 32 + 4 + 4 + 8 + 2

func (o *Observation) Kind() Kind { return KindObservation }

func (o *Observation) appendTo(b []byte) []byte {
	b = append(b, o.Subject[:]...)
	b = binary.BigEndian.AppendUint32(b, o.Samples)
	b = binary.BigEndian.AppendUint32(b, o.LatencyMicro)
	b = binary.BigEndian.AppendUint64(b, o.Throughput)
	return binary.BigEndian.AppendUint16(b, o.Availability)
}

func (o *Observation) check(author PeerID) error {
	switch {
	case o.Subject == author:
		return fmt.Errorf("observation: author rates itself: %w", ErrFormat)
	case o.Availability > 10000:
		return fmt.Errorf("observation: availability %d > 10000: %w", o.Availability, ErrFormat)
	case o.Samples == 0:
		return fmt.Errorf("observation: no samples: %w", ErrFormat)
	}
	return nil
}

func (o *Observation) countersigs(s []sigCheck) []sigCheck { return s }

// decodeBody parses a body of the given kind; lengths are exact.
func decodeBody(k Kind, b []byte) (Body, error) {
	want := map[Kind]int{KindLease: termsSize + 2*SigSize, KindRenew: termsSize + 2*SigSize,
		KindEnd: endSize, KindReceipt: receiptTermsSize + SigSize, KindObservation: observationSize}[k]
	if want == 0 {
		return nil, fmt.Errorf("unknown entry kind %d: %w", uint8(k), ErrFormat)
	}
	if len(b) != want {
		return nil, fmt.Errorf("%v body: want %d bytes, have %d: %w", k, want, len(b), ErrFormat)
	}
	switch k {
	case KindLease, KindRenew:
		l := &Lease{Renewal: k == KindRenew}
		l.Terms.decode(b)
		copy(l.StorerSig[:], b[termsSize:])
		copy(l.OwnerSig[:], b[termsSize+SigSize:])
		return l, nil
	case KindEnd:
		e := &End{}
		copy(e.ID[:], b[0:16])
		copy(e.Storer[:], b[16:48])
		copy(e.Owner[:], b[48:80])
		e.Time = int64(binary.BigEndian.Uint64(b[80:88]))
		e.Reason = EndReason(b[88])
		return e, nil
	case KindReceipt:
		r := &Receipt{}
		t := &r.Terms
		copy(t.Provider[:], b[0:32])
		copy(t.Receiver[:], b[32:64])
		t.Op = Op(b[64])
		t.Bytes = binary.BigEndian.Uint64(b[65:73])
		t.Time = int64(binary.BigEndian.Uint64(b[73:81]))
		copy(t.Ref[:], b[81:113])
		copy(r.ReceiverSig[:], b[113:])
		return r, nil
	default: // KindObservation
		o := &Observation{}
		copy(o.Subject[:], b[0:32])
		o.Samples = binary.BigEndian.Uint32(b[32:36])
		o.LatencyMicro = binary.BigEndian.Uint32(b[36:40])
		o.Throughput = binary.BigEndian.Uint64(b[40:48])
		o.Availability = binary.BigEndian.Uint16(b[48:50])
		return o, nil
	}
}
