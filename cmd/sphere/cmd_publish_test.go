package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sphere-grid/sphere/web/webtest"
)

// setParams rewrites a home's erasure-coding parameters (a two-node grid
// cannot hold 3-of-10 with 7 distinct servers).
func setParams(t *testing.T, homeDir string, k, happy, n int) {
	t.Helper()
	p := filepath.Join(homeDir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	params := cfg["params"].(map[string]any)
	params["K"], params["Happy"], params["N"] = k, happy, n
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var siteURLRE = regexp.MustCompile(`http://([a-z2-7]+)\.localhost:([0-9]+)/`)

// gitIn runs git in dir with the home and the helper on PATH.
func gitIn(t *testing.T, dir, homeDir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "SPHERE_HOME="+homeDir, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPublishPushOpenInBrowser: a site published on node A with a real
// git push opens in real Chromium on node B, which holds only its
// address; a second push updates what B's browser shows.
func TestPublishPushOpenInBrowser(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	t.Setenv("SPHERE_GATEWAY", "127.0.0.1:0")
	c := newCluster(t)
	for _, h := range []string{"a", "b"} {
		if _, err := c.run(h, "init"); err != nil {
			t.Fatal(err)
		}
		setParams(t, c.home(h), 1, 2, 2)
	}
	pa := c.start("a", "node")
	c.waitReady("a", pa)
	out, err := c.run("a", "invite")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("b", "join", lastLine(out)); err != nil {
		t.Fatal(err)
	}
	pb := c.start("b", "node")
	c.waitReady("b", pb)
	for try := 0; len(c.status("a").Connected) < 1 || len(c.status("b").Connected) < 1; try++ {
		if try == 100 {
			t.Fatal("nodes did not connect")
		}
		time.Sleep(100 * time.Millisecond)
	}

	dir := filepath.Join(c.dir, "site")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, c.home("a"), c.bin, "init", "-q", "-b", "main")
	write("index.html", `<!doctype html><h1>PUSHED-ONE</h1><script src="/_sphere/app.js"></script><script src="/show.js"></script>`)
	write("show.js", `sphere.ready.then(() => sphere.status("SHOWING " + document.querySelector("h1").textContent));`)
	gitIn(t, dir, c.home("a"), c.bin, "add", "-A")
	gitIn(t, dir, c.home("a"), c.bin, "commit", "-qm", "one")
	out, err = c.run("a", "publish", dir)
	if err != nil {
		t.Fatal(err)
	}
	addr := capRE.FindString(out)
	if !strings.HasPrefix(addr, "sphere:mut-ro:") || !siteURLRE.MatchString(out) {
		t.Fatalf("publish printed no address or URL:\n%s", out)
	}
	if remotes := gitIn(t, dir, c.home("a"), c.bin, "remote", "-v"); !strings.Contains(remotes, "sphere::"+addr) {
		t.Fatalf("remotes: %s", remotes)
	}

	// Node B knows only the address.
	out, err = c.run("b", "open", addr)
	if err != nil {
		t.Fatal(err)
	}
	m := siteURLRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("open printed no URL: %s", out)
	}
	shell := "http://localhost:" + m[2] + "/s/" + m[1] + "/"
	show := func(want string) {
		t.Helper()
		var got string
		for try := 0; try < 10; try++ {
			if err := chromedp.Do(ctx, chromedp.Navigate(shell)); err != nil {
				t.Fatal(err)
			}
			got = webtest.WaitText(t, ctx, webtest.ShellStatus, func(s string) bool { return strings.HasPrefix(s, "SHOWING") })
			if got == "SHOWING "+want {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("browser on node B shows %q, want %q", got, "SHOWING "+want)
	}
	show("PUSHED-ONE")

	// A second push with a real git client updates it.
	write("index.html", `<!doctype html><h1>PUSHED-TWO</h1><script src="/_sphere/app.js"></script><script src="/show.js"></script>`)
	gitIn(t, dir, c.home("a"), c.bin, "commit", "-qam", "two")
	gitIn(t, dir, c.home("a"), c.bin, "push", "-q", "sphere", "main")
	show("PUSHED-TWO")

	// B cannot push: it holds only the address.
	clone := filepath.Join(c.dir, "clone")
	gitIn(t, c.dir, c.home("b"), c.bin, "clone", "-q", "sphere::"+addr, clone)
	if b, err := os.ReadFile(filepath.Join(clone, "index.html")); err != nil || !strings.Contains(string(b), "PUSHED-TWO") {
		t.Fatalf("clone on B: %q %v", b, err)
	}
	cmd := exec.Command("git", "-C", clone, "push", "origin", "main:refs/heads/other")
	cmd.Env = append(os.Environ(), "SPHERE_HOME="+c.home("b"), "PATH="+filepath.Dir(c.bin)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("push from a home without the write cap succeeded: %s", out)
	}
}
