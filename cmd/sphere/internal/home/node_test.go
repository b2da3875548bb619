package home

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

func TestInitNode(t *testing.T) {
	h, err := Init(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if h.NodeReady() {
		t.Fatal("node ready before InitNode")
	}
	if err := InitNode(h); err != nil {
		t.Fatal(err)
	}
	if !h.NodeReady() || len(h.Config.Node.Listen) != 1 || !strings.HasPrefix(h.Config.Node.Listen[0], "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("listen %v", h.Config.Node.Listen)
	}
	key, err := h.GridKey()
	if err != nil || len(key) != GridKeySize {
		t.Fatalf("grid key %x, %v", key, err)
	}
	_, id, err := h.NodeIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second call keeps identity, key and ports.
	listen := h.Config.Node.Listen[0]
	h2, err := Open(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitNode(h2); err != nil {
		t.Fatal(err)
	}
	key2, _ := h2.GridKey()
	_, id2, _ := h2.NodeIdentity()
	if h2.Config.Node.Listen[0] != listen || !bytes.Equal(key, key2) || id != id2 {
		t.Fatal("InitNode changed an initialised node")
	}
	fi, err := os.Stat(h.Path("secrets", "grid.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("grid.key: %v, %v", fi, err)
	}
}

func TestGridKeyFromConfig(t *testing.T) {
	h, err := Init(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitNode(h); err != nil {
		t.Fatal(err)
	}
	joined := bytes.Repeat([]byte{9}, GridKeySize)
	h.Config.Node.GridKey = hex.EncodeToString(joined)
	if k, err := h.GridKey(); err != nil || !bytes.Equal(k, joined) {
		t.Fatalf("joined grid key %x, %v", k, err)
	}
	h.Config.Node.GridKey = "abcd"
	if _, err := h.GridKey(); err == nil {
		t.Fatal("short grid key accepted")
	}
}
