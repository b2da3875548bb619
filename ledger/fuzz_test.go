package ledger

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeEntry(f *testing.F) {
	for _, r := range buildLog(f, testKey(1), testKey(2), 5) {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatal("decoded entry re-encodes differently")
		}
		_ = VerifyEntry(e)
		_, _ = VerifyChain(e.Author, e.Index, e.Prev, time.Time{}, [][]byte{b}, ChainOptions{})
	})
}

func FuzzDecodeMsg(f *testing.F) {
	raw := buildLog(f, testKey(1), testKey(2), 5)
	for _, m := range []*Msg{
		{Type: MsgHeads, Items: raw[3:]},
		WantMsg([]Want{{Author: pid(testKey(1)), From: 2, Count: 3}}),
		EntriesMsg(pid(testKey(1)), 0, raw),
	} {
		f.Add(must(m.Encode()))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMsg(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("decoded message re-encodes differently: %v", err)
		}
		if m.Type == MsgEntries {
			a, s, es := m.EntriesOf()
			_, _ = VerifyChain(a, s, Hash{}, time.Time{}, es, ChainOptions{})
		}
		_ = m.Wants()
	})
}

func FuzzDecodeForkProof(f *testing.F) {
	a, b := testKey(1), testKey(2)
	e1, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 0)[3])
	e2, _ := NewEntry(a, nil, t0, sampleBodies(a, b, 1)[2])
	p, _ := NewForkProof(e1.Encode(), e2.Encode())
	f.Add(p.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeForkProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Encode(), b) {
			t.Fatal("proof re-encodes differently")
		}
	})
}

func FuzzDecodeLogFile(f *testing.F) {
	a := testKey(1)
	f.Add(EncodeLogFile(pid(a), 0, buildLog(f, a, testKey(2), 4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		author, start, raw, err := DecodeLogFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeLogFile(author, start, raw), b) {
			t.Fatal("log file re-encodes differently")
		}
		_, _ = VerifyChain(author, start, Hash{}, time.Time{}, raw, ChainOptions{})
	})
}
