package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	iofs "io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
)

//go:embed static/*
var staticFiles embed.FS

var pageTmpl = template.Must(template.ParseFS(staticFiles, "static/*.html"))

// pageCSP is on every page of the gateway's own origin. Pages are never
// framed by anything (frame-ancestors 'none'); the shell frames apps only.
func (g *Gateway) pageCSP() string {
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"frame-src http://*.localhost:" + g.port + "; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
}

// ownHandler serves the gateway's origin: pages, static files, downloads
// by cap, and the API.
func (g *Gateway) ownHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", g.pageHome)
	mux.HandleFunc("GET /uri/{cap}/{path...}", g.pageURI)
	mux.HandleFunc("GET /s/{site}/{path...}", g.pageShell)
	mux.HandleFunc("GET /static/{file}", g.static)
	api := http.NewServeMux()
	api.HandleFunc("GET /api/status", g.apiStatus)
	api.HandleFunc("GET /api/ls", g.apiLs)
	api.HandleFunc("POST /api/mkdir", g.apiMkdir)
	api.HandleFunc("PUT /api/upload", g.apiUpload)
	api.HandleFunc("POST /api/share", g.apiShare)
	api.HandleFunc("POST /api/sites", g.apiSites)
	api.HandleFunc("POST /api/launch", g.apiLaunch)
	api.HandleFunc("POST /api/app/data", g.apiAppData)
	api.HandleFunc("POST /api/read", g.apiRead)
	cop := http.NewCrossOriginProtection()
	guarded := cop.Handler(g.requireToken(api))
	mux.Handle("/api/", guarded)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", g.pageCSP())
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if !fetchAllowed(r) {
			http.Error(w, "sphere gateway: cross-site request refused", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// fetchAllowed is the gateway's resource-isolation policy: same-origin
// requests, requests the user started (Sec-Fetch-Site: none) and
// requests from tools that send no Sec-Fetch-* headers; from other sites
// only a top-level GET navigation (a link to a page), never a frame, a
// fetch or a sub-resource.
func fetchAllowed(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate" &&
		r.Header.Get("Sec-Fetch-Dest") == "document" && !strings.HasPrefix(r.URL.Path, "/api/")
}

// requireToken refuses API calls without the bearer token, and any
// Origin: null (sandboxed frames, file: pages).
func (g *Gateway) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") == "null" {
			apiError(w, fmt.Errorf("%w: requests from an opaque origin are refused", errForbidden))
			return
		}
		if !g.checkToken(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sphere"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"missing or wrong bearer token"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func apiError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus(err))
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func apiReply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// maxJSONBody bounds an API request's JSON body.
const maxJSONBody = 16 << 20

func readJSON(r *http.Request, v any) error {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return fmt.Errorf("%w: want Content-Type application/json", errBadRequest)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return nil
}

func (g *Gateway) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if strings.HasSuffix(name, ".html") {
		http.NotFound(w, r)
		return
	}
	b, err := staticFiles.ReadFile("static/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// cleanTreePath checks a path within a tree ("" is the root).
func cleanTreePath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." || strings.ContainsRune(el, 0) {
			return "", fmt.Errorf("%w: path %q", errBadRequest, clip(p))
		}
	}
	return p, nil
}

type entryView struct {
	Name, Href, Kind, Size, Mtime string
	IsDir                         bool
}

type pageData struct {
	Title, Token, CapParam, Path, Up string
	Crumbs                           []crumb
	Entries                          []entryView
	Writable                         bool
	SiteID, SiteURL, Address, Port   string
	Err                              string
}

type crumb struct{ Name, Href string }

func (g *Gateway) render(w http.ResponseWriter, name string, d pageData) {
	d.Token = g.token
	d.Port = g.port
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.ExecuteTemplate(w, name, d); err != nil {
		g.log.Warn("Render page", "page", name, "err", err)
	}
}

func (g *Gateway) pageHome(w http.ResponseWriter, r *http.Request) {
	g.browse(w, r, "home", "")
}

func (g *Gateway) pageURI(w http.ResponseWriter, r *http.Request) {
	g.browse(w, r, r.PathValue("cap"), r.PathValue("path"))
}

func humanSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// browse shows a directory or serves a file of the tree capStr names.
func (g *Gateway) browse(w http.ResponseWriter, r *http.Request, capStr, p string) {
	ctx := r.Context()
	p, err := cleanTreePath(p)
	base := "/uri/" + capStr + "/"
	if capStr == "home" {
		base = "/uri/home/"
	}
	if err == nil && capStr != "home" {
		// A file cap names no tree: serve the file itself.
		if c, perr := caps.Parse(capStr); perr == nil && (c.Kind() == "chk" || c.Kind() == "lit") {
			g.serveFileCap(w, r, c)
			return
		}
	}
	var t *fs.FS
	if err == nil {
		t, err = g.tree(ctx, capStr)
	}
	var in fs.Info
	if err == nil {
		in, err = t.Stat(ctx, p)
	}
	if err != nil {
		w.WriteHeader(httpStatus(err))
		g.render(w, "error.html", pageData{Title: "Error", Err: err.Error()})
		return
	}
	if in.Type == fs.TypeFile {
		g.serveTreeFile(w, r, t, p, in)
		return
	}
	if p != "" && !strings.HasSuffix(r.URL.Path, "/") {
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
		return
	}
	list, err := t.ReadDir(ctx, p)
	if err != nil {
		w.WriteHeader(httpStatus(err))
		g.render(w, "error.html", pageData{Title: "Error", Err: err.Error()})
		return
	}
	sort.Slice(list, func(i, j int) bool {
		if (list[i].Type == fs.TypeDir) != (list[j].Type == fs.TypeDir) {
			return list[i].Type == fs.TypeDir
		}
		return list[i].Name < list[j].Name
	})
	d := pageData{Title: "Sphere", CapParam: capStr, Path: p, Writable: !t.ReadOnly()}
	if capStr != "home" {
		d.Title = "Shared folder"
	}
	d.Crumbs = append(d.Crumbs, crumb{Name: map[bool]string{true: "My drive", false: "Shared"}[capStr == "home"], Href: base})
	acc := base
	if p != "" {
		for _, el := range strings.Split(p, "/") {
			acc += pathEscape(el) + "/"
			d.Crumbs = append(d.Crumbs, crumb{Name: el, Href: acc})
		}
	}
	for _, e := range list {
		v := entryView{Name: e.Name, Href: acc + pathEscape(e.Name), Mtime: e.Mtime.Format("2006-01-02 15:04")}
		switch e.Type {
		case fs.TypeDir:
			v.IsDir, v.Kind, v.Href = true, "folder", v.Href+"/"
		case fs.TypeSymlink:
			v.Kind, v.Href = "link", ""
		default:
			v.Kind, v.Size = "file", humanSize(e.Size)
		}
		d.Entries = append(d.Entries, v)
	}
	g.render(w, "browse.html", d)
}

func pathEscape(s string) string {
	return strings.ReplaceAll((&urlPath{s}).String(), "%2F", "/")
}

type urlPath struct{ s string }

func (u *urlPath) String() string {
	var b strings.Builder
	for i := 0; i < len(u.s); i++ {
		c := u.s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ctxReaderAt adapts a handle's ReadAt(ctx, ...) to io.ReaderAt.
type ctxReaderAt struct {
	ctx context.Context
	h   *fs.Handle
}

func (c ctxReaderAt) ReadAt(p []byte, off int64) (int, error) { return c.h.ReadAt(c.ctx, p, off) }

func contentType(name string) string {
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return ct
}

// serveTreeFile downloads a file with its type and range support. HTML
// and SVG from a drive are served as attachments: they would otherwise
// run script on the gateway's origin.
func (g *Gateway) serveTreeFile(w http.ResponseWriter, r *http.Request, t *fs.FS, p string, in fs.Info) {
	h, err := t.Open(r.Context(), p)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	defer h.Close(context.WithoutCancel(r.Context()))
	g.serveBytes(w, r, in.Name, io.NewSectionReader(ctxReaderAt{r.Context(), h}, 0, in.Size), in.Mtime)
}

func (g *Gateway) serveBytes(w http.ResponseWriter, r *http.Request, name string, rs io.ReadSeeker, mtime time.Time) {
	ct := contentType(name)
	w.Header().Set("Content-Type", ct)
	if r.URL.Query().Get("download") != "" || !inlineSafe(ct) {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'")
	http.ServeContent(w, r, "", mtime, rs)
}

// inlineSafe: types a browser shows without running script.
func inlineSafe(ct string) bool {
	base, _, _ := strings.Cut(ct, ";")
	switch {
	case strings.HasPrefix(base, "image/") && base != "image/svg+xml",
		strings.HasPrefix(base, "video/"), strings.HasPrefix(base, "audio/"),
		base == "text/plain", base == "application/pdf", base == "application/json":
		return true
	}
	return false
}

func (g *Gateway) serveFileCap(w http.ResponseWriter, r *http.Request, c caps.Cap) {
	cl, err := g.grid()
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	f, err := cl.Open(r.Context(), c)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	defer f.Close()
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "file"
	}
	g.serveBytes(w, r, path.Base(name), io.NewSectionReader(f, 0, f.Size()), time.Time{})
}

func (g *Gateway) pageShell(w http.ResponseWriter, r *http.Request) {
	id, err := ParseSiteID(r.PathValue("site"))
	if err == nil {
		_, err = g.lookupSite(id)
	}
	if err != nil {
		w.WriteHeader(httpStatus(err))
		g.render(w, "error.html", pageData{Title: "Unknown site", Err: err.Error()})
		return
	}
	p := "/" + r.PathValue("path")
	if _, err := cleanTreePath(p); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		g.render(w, "error.html", pageData{Title: "Bad path", Err: err.Error()})
		return
	}
	addr, _ := g.lookupSite(id)
	g.render(w, "shell.html", pageData{Title: "Site " + id[:8], SiteID: id, SiteURL: g.SiteURL(id), Path: p, Address: addr.String()})
}

var timeZero time.Time

var _ = errors.New
var _ iofs.FS = nil
