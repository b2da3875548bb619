// Package web is Sphere's local HTTP gateway: pages to browse, download,
// upload and share by cap, a JSON API behind a bearer token, and
// published sites served each from its own origin
// (http://<site-id>.localhost:PORT/) inside a sandboxing shell page.
// See docs/web-api.md for the API and the sandbox's rules.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/web/site"
)

// Config configures a Gateway.
type Config struct {
	// Client returns the grid client to use (called per request; the
	// gateway rebuilds its caches when it returns a different one).
	Client func() (*grid.Client, error)
	// Root returns the user's root directory write cap (nil func: no home
	// folder, no app data). It is called until it succeeds once.
	Root func(ctx context.Context) (caps.Cap, error)
	// Sites is the registry of known sites.
	Sites Registry
	// Status returns what the status page shows (node and grid), as JSON-able.
	Status func(ctx context.Context) (any, error)
	// Token is the API's bearer token (empty: a random one).
	Token  string
	Logger *slog.Logger
}

// Gateway serves the gateway's pages, API and sites.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	port  string
	token string

	mu      sync.Mutex
	client  *grid.Client
	reader  *site.Reader
	trees   map[string]*fs.FS
	ctx     context.Context
	cancel  context.CancelFunc
	root    caps.Cap
	known   map[string]caps.MutableReadCap // site id -> address, from the registry
	launchM sync.Mutex
	launch  map[string]launchToken

	// OnRequest, if set, is called after each response (tests).
	OnRequest func(r *http.Request, status int)
}

type launchToken struct {
	site    string
	expires time.Time
}

