package web

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func TestDrivePagesAndAPI(t *testing.T) {
	e := newEnv(t)
	auth := map[string]string{"Authorization": "Bearer " + e.token()}
	js := map[string]string{"Authorization": "Bearer " + e.token(), "Content-Type": "application/json"}
	if resp, body := e.raw("POST", e.ownHost(), "/api/mkdir", js, `{"cap":"home","path":"docs"}`); resp.StatusCode != 200 {
		t.Fatalf("mkdir: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.raw("POST", e.ownHost(), "/api/mkdir", js, `{"cap":"home","path":"docs"}`); resp.StatusCode != 409 {
		t.Fatalf("mkdir again: %d %s", resp.StatusCode, body)
	}
	text := strings.Repeat("abcdefghij", 1000)
	if resp, body := e.raw("PUT", e.ownHost(), "/api/upload?cap=home&path=docs/a.txt", auth, text); resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	e.raw("PUT", e.ownHost(), "/api/upload?cap=home&path=docs/evil.html", auth, "<script>alert(1)</script>")
	// The page lists the file; the file downloads with its type and ranges.
	resp, body := e.raw("GET", e.ownHost(), "/uri/home/docs/", nil, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "a.txt") || !strings.Contains(body, `name="sphere-token"`) {
		t.Fatalf("folder page: %d", resp.StatusCode)
	}
	resp, body = e.raw("GET", e.ownHost(), "/uri/home/docs/a.txt", map[string]string{"Range": "bytes=5-14"}, "")
	if resp.StatusCode != 206 || body != "fghijabcde" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("range download: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	// HTML from a drive never renders on the gateway's origin.
	resp, _ = e.raw("GET", e.ownHost(), "/uri/home/docs/evil.html", nil, "")
	if !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("html served inline: %v", resp.Header)
	}
	// A read cap of the folder browses read-only.
	_, body = e.raw("POST", e.ownHost(), "/api/share", js, `{"cap":"home","path":"docs"}`)
	var sh struct{ ReadCap string }
	if err := json.Unmarshal([]byte(body), &sh); err != nil || !strings.HasPrefix(sh.ReadCap, "sphere:dir-ro:") {
		t.Fatalf("share: %s", body)
	}
	resp, body = e.raw("GET", e.ownHost(), "/uri/"+url.PathEscape(sh.ReadCap)+"/", nil, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "a.txt") || strings.Contains(body, "New folder") {
		t.Fatalf("read-only folder page: %d", resp.StatusCode)
	}
	if resp, body := e.raw("POST", e.ownHost(), "/api/mkdir", js, `{"cap":"`+sh.ReadCap+`","path":"x"}`); resp.StatusCode != 403 {
		t.Fatalf("mkdir through a read cap: %d %s", resp.StatusCode, body)
	}
	// A file's read cap downloads by itself.
	_, body = e.raw("POST", e.ownHost(), "/api/share", js, `{"cap":"home","path":"docs/a.txt"}`)
	_ = json.Unmarshal([]byte(body), &sh)
	if resp, body := e.raw("GET", e.ownHost(), "/uri/"+url.PathEscape(sh.ReadCap)+"/?name=a.txt", nil, ""); resp.StatusCode != 200 || body != text {
		t.Fatalf("file cap download: %d", resp.StatusCode)
	}
	// Bad input is a clear error.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/ls?cap=sphere:nope", ""}, {"POST", "/api/mkdir", `{"cap":"home","path":"../x"}`},
		{"POST", "/api/mkdir", `{"cap":"home","path":"a","extra":1}`}, {"POST", "/api/mkdir", `not json`},
		{"POST", "/api/launch", `{"site":"../../x"}`}, {"POST", "/api/app/data", `{"site":"aaaaaaaaaaaaaaaaaaaaaaaaaa","op":"rm","path":"x"}`},
	} {
		if resp, body := e.raw(c.method, e.ownHost(), c.path, js, c.body); resp.StatusCode != 400 {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, resp.StatusCode, body)
		}
	}
}

// TestLaunchTokenFlood: tokens are bounded however many are asked for.
func TestLaunchTokenFlood(t *testing.T) {
	e := newEnv(t)
	first := e.gw.newLaunch("aaaaaaaaaaaaaaaaaaaaaaaaaa")
	for range 3 * maxLaunchTokens {
		e.gw.newLaunch("bbbbbbbbbbbbbbbbbbbbbbbbbb")
	}
	e.gw.launchM.Lock()
	n := len(e.gw.launch)
	e.gw.launchM.Unlock()
	if n > maxLaunchTokens {
		t.Fatalf("%d launch tokens held", n)
	}
	last := e.gw.newLaunch("aaaaaaaaaaaaaaaaaaaaaaaaaa")
	if !e.gw.useLaunch(last, "aaaaaaaaaaaaaaaaaaaaaaaaaa") {
		t.Fatal("newest token refused after the flood")
	}
	_ = first // it may have been dropped by the flood: the shell then relaunches
}
