package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sphere-grid/sphere/web/webtest"
)

func newBrowser(t *testing.T) context.Context { return webtest.NewBrowser(t) }

func waitText(t *testing.T, ctx context.Context, expr string, ok func(string) bool) string {
	return webtest.WaitText(t, ctx, expr, ok)
}

const statusExpr = webtest.ShellStatus

// attackJS are the escape attempts: each reports through the app API
// ("RESULT blocked" or "RESULT ESCAPED: ..."), or is judged from the
// gateway's request log when it leaves the page.
func attackJS(gw, other string) map[string]string {
	report := `const report = (ok, why) => sphere.status(ok ? "RESULT blocked" : "RESULT ESCAPED: " + why);
const tryAll = async fns => { for (const [name, fn] of fns) { try { const r = await fn(); if (r !== false) return report(false, name + " -> " + r); } catch (e) {} } report(true); };
`
	return map[string]string{
		"control.js": `sphere.ready.then(async () => {
  document.body.dataset.ran = "yes";
  await sphere.writeData("notes/hello.txt", "kept by the app");
  const back = await sphere.readData("notes/hello.txt");
  sphere.status(back === "kept by the app" ? "RESULT ran" : "RESULT data mismatch: " + back);
});`,
		"token.js": report + `tryAll([
  ["parent.document", () => parent.document.querySelector('meta[name="sphere-token"]').content],
  ["top.document", () => top.document.body.innerHTML],
  ["fetch gateway page", async () => (await (await fetch("` + gw + `")).text()).slice(0, 40)],
  ["xhr gateway page", () => new Promise((res, rej) => { const x = new XMLHttpRequest(); x.open("GET", "` + gw + `"); x.onload = () => res(x.responseText.slice(0, 40)); x.onerror = rej; x.send(); })],
  ["opener", () => window.opener ? "has opener" : false],
]);`,
		"api.js": report + `tryAll([
  ["fetch status", async () => { const r = await fetch("` + gw + `api/status"); return r.status; }],
  ["fetch mkdir", async () => { const r = await fetch("` + gw + `api/mkdir", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"cap":"home","path":"pwned"}'}); return r.status; }],
  ["no-cors mkdir", async () => { await fetch("` + gw + `api/mkdir", {method: "POST", mode: "no-cors", body: '{"cap":"home","path":"pwned"}'}); return "sent"; }],
  // sendBeacon answers true even when CSP drops it: the request log judges it.
  ["beacon", () => { navigator.sendBeacon("` + gw + `api/mkdir", '{"cap":"home","path":"pwned"}'); return new Promise(r => setTimeout(() => r(false), 500)); }],
]);`,
		"fetchother.js": report + `tryAll([
  ["fetch other app", async () => (await (await fetch("` + other + `secret.txt")).text())],
  ["no-cors other app", async () => { await fetch("` + other + `secret.txt", {mode: "no-cors"}); return "sent"; }],
  ["img other app", () => new Promise((res) => { const i = new Image(); i.onload = () => res("loaded"); i.onerror = () => res(false); i.src = "` + other + `pic.png"; })],
]);`,
		"frameother.js": `sphere.ready.then(() => {
  const f = document.createElement("iframe"); f.src = "` + other + `"; document.body.append(f);
  const o = document.createElement("object"); o.data = "` + other + `"; document.body.append(o);
  setTimeout(() => sphere.status("RESULT blocked"), 1500);
});`,
		"navother.js":   `sphere.ready.then(async () => { await sphere.status("RESULT navigating"); location.href = "` + other + `"; });`,
		"navgateway.js": `sphere.ready.then(async () => { await sphere.status("RESULT navigating"); location.href = "` + gw + `"; });`,
		"topnav.js": report + `sphere.ready.then(() => {
  try { top.location.href = "` + gw + `?escaped"; } catch (e) {}
  try { window.open("` + gw + `?escaped", "_top"); } catch (e) {}
  setTimeout(() => report(true), 1500);
});`,
		"windows.js": report + `tryAll([
  ["window.open", () => { const w = window.open("` + gw + `?popup"); return w ? "opened" : false; }],
  ["link target _blank", () => { const a = document.createElement("a"); a.href = "` + gw + `?popup2"; a.target = "_blank"; document.body.append(a); a.click(); return false; }],
]).then(() => {});`,
		"sw.js": report + `tryAll([
  ["serviceWorker.register", async () => { if (!navigator.serviceWorker) return false; await navigator.serviceWorker.register("/worker.js"); return "registered"; }],
  ["Worker", () => { new Worker("/worker.js"); return "worker started"; }],
]);`,
		"storage.js": report + `tryAll([
  ["cookie write", () => { document.cookie = "x=1"; return document.cookie.includes("x=1") ? "cookie set" : false; }],
  ["localStorage", () => { localStorage.setItem("x", "1"); return "localStorage"; }],
  ["sessionStorage", () => { sessionStorage.setItem("x", "1"); return "sessionStorage"; }],
  ["indexedDB", () => new Promise((res) => { const r = indexedDB.open("x"); r.onsuccess = () => res("indexedDB"); r.onerror = () => res(false); })],
  ["caches", async () => { await caches.open("x"); return "caches"; }],
]);`,
		"forms.js": `sphere.ready.then(() => {
  const f = document.createElement("form"); f.method = "GET"; f.action = "/formhit"; f.target = "_self";
  document.body.append(f); f.submit();
  const g = document.createElement("form"); g.method = "POST"; g.action = "` + gw + `api/mkdir"; g.target = "_top";
  document.body.append(g); g.submit();
  setTimeout(() => sphere.status("RESULT blocked"), 1500);
});`,
	}
}

