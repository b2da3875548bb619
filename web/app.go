package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/sphere-grid/sphere/web/site"
)

// appCSP is sent on every response from an app host. `sandbox
// allow-scripts` makes even a top-level load an opaque origin; the rest
// keeps an app to its own files: no other origin to fetch, frame, post
// forms to, or run workers from.
const appCSPBase = "sandbox allow-scripts; default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; " +
	"frame-src 'none'; child-src 'none'; worker-src 'none'; manifest-src 'none'; object-src 'none'; " +
	"form-action 'none'; base-uri 'none'"

func (g *Gateway) appCSP() string {
	return appCSPBase + "; frame-ancestors http://localhost:" + g.port + " http://127.0.0.1:" + g.port
}

// launchTTL bounds how long a launch token waits for its frame load.
const (
	launchTTL       = 30 * time.Second
	maxLaunchTokens = 10000
	launchParam     = "sphere-launch"
	appAPIPath      = "/_sphere/app.js" // reserved in every site: the app API
)

// newLaunch issues a single-use launch token for one frame load of site.
func (g *Gateway) newLaunch(siteID string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	g.launchM.Lock()
	defer g.launchM.Unlock()
	now := time.Now()
	if len(g.launch) >= maxLaunchTokens {
		for k, v := range g.launch {
			if now.After(v.expires) {
				delete(g.launch, k)
			}
		}
		if len(g.launch) >= maxLaunchTokens {
			clear(g.launch) // a flood: outstanding launches must be redone
		}
	}
	g.launch[tok] = launchToken{site: siteID, expires: now.Add(launchTTL)}
	return tok
}

// useLaunch consumes a launch token; true if it was valid for siteID.
func (g *Gateway) useLaunch(tok, siteID string) bool {
	if tok == "" {
		return false
	}
	g.launchM.Lock()
	defer g.launchM.Unlock()
	lt, ok := g.launch[tok]
	delete(g.launch, tok)
	return ok && lt.site == siteID && time.Now().Before(lt.expires)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// serveApp serves a request to http://<id>.localhost:PORT/.
func (g *Gateway) serveApp(w http.ResponseWriter, r *http.Request, id string) {
	h := w.Header()
	h.Set("Content-Security-Policy", g.appCSP())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=(), payment=()")
	appErr := func(status int, msg string) {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		appErr(http.StatusMethodNotAllowed, "sphere: sites are read-only")
		return
	}
	if _, err := ParseSiteID(id); err != nil {
		appErr(http.StatusNotFound, "sphere: "+err.Error())
		return
	}
	dest := r.Header.Get("Sec-Fetch-Dest")
	fetchSite := r.Header.Get("Sec-Fetch-Site")
	switch dest {
	case "document":
		// A top-level load: show the app inside its shell instead.
		target := g.URL() + "s/" + id + r.URL.EscapedPath()
		h.Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	case "iframe", "frame":
		// Only the shell's own embed, with a fresh launch token, loads an
		// app document: an app navigating its frame to another app (or
		// re-using a token) is refused.
		if fetchSite == "same-origin" || !g.useLaunch(r.URL.Query().Get(launchParam), id) {
			appErr(http.StatusForbidden, "sphere: an app opens only from its shell page, once per launch token")
			return
		}
		h.Set("Cache-Control", "no-store")
	case "", "empty", "script", "style", "image", "font", "audio", "video", "track", "manifest", "xslt":
		// Sub-resources (and tools like curl, which send no Sec-Fetch-*).
		// Module scripts and fetch() from the app's opaque origin are CORS
		// requests, hence the header; CSP connect-src keeps other apps out.
		if dest != "" {
			h.Set("Access-Control-Allow-Origin", "*")
		}
	default:
		// embed, object, worker, sharedworker, serviceworker, report, ...
		appErr(http.StatusForbidden, "sphere: "+dest+" requests are not served to apps")
		return
	}
	addr, err := g.lookupSite(id)
	if err != nil {
		appErr(httpStatus(err), "sphere: "+err.Error())
		return
	}
	if r.URL.Path == appAPIPath {
		b, _ := staticFiles.ReadFile("static/app.js")
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
		return
	}
	els, err := site.SplitPath(r.URL.Path)
	if err != nil {
		appErr(http.StatusBadRequest, "sphere: bad path")
		return
	}
	rd, err := g.siteReader()
	if err != nil {
		appErr(httpStatus(err), "sphere: "+err.Error())
		return
	}
	snap, err := rd.Snapshot(r.Context(), addr)
	if err != nil {
		appErr(httpStatus(err), "sphere: "+err.Error())
		return
	}
	wantDir := els[len(els)-1] == ""
	if wantDir {
		els = els[:len(els)-1]
	}
	e, err := snap.Resolve(els)
	if err != nil {
		g.appNotFound(w, snap, err)
		return
	}
	if e.IsDir() {
		if !wantDir {
			h.Set("Cache-Control", "no-store")
			http.Redirect(w, r, r.URL.EscapedPath()+"/", http.StatusMovedPermanently)
			return
		}
		els = append(els, "index.html")
		if e, err = snap.Resolve(els); err != nil || e.IsDir() {
			g.appNotFound(w, snap, fmt.Errorf("no index.html: %w", site.ErrNotFound))
			return
		}
	}
	if e.Mode == "120000" || e.Mode == "160000" {
		appErr(http.StatusNotFound, "sphere: symlinks and submodules are not served")
		return
	}
	sec, loc, err := snap.Section(e.ID)
	if err != nil {
		appErr(httpStatus(err), "sphere: "+err.Error())
		return
	}
	if loc.Type != site.TypeBlob {
		appErr(http.StatusNotFound, "sphere: not a file")
		return
	}
	name := els[len(els)-1]
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("ETag", `"`+e.ID.String()+`"`)
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, sec)
}

func (g *Gateway) appNotFound(w http.ResponseWriter, snap *site.Snapshot, err error) {
	status := httpStatus(err)
	if errors.Is(err, site.ErrNotFound) {
		status = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	msg := err.Error()
	if strings.Contains(msg, "no commits") {
		msg = "This site is empty: push a commit to it."
	}
	fmt.Fprintf(w, "<!doctype html><title>Not found</title><p>%s</p>\n", html.EscapeString(msg))
}
