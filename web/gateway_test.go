package web

import (
	"net/http"
	"strings"
	"testing"
)

var testSite = map[string]string{
	"index.html":      "<!doctype html><h1>hello MARK-1</h1><script src=\"app.js\"></script>",
	"app.js":          "document.title='ran';",
	"style.css":       "h1{color:red}",
	"sub/page.html":   "<p>sub</p>",
	"sub/index.html":  "<p>sub index</p>",
	"data/big.bin":    strings.Repeat("0123456789", 5000),
	"weird name.txt":  "spaces",
	"%2e%2e/trap.txt": "a file whose name looks like an escape",
}

func TestServeSite(t *testing.T) {
	e := newEnv(t)
	id, _ := e.publish(gitRepo(t, testSite))
	host := e.appHost(id)
	cases := []struct {
		path, want, ctype string
		status            int
	}{
		{"/", "MARK-1", "text/html", 200},
		{"/index.html", "MARK-1", "text/html", 200},
		{"/app.js", "document.title", "text/javascript", 200},
		{"/style.css", "color:red", "text/css", 200},
		{"/sub/", "sub index", "text/html", 200},
		{"/sub", "", "", 301},
		{"/sub/page.html", "<p>sub</p>", "text/html", 200},
		{"/weird%20name.txt", "spaces", "text/plain", 200},
		{"/nope.html", "", "", 404},
		{"/_sphere/app.js", "window.sphere", "text/javascript", 200},
	}
	for _, c := range cases {
		resp, body := e.raw("GET", host, c.path, nil, "")
		if resp.StatusCode != c.status || !strings.Contains(body, c.want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s: %d %q %q; want %d %q %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), clip(body), c.status, c.want, c.ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox allow-scripts;") {
			t.Errorf("GET %s: CSP %q lacks sandbox", c.path, csp)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s without Sec-Fetch: CORS header sent", c.path)
		}
	}
	// Range requests on a site file.
	resp, body := e.raw("GET", host, "/data/big.bin", map[string]string{"Range": "bytes=10-19"}, "")
	if resp.StatusCode != 206 || body != "0123456789" || resp.Header.Get("Content-Range") != "bytes 10-19/50000" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
}

func TestPathTraversal(t *testing.T) {
	e := newEnv(t)
	id, _ := e.publish(gitRepo(t, testSite))
	for _, p := range []string{
		"/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc/passwd",
		"/%252e%252e/etc/passwd", "/sub/../../etc/passwd", "/.%2e/etc/passwd", "/%2E%2E/etc/passwd",
		"/..%5c..%5cetc/passwd", "/..\\..\\etc\\passwd", "/%c0%ae%c0%ae/etc/passwd", "/%00/etc/passwd",
		"//etc/passwd", "/sub/./../index.html", "/%2e%2e%2fetc%2fpasswd", "/.%252e/etc/passwd",
	} {
		for _, host := range []string{e.appHost(id), e.ownHost()} {
			resp, body := e.raw("GET", host, p, nil, "")
			if strings.Contains(body, "root:") || (resp.StatusCode == 200 && host != e.ownHost()) {
				t.Errorf("%s%s: %d %q", host, p, resp.StatusCode, clip(body))
			}
			if host != e.ownHost() && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
				t.Errorf("%s%s: error response without CSP sandbox", host, p)
			}
		}
	}
	// A file literally named "%2e%2e" inside the site is its own file.
	resp, body := e.raw("GET", e.appHost(id), "/%252e%252e/trap.txt", nil, "")
	if resp.StatusCode != 200 || body != "a file whose name looks like an escape" {
		t.Fatalf("literal %%2e%%2e dir: %d %q", resp.StatusCode, body)
	}
}

func TestForgedHost(t *testing.T) {
	e := newEnv(t)
	for _, h := range []string{"evil.example:" + e.port, "evil.example", "localhost", "localhost:1", "a.b.localhost:" + e.port,
		"127.0.0.2:" + e.port, "localhost.evil.example:" + e.port, ""} {
		resp, _ := e.raw("GET", h, "/", nil, "")
		if resp.StatusCode < 400 {
			t.Errorf("Host %q: %d", h, resp.StatusCode)
		}
		resp, _ = e.raw("GET", h, "/api/status", map[string]string{"Authorization": "Bearer " + e.token()}, "")
		if resp.StatusCode < 400 {
			t.Errorf("Host %q API: %d", h, resp.StatusCode)
		}
	}
	if resp, _ := e.raw("GET", e.ownHost(), "/", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("own host refused: %d", resp.StatusCode)
	}
}

