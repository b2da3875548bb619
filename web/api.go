package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/fs"
)

func (g *Gateway) apiStatus(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"gateway": g.URL()}
	if g.cfg.Status != nil {
		st, err := g.cfg.Status(r.Context())
		if err != nil {
			out["error"] = err.Error()
		} else {
			out["node"] = st
		}
	}
	if cl, err := g.grid(); err == nil {
		out["servers"] = len(cl.Servers())
		p := cl.Params()
		out["params"] = map[string]int{"k": p.K, "n": p.N}
	} else {
		out["gridError"] = err.Error()
	}
	apiReply(w, out)
}

type lsEntry struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
}

func typeName(t fs.Type) string {
	switch t {
	case fs.TypeDir:
		return "dir"
	case fs.TypeSymlink:
		return "symlink"
	}
	return "file"
}

func (g *Gateway) apiLs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := cleanTreePath(q.Get("path"))
	if err != nil {
		apiError(w, err)
		return
	}
	t, err := g.tree(r.Context(), q.Get("cap"))
	if err != nil {
		apiError(w, err)
		return
	}
	list, err := t.ReadDir(r.Context(), p)
	if err != nil {
		apiError(w, err)
		return
	}
	out := []lsEntry{}
	for _, e := range list {
		out = append(out, lsEntry{Name: e.Name, Type: typeName(e.Type), Size: e.Size, Mtime: e.Mtime.Unix()})
	}
	apiReply(w, map[string]any{"entries": out})
}

type pathReq struct {
	Cap  string `json:"cap"`
	Path string `json:"path"`
}

func (g *Gateway) apiMkdir(w http.ResponseWriter, r *http.Request) {
	var req pathReq
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	p, err := cleanTreePath(req.Path)
	if err == nil && p == "" {
		err = fmt.Errorf("%w: empty path", errBadRequest)
	}
	var t *fs.FS
	if err == nil {
		t, err = g.tree(r.Context(), req.Cap)
	}
	if err == nil {
		err = t.Mkdir(r.Context(), p, 0o755)
	}
	if err == nil {
		err = t.Sync(r.Context())
	}
	if err != nil {
		apiError(w, err)
		return
	}
	apiReply(w, map[string]any{"ok": true})
}

// writeFile stores body as the file p of t (replacing it).
func writeFile(ctx context.Context, t *fs.FS, p string, body io.Reader) (int64, error) {
	h, err := t.Create(ctx, p, 0o644)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	var off int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := h.WriteAt(ctx, buf[:n], off); err != nil {
				h.Close(ctx)
				return off, err
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			h.Close(ctx)
			return off, fmt.Errorf("%w: reading upload: %w", errBadRequest, rerr)
		}
	}
	if err := h.Close(ctx); err != nil {
		return off, err
	}
	return off, t.Sync(ctx)
}

// apiUpload: PUT /api/upload?cap=C&path=P with the file as the body.
func (g *Gateway) apiUpload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := cleanTreePath(q.Get("path"))
	if err == nil && p == "" {
		err = fmt.Errorf("%w: empty path", errBadRequest)
	}
	var t *fs.FS
	if err == nil {
		t, err = g.tree(r.Context(), q.Get("cap"))
	}
	if err != nil {
		apiError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(timeZero)
	n, err := writeFile(r.Context(), t, p, r.Body)
	if err != nil {
		apiError(w, err)
		return
	}
	apiReply(w, map[string]any{"ok": true, "size": n})
}

func (g *Gateway) apiShare(w http.ResponseWriter, r *http.Request) {
	var req pathReq
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	p, err := cleanTreePath(req.Path)
	var t *fs.FS
	if err == nil {
		t, err = g.tree(r.Context(), req.Cap)
	}
	var rc caps.Cap
	if err == nil {
		if p == "" {
			rc, err = readOnly(t.Root())
		} else {
			_, rc, err = t.Caps(r.Context(), p)
		}
	}
	if err != nil {
		apiError(w, err)
		return
	}
	apiReply(w, map[string]any{"readCap": rc.String()})
}

func (g *Gateway) apiSites(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Address string `json:"address"`
	}
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	c, err := caps.Parse(strings.TrimSpace(req.Address))
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	id, addr, err := g.cfg.Sites.Add(c)
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	apiReply(w, map[string]any{"id": id, "url": g.SiteURL(id), "shell": g.URL() + "s/" + id + "/", "address": addr.String()})
}

func (g *Gateway) apiLaunch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Site string `json:"site"`
		Path string `json:"path"`
	}
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	id, err := ParseSiteID(req.Site)
	if err == nil {
		_, err = g.lookupSite(id)
	}
	p := "/"
	if err == nil {
		var cp string
		cp, err = cleanTreePath(req.Path)
		if cp != "" {
			p += cp
		}
	}
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	tok := g.newLaunch(id)
	u := strings.TrimSuffix(g.SiteURL(id), "/") + (&urlPath{p}).String()
	u = strings.ReplaceAll(u, "%2F", "/") + "?" + launchParam + "=" + tok
	apiReply(w, map[string]any{"url": u})
}