// attackSite builds the site of escape attempts (A) and the victim (B).
func attackSite(t *testing.T, e *testEnv) (a, b string) {
	b, _ = e.publish(gitRepo(t, map[string]string{"index.html": "<h1>VICTIM-B</h1>", "secret.txt": "B-SECRET", "pic.png": "x"}))
	files := map[string]string{"worker.js": "self.onmessage = () => {};"}
	for name, js := range attackJS(e.gwURL(), e.appURL(b)+"/") {
		files[name] = js
		page := strings.TrimSuffix(name, ".js")
		files[page+".html"] = `<!doctype html><meta charset="utf-8"><title>` + page + `</title><h1>attack ` + page +
			`</h1><script src="/_sphere/app.js"></script><script src="/` + name + `"></script>`
	}
	a, _ = e.publish(gitRepo(t, files))
	return a, b
}

func TestBrowserSandbox(t *testing.T) {
	ctx := newBrowser(t)
	e := newEnv(t)
	a, b := attackSite(t, e)
	open := func(t *testing.T, page string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(e.gwURL()+"s/"+a+"/"+page+".html")); err != nil {
			t.Fatal(err)
		}
	}
	result := func(t *testing.T) string {
		t.Helper()
		return waitText(t, ctx, statusExpr, func(s string) bool { return strings.HasPrefix(s, "RESULT") && s != "RESULT navigating" })
	}
	noneServed := func(t *testing.T, host string) {
		t.Helper()
		for _, r := range e.requests(host, "/") {
			if r.Status == 200 {
				t.Errorf("%s%s served to the app (dest %s)", r.Host, r.Path, r.Dest)
			}
		}
	}
	bHost := e.appHost(b)

	t.Run("control", func(t *testing.T) {
		open(t, "control")
		// The app asks for its data folder: the user allows it.
		waitText(t, ctx, `document.getElementById("ask").hidden ? "" : document.getElementById("ask-text").textContent`,
			func(s string) bool { return s != "" })
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("ask-yes"))); err != nil {
			t.Fatal(err)
		}
		if got := result(t); got != "RESULT ran" {
			t.Fatalf("control: %q", got)
		}
		in, err := e.treeList("apps/" + a + "/notes")
		if err != nil || !strings.Contains(in, "hello.txt") {
			t.Fatalf("app data not in the drive: %q %v", in, err)
		}
	})
	t.Run("control denied", func(t *testing.T) {
		open(t, "control")
		waitText(t, ctx, `document.getElementById("ask").hidden ? "" : "asked"`, func(s string) bool { return s != "" })
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("ask-no"))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](statusExpr))
		if s == "RESULT ran" {
			t.Fatal("data API worked after the user denied it")
		}
	})
	for _, name := range []string{"token", "api", "fetchother", "windows", "sw", "storage"} {
		t.Run(name, func(t *testing.T) {
			before := len(e.requests("", "/api/"))
			open(t, name)
			if got := result(t); got != "RESULT blocked" {
				t.Fatalf("%s: %q", name, got)
			}
			noneServed(t, bHost)
			for _, r := range e.requests("", "/api/")[before:] {
				if r.Path != "/api/launch" && r.Path != "/api/status" {
					t.Errorf("API reached: %+v", r)
				}
				if r.Path == "/api/status" && r.Status == 200 {
					t.Errorf("API status answered: %+v", r)
				}
			}
			if _, err := e.treeList("pwned"); err == nil {
				t.Fatal("the app made a folder in the drive")
			}
		})
	}
	t.Run("frameother", func(t *testing.T) {
		open(t, "frameother")
		if got := result(t); got != "RESULT blocked" {
			t.Fatalf("%q", got)
		}
		noneServed(t, bHost)
	})
	t.Run("navother", func(t *testing.T) {
		open(t, "navother")
		waitText(t, ctx, statusExpr, func(s string) bool { return strings.Contains(s, "navigated away") })
		refused := false
		for _, r := range e.requests(bHost, "/") {
			if r.Dest == "iframe" && r.Status == 403 {
				refused = true
			}
		}
		if !refused {
			t.Fatalf("no refused frame load of B: %+v", e.requests(bHost, "/"))
		}
		noneServed(t, bHost)
	})
	t.Run("navgateway", func(t *testing.T) {
		before := len(e.requests(e.ownHost(), "/"))
		open(t, "navgateway")
		waitText(t, ctx, statusExpr, func(s string) bool { return strings.Contains(s, "navigated away") })
		for _, r := range e.requests(e.ownHost(), "/")[before:] {
			if r.Dest == "iframe" && r.Status != 403 {
				t.Fatalf("gateway page served into the app's frame: %+v", r)
			}
		}
	})
	t.Run("topnav", func(t *testing.T) {
		open(t, "topnav")
		if got := result(t); got != "RESULT blocked" {
			t.Fatalf("%q", got)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(loc, "escaped") || !strings.Contains(loc, "/s/"+a+"/") {
			t.Fatalf("top window navigated to %s", loc)
		}
	})
	t.Run("forms", func(t *testing.T) {
		before := len(e.requests("", "/api/mkdir"))
		open(t, "forms")
		if got := result(t); got != "RESULT blocked" {
			t.Fatalf("%q", got)
		}
		if n := len(e.requests(e.appHost(a), "/formhit")); n != 0 {
			t.Fatalf("form submitted %d times", n)
		}
		if n := len(e.requests("", "/api/mkdir")); n != before {
			t.Fatal("form reached the API")
		}
	})
	if dir := os.Getenv("SPHERE_SCREENSHOTS"); dir != "" {
		screenshots(t, ctx, e, dir, b)
	}
}

// screenshots saves PNGs of the gateway's pages into dir (docs/screenshots).
func screenshots(t *testing.T, ctx context.Context, e *testEnv, dir, siteID string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer " + e.token(), "Content-Type": "application/json"}
	for _, d := range []string{"Photos", "Projects"} {
		e.raw("POST", e.ownHost(), "/api/mkdir", auth, fmt.Sprintf(`{"cap":"home","path":%q}`, d))
	}
	e.raw("PUT", e.ownHost(), "/api/upload?cap=home&path=notes.txt", map[string]string{"Authorization": "Bearer " + e.token()}, "hello from the gateway")
	shots := []struct{ name, url string }{
		{"gateway-home.png", e.gwURL()},
		{"gateway-folder.png", e.gwURL() + "uri/home/Photos/"},
		{"gateway-site-shell.png", e.gwURL() + "s/" + siteID + "/"},
	}
	for _, s := range shots {
		if err := chromedp.Do(ctx, chromedp.Navigate(s.url), chromedp.Sleep(700*time.Millisecond)); err != nil {
			t.Fatalf("screenshot %s: %v", s.name, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", s.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, s.name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
