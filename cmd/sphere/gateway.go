package main

// The web gateway runs inside `sphere up` and `sphere node`; the verbs
// publish, open and fork find it through <home>/gateway.json.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid"
	"github.com/sphere-grid/sphere/grid/node"
	"github.com/sphere-grid/sphere/web"
)

// defaultGatewayPort is tried first so that site URLs stay the same across
// restarts; when it is taken the gateway takes any free port.
const defaultGatewayPort = 7780

const gatewayFile = "gateway.json"

// gatewayInfo is <home>/gateway.json while a gateway runs.
type gatewayInfo struct {
	URL  string `json:"url"`
	Port int    `json:"port"`
	PID  int    `json:"pid"`
}

func siteRegistry(h *home.Home) web.Registry { return web.Registry{Dir: h.Path("sites")} }

// nodeClients hands the gateway the node's grid client, rebuilt when the
// set of storage peers the node reaches changes (checked at most every 5 s).
type nodeClients struct {
	nd      *node.Node
	mu      sync.Mutex
	c       *grid.Client
	peers   int
	last    *node.Node // the node c came from
	checked time.Time
}

// servingNode is the node this process serves now; runNode sets it on each
// start, as a join to another grid restarts the node in-process.
var servingNode atomic.Pointer[node.Node]

// node is the node serving now: the one the gateway started with, or the
// one it was restarted as on another grid (sphere join).
func (nc *nodeClients) node() *node.Node {
	if cur := servingNode.Load(); cur != nil {
		return cur
	}
	return nc.nd
}

func (nc *nodeClients) get() (*grid.Client, error) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	nd := nc.node()
	if nc.c != nil && nd == nc.last && time.Since(nc.checked) < 5*time.Second {
		return nc.c, nil // a client of a stopped node is never reused
	}
	nc.checked = time.Now()
	peers := len(nd.StoragePeers())
	if nc.c != nil && peers == nc.peers && nd == nc.last {
		return nc.c, nil
	}
	c, err := nd.GridClient()
	if err != nil {
		return nil, err
	}
	nc.c, nc.peers, nc.last = c, peers, nd
	return c, nil
}

// startGateway starts the web gateway of a running node; it stops with
// ctx. It prints the gateway's URL and returns it.
func startGateway(ctx context.Context, g *globals, h *home.Home, nd *node.Node) (string, error) {
	log := slog.Default().With("component", "gateway")
	nc := &nodeClients{nd: nd}
	root := func(ctx context.Context) (caps.Cap, error) {
		c, err := nc.get()
		if err != nil {
			return nil, err
		}
		return userRootCap(ctx, h, fs.FromClient(c))
	}
	gw, err := web.New(web.Config{
		Client: nc.get, Root: root, Sites: siteRegistry(h), Logger: log,
		Status: func(ctx context.Context) (any, error) { return nc.node().Status(ctx) },
	})
	if err != nil {
		return "", err
	}
	addr := os.Getenv("SPHERE_GATEWAY")
	var ln net.Listener
	if addr != "" {
		ln, err = gw.Listen(addr)
	} else if ln, err = gw.Listen("127.0.0.1:" + strconv.Itoa(defaultGatewayPort)); err != nil {
		ln, err = gw.Listen("127.0.0.1:0")
	}
	if err != nil {
		return "", err
	}
	_, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	info, _ := json.Marshal(gatewayInfo{URL: gw.URL(), Port: port, PID: os.Getpid()})
	if err := os.WriteFile(h.Path(gatewayFile), append(info, '\n'), 0o600); err != nil {
		ln.Close()
		return "", fmt.Errorf("gateway: %w", err)
	}
	go func() {
		if err := gw.Serve(ctx, ln); err != nil {
			log.Warn("Gateway stopped", "err", err)
		}
		_ = os.Remove(h.Path(gatewayFile))
	}()
	fmt.Fprintf(g.stdout, "Gateway: %s (browse your drive, open sites)\n", gw.URL())
	return gw.URL(), nil
}

// gatewayPort returns the running gateway's port, or the default one with
// running=false.
func gatewayPort(h *home.Home) (port int, running bool) {
	b, err := os.ReadFile(h.Path(gatewayFile))
	if err == nil {
		var gi gatewayInfo
		if json.Unmarshal(b, &gi) == nil && gi.Port > 0 {
			return gi.Port, true
		}
	}
	if p := os.Getenv("SPHERE_GATEWAY"); p != "" {
		if _, ps, err := net.SplitHostPort(p); err == nil {
			if n, err := strconv.Atoi(ps); err == nil && n > 0 {
				return n, false
			}
		}
	}
	return defaultGatewayPort, false
}

func siteURL(h *home.Home, id string) (string, bool) {
	port, running := gatewayPort(h)
	return "http://" + id + ".localhost:" + strconv.Itoa(port) + "/", running
}

var _ = errors.New