func TestAPIGuards(t *testing.T) {
	e := newEnv(t)
	auth := "Bearer " + e.token()
	mk := `{"cap":"home","path":"made"}`
	js := map[string]string{"Content-Type": "application/json"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range js {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		want               int
	}{
		{"missing token", "POST", "/api/mkdir", with(), mk, 401},
		{"wrong token", "POST", "/api/mkdir", with("Authorization", "Bearer x"), mk, 401},
		{"token in query", "POST", "/api/mkdir?token=" + e.token(), with(), mk, 401},
		{"token as cookie", "POST", "/api/mkdir", with("Cookie", "token="+e.token()), mk, 401},
		{"foreign origin", "POST", "/api/mkdir", with("Authorization", auth, "Origin", "http://evil.example"), mk, 403},
		{"foreign fetch-site", "POST", "/api/mkdir", with("Authorization", auth, "Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"), mk, 403},
		{"origin null", "POST", "/api/mkdir", with("Authorization", auth, "Origin", "null"), mk, 403},
		{"app origin", "POST", "/api/mkdir", with("Authorization", auth, "Origin", "http://aaaaaaaaaaaaaaaaaaaaaaaaaa.localhost:"+e.port, "Sec-Fetch-Site", "same-site"), mk, 403},
		{"GET with side effects", "GET", "/api/mkdir?cap=home&path=made", with("Authorization", auth), "", 405},
		{"GET upload", "GET", "/api/upload?cap=home&path=made", with("Authorization", auth), "", 405},
		{"GET launch", "GET", "/api/launch", with("Authorization", auth), "", 405},
	}
	for _, c := range cases {
		resp, body := e.raw(c.method, e.ownHost(), c.path, c.hdr, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, resp.StatusCode, clip(body), c.want)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: CORS header", c.name)
		}
	}
	// Nothing was made by any of them.
	resp, body := e.raw("GET", e.ownHost(), "/api/ls?cap=home", map[string]string{"Authorization": auth}, "")
	if resp.StatusCode != 200 || strings.Contains(body, "made") {
		t.Fatalf("after refused calls: %d %s", resp.StatusCode, body)
	}
	// The positive control: the same call with the token, same-origin.
	resp, body = e.raw("POST", e.ownHost(), "/api/mkdir", with("Authorization", auth, "Origin", "http://localhost:"+e.port, "Sec-Fetch-Site", "same-origin"), mk)
	if resp.StatusCode != 200 {
		t.Fatalf("mkdir with token: %d %s", resp.StatusCode, body)
	}
	if _, body = e.raw("GET", e.ownHost(), "/api/ls?cap=home", map[string]string{"Authorization": auth}, ""); !strings.Contains(body, `"made"`) {
		t.Fatalf("mkdir did not happen: %s", body)
	}
	// No CORS on pages either, whatever the Origin.
	resp, _ = e.raw("GET", e.ownHost(), "/", map[string]string{"Origin": "http://evil.example"}, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS header on the home page")
	}
}

func TestGatewayRefusesFraming(t *testing.T) {
	e := newEnv(t)
	for _, dest := range []string{"iframe", "frame", "empty", "script", "image"} {
		resp, _ := e.raw("GET", e.ownHost(), "/", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": dest, "Sec-Fetch-Mode": "navigate"}, "")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site %s: %d", dest, resp.StatusCode)
		}
	}
	resp, _ := e.raw("GET", e.ownHost(), "/", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate"}, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("top-level link: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestAppFetchRules(t *testing.T) {
	e := newEnv(t)
	id, _ := e.publish(gitRepo(t, testSite))
	host := e.appHost(id)
	// A top-level load goes to the shell.
	resp, _ := e.raw("GET", host, "/sub/page.html", map[string]string{"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.gwURL()+"s/"+id+"/sub/page.html" {
		t.Fatalf("top-level: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	frame := map[string]string{"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
	// A frame load without a launch token, or with a used one, is refused.
	if resp, _ := e.raw("GET", host, "/", frame, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("frame without token: %d", resp.StatusCode)
	}
	tok := e.gw.newLaunch(id)
	if resp, body := e.raw("GET", host, "/?"+launchParam+"="+tok, frame, ""); resp.StatusCode != 200 || !strings.Contains(body, "MARK-1") {
		t.Fatalf("frame with token: %d %q", resp.StatusCode, body)
	}
	if resp, _ := e.raw("GET", host, "/?"+launchParam+"="+tok, frame, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("token re-used: %d", resp.StatusCode)
	}
	// Another site's token does not open this one.
	other := e.gw.newLaunch("bbbbbbbbbbbbbbbbbbbbbbbbbb")
	if resp, _ := e.raw("GET", host, "/?"+launchParam+"="+other, frame, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("other site's token: %d", resp.StatusCode)
	}
	// Sub-resources get CORS for the app's opaque origin; workers nothing.
	resp, _ = e.raw("GET", host, "/app.js", map[string]string{"Sec-Fetch-Dest": "script", "Sec-Fetch-Site": "cross-site", "Origin": "null"}, "")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("module script: %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	for _, d := range []string{"serviceworker", "worker", "sharedworker", "embed", "object"} {
		if resp, _ := e.raw("GET", host, "/app.js", map[string]string{"Sec-Fetch-Dest": d}, ""); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d", d, resp.StatusCode)
		}
	}
	if resp, _ := e.raw("POST", host, "/", nil, "x"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to app: %d", resp.StatusCode)
	}
	// Unknown sites and malformed ids.
	for _, h := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaa.localhost:" + e.port, "x.localhost:" + e.port} {
		if resp, _ := e.raw("GET", h, "/", nil, ""); resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: %d", h, resp.StatusCode)
		}
	}
}

func TestSecondPushUpdates(t *testing.T) {
	e := newEnv(t)
	dir := gitRepo(t, testSite)
	id, wc := e.publish(dir)
	writeFiles(t, dir, map[string]string{"index.html": "<h1>MARK-2</h1>"})
	git(t, dir, "commit", "-qam", "two")
	st := e.push(dir, wc)
	if st.Objects != 3 { // blob, tree, commit
		t.Fatalf("second push sent %d objects, want 3", st.Objects)
	}
	ok := false
	for range 40 {
		if _, body := e.raw("GET", e.appHost(id), "/", nil, ""); strings.Contains(body, "MARK-2") {
			ok = true
			break
		}
		sleepBrief()
	}
	if !ok {
		t.Fatal("site not updated")
	}
}
