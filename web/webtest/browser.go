// Package webtest holds test helpers for the web gateway shared by the
// web and cmd/sphere tests: starting headless Chromium.
package webtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds Chromium; without it the test skips, or fails when
// SPHERE_REQUIRE_BROWSER=1 or SPHERE_REQUIRE_FUSE=1 (CI) is set.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SPHERE_REQUIRE_BROWSER") == "1" || os.Getenv("SPHERE_REQUIRE_FUSE") == "1" {
		t.Fatal("Chromium is required (SPHERE_REQUIRE_BROWSER or SPHERE_REQUIRE_FUSE is set) but not installed: apt-get install chromium")
	}
	t.Skip("Chromium not installed (apt-get install chromium)")
	return ""
}

// NewBrowser starts headless Chromium with a fresh profile, no sandbox
// (tests run as root), no QUIC and no background networking: it only
// reaches what a test points it at. It stops when the test ends.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	path := ChromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1200, 800),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// WaitText polls a JS expression yielding a string until ok accepts it,
// for up to 15 s, and returns the last value.
func WaitText(t testing.TB, ctx context.Context, expr string, ok func(string) bool) string {
	t.Helper()
	var s string
	var err error
	// Up to 60 s: the first app load in a cold browser, while the rest of
	// the suite loads both cores, took over 15 s once in CI.
	for range 600 {
		if s, err = chromedp.Run(ctx, chromedp.Evaluate[string](expr)); err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		if ok(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// ShellStatus is the JS expression for the shell page's status line,
// which apps set with sphere.status().
const ShellStatus = `document.getElementById("app-status") ? document.getElementById("app-status").textContent : ""`
