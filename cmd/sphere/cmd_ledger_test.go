package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-grid/sphere/ledger"
)

// TestLedgerVerifyFile: a log file verifies offline; an altered one exits 5
// and names the entry.
func TestLedgerVerifyFile(t *testing.T) {
	t.Setenv("SPHERE_HOME", filepath.Join(t.TempDir(), "none"))
	_, key, _ := ed25519.GenerateKey(nil)
	var prev *ledger.Entry
	var raw [][]byte
	for i := range 5 {
		e, err := ledger.NewEntry(key, prev, time.Now(), &ledger.Observation{Subject: ledger.PeerID{byte(i + 1)}, Samples: 1})
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, e.Encode())
		prev = e
	}
	author := ledger.PeerIDOf(key.Public().(ed25519.PublicKey))
	good := filepath.Join(t.TempDir(), "good.log")
	os.WriteFile(good, ledger.EncodeLogFile(author, 0, raw), 0o600)
	if out := mustRun(t, "ledger", "verify", good); !strings.Contains(out, "5 entries") {
		t.Fatalf("verify: %q", out)
	}
	raw[3] = append([]byte(nil), raw[3]...)
	raw[3][60] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.log")
	os.WriteFile(bad, ledger.EncodeLogFile(author, 0, raw), 0o600)
	if errs := mustFail(t, exitCorrupt, "ledger", "verify", bad); !strings.Contains(errs, "entry 3") {
		t.Fatalf("altered log: %q", errs)
	}
	// Without a running node, a peer id cannot be checked, and says why.
	mustFail(t, exitNoHome, "ledger", "verify", "12D3KooWNotAPeerAtAll")
	mustFail(t, exitNoHome, "ledger")
}

// TestSimCommand: the table has a row per policy; --json parses; a bad
// policy is a usage error.
func TestSimCommand(t *testing.T) {
	out := mustRun(t, "sim", "--peers", "150", "--days", "8")
	for _, p := range []string{"random", "ring", "ring+ledger", "learned"} {
		if !strings.Contains(out, "\n"+strings.Repeat(" ", 13-len(p))+p+" ") && !strings.Contains(out, " "+p+" ") {
			t.Fatalf("no row for %s:\n%s", p, out)
		}
	}
	js := mustRun(t, "sim", "--peers", "100", "--days", "3", "--policy", "learned", "--json")
	var v struct{ Results []map[string]any }
	if err := json.Unmarshal([]byte(js), &v); err != nil || len(v.Results) != 1 || v.Results[0]["policy"] != "learned" {
		t.Fatalf("sim --json: %v %s", err, js)
	}
	mustFail(t, exitUsage, "sim", "--policy", "oracle")
}
