package main

// sphere recovery prints the home's recovery code (and rotates it with
// --rotate); sphere recover makes a home from one. The code's format is
// docs/spec/recovery-code.md (package internal/recovery).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"rsc.io/qr"

	"github.com/sphere-grid/sphere/caps"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/home"
	"github.com/sphere-grid/sphere/cmd/sphere/internal/recovery"
	"github.com/sphere-grid/sphere/fs"
	"github.com/sphere-grid/sphere/grid/node"
)

// recoveryContacts is how many grid members a code names by default.
const recoveryContacts = 3

func newRecoveryCmd(g *globals) *cobra.Command {
	var rotate bool
	contacts := recoveryContacts
	cmd := &cobra.Command{
		Use:   "recovery",
		Short: "Print the recovery code that brings this drive back on a new machine",
		Long: `recovery prints one code that holds everything a new machine needs to take this
home's place: the drive's root write cap, the convergence and lease secrets, the
node's identity, the grid key, the encoding and a few grid members to contact.
Whoever holds it holds the whole drive: write it on paper and keep it off this
machine. On a new machine, 'sphere recover' reads it (from stdin or a prompt).
The code is the last line of the output.

--rotate makes the old code worthless for what comes next: new convergence and
lease secrets, the whole tree re-linked under new directory caps, every file's
lease renewed under the new secret and then the old secret's leases cancelled
(servers delete what only they kept alive, the old directories among it). Files
keep their caps: anyone who ever read the old tree can still read those files.
The node gets a new identity too (admitted by the grid's admin, the old one
removed, so a home recovered from the old code is refused by the grid) and an
empty store (the old one is kept beside the old secrets).
Stop the node first; start it again after.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if contacts < 0 || contacts > recovery.MaxContacts {
				return usageError{fmt.Errorf("--contacts: want 0..%d, have %d", recovery.MaxContacts, contacts)}
			}
			ctx := cmd.Context()
			h, err := openNodeHome()
			if err != nil {
				return err
			}
			var rot *rotation
			if rotate {
				if rot, err = rotateHome(ctx, g, h); err != nil {
					return err
				}
			}
			root, err := ensureRootCap(ctx, h)
			if err != nil {
				return err
			}
			addrs, err := contactCandidates(ctx, h)
			if err != nil {
				return err
			}
			code, err := h.RecoveryCode(root, addrs)
			if err != nil {
				return err
			}
			if len(code.Contacts) > contacts {
				code.Contacts = code.Contacts[:contacts]
			}
			text, err := recovery.Encode(code)
			if err != nil {
				return err
			}
			gridID := recovery.GridID(code.GridKey[:])
			if g.json {
				out := map[string]any{"code": text, "contacts": len(code.Contacts), "founder": code.Founder(), "grid": gridID}
				if rot != nil {
					out["rotation"] = rot
				}
				return json.NewEncoder(g.stdout).Encode(out)
			}
			if rot != nil {
				rot.print(g.stdout)
			}
			printRecoveryWarning(g.stdout, code, gridID)
			if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				printQR(f, text)
				fmt.Fprintln(g.stdout, "For paper, the same code in lines:")
				for _, l := range recovery.Lines(text, 8) {
					fmt.Fprintln(g.stdout, "  "+l)
				}
				fmt.Fprintln(g.stdout)
			}
			fmt.Fprintln(g.stdout, text)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "new secrets and a re-linked tree, so an old code that may have leaked recovers nothing new")
	cmd.Flags().IntVar(&contacts, "contacts", contacts, "how many grid members the code names (each makes it longer)")
	return cmd
}

func printRecoveryWarning(w io.Writer, code *recovery.Code, gridID string) {
	fmt.Fprintf(w, `This recovery code is your whole drive. Whoever holds it can read, change and
delete everything in it and act as this node in grid %s.
  - Write it on paper (or print it) and keep that off this machine, somewhere safe.
    Do not keep it in the drive, a chat, an email or a cloud note.
  - To get the drive back on a new machine: 'sphere recover' (type or paste the
    code when asked, or pipe it on stdin), then 'sphere node'.
  - If it may have leaked: 'sphere recovery --rotate' (the old code then
    recovers nothing new).
`, gridID)
	if len(code.Contacts) == 0 {
		fmt.Fprintln(w, `WARNING: the code names no other machine. All of the drive's shares are on this
machine's disk (the embedded local grid), so if this machine is lost, the code
alone cannot bring the drive back. Invite other machines ('sphere invite') first.`)
	} else {
		fmt.Fprintf(w, "It names %d grid member(s) to reach first; any one that still runs will do.\n", len(code.Contacts))
	}
	fmt.Fprintln(w)
}

// printQR draws the code as a QR code if the terminal is wide enough.
func printQR(f *os.File, text string) {
	up := strings.ToUpper(text) // alphanumeric mode: a smaller symbol
	c, err := qr.Encode(up, qr.L)
	if err != nil {
		return
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width < c.Size+4 {
		fmt.Fprintf(f, "(A QR code of this code needs a terminal %d columns wide.)\n\n", c.Size+4)
		return
	}
	qrterminal.GenerateWithConfig(up, qrterminal.Config{Level: qr.L, Writer: f, HalfBlocks: true,
		BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE, QuietZone: 2})
	fmt.Fprintln(f)
}

// ensureRootCap returns the drive's root write cap, creating the root
// directory if the home has none yet.
func ensureRootCap(ctx context.Context, h *home.Home) (caps.MutableWriteCap, error) {
	b, err := os.ReadFile(h.Path(home.RootCapFile))
	if err == nil {
		return home.ParseRootCap(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return caps.MutableWriteCap{}, err
	}
	c, closeFn, err := openClient(ctx, h)
	if err != nil {
		return caps.MutableWriteCap{}, err
	}
	defer closeFn()
	cp, err := userRootCap(ctx, h, fs.FromClient(c))
	if err != nil {
		return caps.MutableWriteCap{}, err
	}
	return home.ParseRootCap([]byte(cp.String()))
}

// contactCandidates lists grid members to name in a code, best first: the
// peers the running node reaches now, then those in config. The embedded
// grid's local servers live in this home and are left out.
func contactCandidates(ctx context.Context, h *home.Home) ([]string, error) {
	var out []string
	c, err := node.DialControl(ctx, h.ControlFile())
	switch {
	case err == nil:
		peers, err := c.Peers(ctx)
		if err != nil {
			return nil, fmt.Errorf("ask node for peers: %w", err)
		}
		out = append(out, peers...)
	case !errors.Is(err, node.ErrNotRunning):
		return nil, err
	}
	out = append(out, h.Config.Node.Peers...)
	local := map[string]bool{}
	for i := range max(h.Config.LocalServers, 0) {
		if _, err := os.Stat(h.Path("servers", fmt.Sprintf("%02d", i), "identity.key")); err != nil {
			continue // never started: it has no identity, and Identity would make one
		}
		if _, id, err := home.Identity(h.ServerDir(i)); err == nil {
			local[peer.ID(id).String()] = true
		}
	}
	return slices.DeleteFunc(out, func(a string) bool {
		i := strings.LastIndex(a, "/p2p/")
		return i < 0 || local[a[i+len("/p2p/"):]]
	}), nil
}

func newRecoverCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "recover",
		Short: "Make this home from a recovery code (read from stdin or a prompt)",
		Long: `recover reads a recovery code from 'sphere recovery' and makes the home
($SPHERE_HOME, else the default) the one it describes: the drive's root, the
secrets, the node's identity, the grid key and the grid members to contact. Start
the node after ('sphere node') and the drive is back: ls, cp, mount and renew work
as before.

The code is read from standard input (echo CODE | sphere recover), or asked for on
a terminal; never from the command line, where it would stay in the shell's
history and be visible to every process. Mistyped codes are refused with where
the mistake is.

Into a home that exists already: only one in the code's grid, and only while its
node is stopped; the files the code replaces move to replaced-<time>/ in the home.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{errors.New("recover takes no arguments: it reads the code from stdin or a prompt, never from the command line (where shell history and the process list would keep it); run `sphere recover` and type it, or `sphere recover < FILE`")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			text, err := readRecoveryCode(g)
			if err != nil {
				return err
			}
			code, err := recovery.Parse(text)
			if err != nil {
				return err // exit code 3 (exitCode knows recovery's errors)
			}
			dir, err := home.DefaultDir()
			if err != nil {
				return err
			}
			if _, err := os.Stat(dir); err == nil {
				if c, err := node.DialControl(ctx, home.ControlFileIn(dir)); err == nil {
					_ = c
					return errors.New("a node is running on this home: stop it first (recover replaces its identity and secrets)")
				} else if !errors.Is(err, node.ErrNotRunning) {
					return err
				}
			}
			h, existed, err := home.Recover(dir, code)
			if err != nil {
				return err
			}
			gridID := recovery.GridID(code.GridKey[:])
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]any{"home": h.Dir, "existed": existed,
					"grid": gridID, "contacts": len(code.Contacts), "founder": code.Founder()})
			}
			verb := "Created"
			if existed {
				verb = "Rewrote"
			}
			fmt.Fprintf(g.stdout, "%s the home %s from the recovery code (grid %s, %d member(s) to contact, encoding %d-of-%d).\n",
				verb, h.Dir, gridID, len(code.Contacts), code.Params.K, code.Params.N)
			if existed {
				fmt.Fprintf(g.stdout, "The identity, secrets and root it had before are in %s.\n", h.Path("replaced-<time>"))
			}
			fmt.Fprintln(g.stdout, "Next: start the node ('sphere node'); once it reaches a member, the drive is back ('sphere ls sphere:/').")
			fmt.Fprintln(g.stdout, "If the old machine comes back, do not start its node: wipe its Sphere home (see README, Recovery).")
			return nil
		},
	}
}

// readRecoveryCode reads a code from stdin: on a terminal, with a prompt, up to an
// empty line (a code from paper may be typed in several lines); otherwise
// all of it, bounded.
func readRecoveryCode(g *globals) (string, error) {
	f, isFile := g.stdin.(*os.File)
	if isFile && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintln(g.stderr, "Type or paste the recovery code (groups may be on several lines), then an empty line:")
		var sb strings.Builder
		sc := bufio.NewScanner(io.LimitReader(f, recovery.MaxTextLen+1))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" && sb.Len() > 0 {
				break
			}
			sb.WriteString(line + "\n")
		}
		return sb.String(), sc.Err()
	}
	b, err := io.ReadAll(io.LimitReader(g.stdin, recovery.MaxTextLen+1))
	if err != nil {
		return "", fmt.Errorf("read the code from stdin: %w", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return "", usageError{errors.New("no recovery code on stdin (run `sphere recover` on a terminal to be asked for it, or pipe it in)")}
	}
	return string(b), nil
}

// newSecret draws a 32-byte secret.
func newSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("new secret: %w", err)
	}
	return b, nil
}