// appDataReq is a call the shell makes for an app, on the app's private
// folder apps/<site-id>/ of the user's drive.
type appDataReq struct {
	Site string `json:"site"`
	Op   string `json:"op"` // read, write, list
	Path string `json:"path"`
	Data string `json:"data"`
}

// maxAppFile bounds one file an app writes through the API.
const maxAppFile = 8 << 20

func (g *Gateway) apiAppData(w http.ResponseWriter, r *http.Request) {
	var req appDataReq
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	id, err := ParseSiteID(req.Site)
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	p, err := cleanTreePath(req.Path)
	if err != nil {
		apiError(w, err)
		return
	}
	t, err := g.tree(r.Context(), "home")
	if err != nil {
		apiError(w, err)
		return
	}
	ctx := r.Context()
	dir := "apps/" + id
	full := path.Join(dir, p)
	switch req.Op {
	case "write":
		if p == "" || len(req.Data) > maxAppFile {
			apiError(w, fmt.Errorf("%w: empty path or data over %d bytes", errBadRequest, maxAppFile))
			return
		}
		for _, d := range []string{"apps", dir, path.Dir(full)} {
			if err := t.Mkdir(ctx, d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				apiError(w, err)
				return
			}
		}
		if _, err := writeFile(ctx, t, full, strings.NewReader(req.Data)); err != nil {
			apiError(w, err)
			return
		}
		apiReply(w, map[string]any{"ok": true})
	case "read":
		b, err := readTreeFile(ctx, t, full)
		if err != nil {
			apiError(w, err)
			return
		}
		apiReply(w, map[string]any{"data": string(b)})
	case "list":
		list, err := t.ReadDir(ctx, full)
		if errors.Is(err, fs.ErrNotExist) {
			list, err = nil, nil
		}
		if err != nil {
			apiError(w, err)
			return
		}
		replyNames(w, list)
	default:
		apiError(w, fmt.Errorf("%w: op %q", errBadRequest, req.Op))
	}
}

func readTreeFile(ctx context.Context, t *fs.FS, p string) ([]byte, error) {
	in, err := t.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if in.Type != fs.TypeFile || in.Size > maxAppFile {
		return nil, fmt.Errorf("%w: %s is not a file of at most %d bytes", errBadRequest, p, maxAppFile)
	}
	h, err := t.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer h.Close(ctx)
	b := make([]byte, in.Size)
	n, err := h.ReadAt(ctx, b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// apiRead reads a file under a cap the user shared with an app:
// {cap, path} -> {data}.
func (g *Gateway) apiRead(w http.ResponseWriter, r *http.Request) {
	var req pathReq
	if err := readJSON(r, &req); err != nil {
		apiError(w, err)
		return
	}
	c, err := caps.Parse(strings.TrimSpace(req.Cap))
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	if k := c.Kind(); k == "chk" || k == "lit" {
		cl, err := g.grid()
		if err != nil {
			apiError(w, err)
			return
		}
		f, err := cl.Open(r.Context(), c)
		if err != nil {
			apiError(w, err)
			return
		}
		defer f.Close()
		if f.Size() > maxAppFile {
			apiError(w, fmt.Errorf("%w: file over %d bytes", errBadRequest, maxAppFile))
			return
		}
		b := make([]byte, f.Size())
		if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			apiError(w, err)
			return
		}
		apiReply(w, map[string]any{"data": string(b)})
		return
	}
	ro, err := readOnly(c) // apps only ever read
	if err != nil {
		apiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	p, err := cleanTreePath(req.Path)
	if err != nil {
		apiError(w, err)
		return
	}
	t, err := g.tree(r.Context(), ro.String())
	if err != nil {
		apiError(w, err)
		return
	}
	if in, err := t.Stat(r.Context(), p); err == nil && in.Type == fs.TypeDir {
		list, err := t.ReadDir(r.Context(), p)
		if err != nil {
			apiError(w, err)
			return
		}
		replyNames(w, list)
		return
	}
	b, err := readTreeFile(r.Context(), t, p)
	if err != nil {
		apiError(w, err)
		return
	}
	apiReply(w, map[string]any{"data": string(b)})
}

// readOnly diminishes a directory or mutable cap to its read cap.
func readOnly(c caps.Cap) (caps.Cap, error) {
	switch c.Kind() {
	case caps.KindDirWrite, caps.KindMutableWrite:
		rc, ok := caps.MutableReadCapOf(c)
		if !ok {
			return nil, fmt.Errorf("%w: read cap of a %s cap", errBadRequest, c.Kind())
		}
		return rc, nil
	}
	return c, nil
}

// replyNames answers with the names of a directory listing.
func replyNames(w http.ResponseWriter, list []fs.Info) {
	names := make([]string, 0, len(list))
	for _, e := range list {
		names = append(names, e.Name)
	}
	apiReply(w, map[string]any{"names": names})
}
