package main

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// newProgress returns a progress callback drawing a bar on stderr when it is
// a terminal and the output is not JSON; otherwise it does nothing.
func newProgress(g *globals, size int64, what string) (update func(done int64), finish func()) {
	f, ok := g.stderr.(*os.File)
	if g.json || !ok || !term.IsTerminal(int(f.Fd())) || size < 4<<20 {
		return func(int64) {}, func() {}
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
	return func(done int64) { _ = bar.Set64(done) }, func() { _ = bar.Finish(); _ = bar.Clear() }
}

var _ io.Writer = (*os.File)(nil)
