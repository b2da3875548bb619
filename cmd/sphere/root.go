package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/recovery"
	"github.com/sphere-grid/sphere/grid"
)

// Exit codes, documented in README.md and `sphere help`.
const (
	exitOK        = 0
	exitError     = 1 // anything not listed below
	exitUsage     = 2 // bad flags or arguments
	exitBadCap    = 3 // a capability string or recovery code did not parse
	exitUnhealthy = 4 // not enough shares, or check found problems
	exitCorrupt   = 5 // data failed an integrity check
	exitNoHome    = 6 // no home: run `sphere init`
)

// globals are flags every verb sees.
type globals struct {
	json    bool
	verbose bool
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "sphere",
		Short: "Sphere: a private drive on other people's computers",
		Long: `Sphere encrypts files on this machine, erasure-codes them into shares and stores
the shares on a grid of storage peers. Files are named by capabilities (caps):
strings that are at once the address and the key.

Exit codes: 0 ok, 1 error, 2 usage, 3 bad capability, 4 not enough shares or
unhealthy, 5 integrity failure, 6 no home (run 'sphere init').`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if g.verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print results as JSON")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug messages to stderr")
	root.AddCommand(
		newInitCmd(g), newPutCmd(g), newGetCmd(g), newCheckCmd(g), newCapCmd(g),
		// the tree (fs) verbs
		newMountCmd(g), newUnmountCmd(g), newShareCmd(g), newLsCmd(g), newMkdirCmd(g),
		newCpCmd(g), newRmCmd(g), newMvCmd(g),
		newSyncCmd(g),
		// the node verbs
		newNodeCmd(g), newUpCmd(g), newInviteCmd(g), newJoinCmd(g), newStatusCmd(g), newRenewCmd(g),
		newMembersCmd(g), newStoreCmd(g),
		// recovery
		newRecoveryCmd(g), newRecoverCmd(g),
		// the web verbs
		newPublishCmd(g), newOpenCmd(g), newForkCmd(g),
		// the ledger
		newSimCmd(g), newLedgerCmd(g),
	)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	defer profileVerb()()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	err = hintNotHappy(err)
	fmt.Fprintf(stderr, "sphere: %v\n", err)
	return exitCode(err)
}

// exitCode maps an error to the documented exit code table.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errBadCap), errors.Is(err, recovery.ErrFormat), errors.Is(err, recovery.ErrNewerVersion):
		return exitBadCap
	case errors.Is(err, home.ErrNoHome):
		return exitNoHome
	case errors.Is(err, caps.ErrIntegrity), errors.Is(err, grid.ErrCorrupt):
		return exitCorrupt
	case errors.Is(err, errUnhealthy):
		return exitUnhealthy
	}
	return exitError
}

var (
	errBadCap    = errors.New("bad capability")
	errUnhealthy = errors.New("unhealthy")
)

// parseCap parses a cap argument, classifying failures for the exit code.
func parseCap(s string) (caps.Cap, error) {
	c, err := caps.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadCap, err)
	}
	return c, nil
}

// openHome opens the home named by SPHERE_HOME or the XDG default.
func openHome() (*home.Home, error) {
	dir, err := home.DefaultDir()
	if err != nil {
		return nil, err
	}
	return home.Open(dir)
}

// exactArgs is cobra.ExactArgs, classified as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs, classified as a usage error.
func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs, classified as a usage error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(min, max)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// profileVerb starts a CPU profile to SPHERE_CLI_CPUPROFILE and an execution
// trace to SPHERE_CLI_TRACE, if set, for measuring the short-lived verbs
// (put, get) in docs/BENCHMARKS.md; the returned func stops them. node and
// up have their own SPHERE_CPUPROFILE. Failures only warn: profiling must
// never change what a verb does.
func profileVerb() (stop func()) {
	var stops []func()
	if path := os.Getenv("SPHERE_CLI_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err != nil {
			fmt.Fprintf(os.Stderr, "sphere: cpu profile: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintf(os.Stderr, "sphere: cpu profile: %v\n", err)
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if path := os.Getenv("SPHERE_CLI_TRACE"); path != "" {
		if f, err := os.Create(path); err != nil {
			fmt.Fprintf(os.Stderr, "sphere: trace: %v\n", err)
		} else if err := trace.Start(f); err != nil {
			f.Close()
			fmt.Fprintf(os.Stderr, "sphere: trace: %v\n", err)
		} else {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