// New returns a gateway; Serve runs it.
func New(cfg Config) (*Gateway, error) {
	if cfg.Client == nil {
		return nil, errors.New("web: no grid client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tok := cfg.Token
	if tok == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		tok = hex.EncodeToString(b[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Gateway{cfg: cfg, log: cfg.Logger.With("component", "web"), token: tok,
		trees: map[string]*fs.FS{}, known: map[string]caps.MutableReadCap{}, ctx: ctx, cancel: cancel, launch: map[string]launchToken{}}, nil
}

// Listen opens the gateway's listener on addr (e.g. "127.0.0.1:0").
func (g *Gateway) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway listen %s: %w", addr, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	g.port = port
	return ln, nil
}

// SetPort tells the gateway its port when it does not Listen itself (tests
// with httptest).
func (g *Gateway) SetPort(port int) { g.port = strconv.Itoa(port) }

// URL is the gateway's own origin, e.g. http://localhost:8480/.
func (g *Gateway) URL() string { return "http://localhost:" + g.port + "/" }

// SiteURL is a site's origin.
func (g *Gateway) SiteURL(id string) string { return "http://" + id + ".localhost:" + g.port + "/" }

// Token is the API's bearer token (for tests).
func (g *Gateway) Token() string { return g.token }

// Serve serves on ln until ctx ends.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		g.close()
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (g *Gateway) close() {
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.trees {
		_ = t.Close(context.Background())
	}
	clear(g.trees)
}

// grid returns the current client, resetting caches when it changed.
func (g *Gateway) grid() (*grid.Client, error) {
	c, err := g.cfg.Client()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c != g.client {
		g.client = c
		g.reader = site.NewReader(g.ctx, site.GridStore(c))
		for _, t := range g.trees {
			go t.Close(context.Background())
		}
		g.trees = map[string]*fs.FS{}
	}
	return c, nil
}

func (g *Gateway) siteReader() (*site.Reader, error) {
	if _, err := g.grid(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reader, nil
}

// maxTrees bounds the open trees (one per cap browsed).
const maxTrees = 64

// tree returns the tree of a directory cap ("home": the user's root).
func (g *Gateway) tree(ctx context.Context, capStr string) (*fs.FS, error) {
	var c caps.Cap
	if capStr == "home" || capStr == "" {
		g.mu.Lock()
		c = g.root
		g.mu.Unlock()
		if c == nil {
			if g.cfg.Root == nil {
				return nil, fmt.Errorf("%w: this gateway has no home folder", errNotFound)
			}
			rc, err := g.cfg.Root(ctx)
			if err != nil {
				return nil, fmt.Errorf("%w: home folder: %w", errUnavailable, err)
			}
			g.mu.Lock()
			g.root, c = rc, rc
			g.mu.Unlock()
		}
	} else {
		var err error
		if c, err = caps.Parse(capStr); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadRequest, err)
		}
	}
	cl, err := g.grid()
	if err != nil {
		return nil, err
	}
	key := c.String()
	g.mu.Lock()
	t := g.trees[key]
	g.mu.Unlock()
	if t != nil {
		return t, nil
	}
	fg := fs.FromClient(cl)
	if !fg.IsDir(c) {
		return nil, fmt.Errorf("%w: a %s cap is not a directory", errBadRequest, c.Kind())
	}
	t, err = fs.New(ctx, fg, c, fs.Options{FlushDelay: -1, Logger: g.log})
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old := g.trees[key]; old != nil {
		go t.Close(context.Background())
		return old, nil
	}
	if len(g.trees) >= maxTrees {
		for k, old := range g.trees {
			go old.Close(context.Background())
			delete(g.trees, k)
			break
		}
	}
	g.trees[key] = t
	return t, nil
}

// Errors the handlers classify into HTTP statuses (in httpStatus).
var (
	errBadRequest  = errors.New("bad request")
	errNotFound    = errors.New("not found")
	errForbidden   = errors.New("forbidden")
	errUnavailable = errors.New("grid unavailable")
	errMethod      = errors.New("method not allowed")
)

// httpStatus maps an error to its HTTP status: the one place that does.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, site.ErrFormat), errors.Is(err, caps.ErrFormat), errors.Is(err, fs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, site.ErrNotFound), errors.Is(err, ErrUnknownSite), errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, errForbidden), errors.Is(err, fs.ErrReadOnly):
		return http.StatusForbidden
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, fs.ErrExist):
		return http.StatusConflict
	case errors.Is(err, errUnavailable), errors.Is(err, grid.ErrNotEnoughShares):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Handler routes by Host: the gateway's own names, a site's host, or a
// refusal (DNS rebinding: any other name pointing at 127.0.0.1).
func (g *Gateway) Handler() http.Handler {
	own := g.ownHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.OnRequest != nil {
			sw := &statusWriter{ResponseWriter: w}
			w = sw
			defer func() { g.OnRequest(r, sw.status) }()
		}
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil {
			host, port = r.Host, ""
		}
		host = strings.ToLower(host)
		if port != g.port {
			http.Error(w, "sphere gateway: unknown host "+strconv.Quote(clip(r.Host)), http.StatusMisdirectedRequest)
			return
		}
		switch {
		case host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1":
			own.ServeHTTP(w, r)
		case strings.HasSuffix(host, ".localhost") && strings.Count(host, ".") == 1:
			g.serveApp(w, r, strings.TrimSuffix(host, ".localhost"))
		default:
			http.Error(w, "sphere gateway: unknown host "+strconv.Quote(clip(r.Host)), http.StatusMisdirectedRequest)
		}
	})
}

// checkToken compares the bearer token in constant time.
func (g *Gateway) checkToken(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(g.token)) == 1
}

// maxKnownSites bounds the in-memory copy of the registry.
const maxKnownSites = 10000

// lookupSite returns a site's address; found ones are kept in memory (an
// id always names the same address), unknown ones are re-read each time.
func (g *Gateway) lookupSite(id string) (caps.MutableReadCap, error) {
	g.mu.Lock()
	addr, ok := g.known[id]
	g.mu.Unlock()
	if ok {
		return addr, nil
	}
	addr, err := g.cfg.Sites.Lookup(id)
	if err != nil {
		return addr, err
	}
	g.mu.Lock()
	if len(g.known) >= maxKnownSites {
		clear(g.known)
	}
	g.known[id] = addr
	g.mu.Unlock()
	return addr, nil
}
