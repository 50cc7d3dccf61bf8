//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// schemaVersion is the "schema_version" of every JSON document fsctl
// prints. It changes only when a key is removed or changes meaning.
const schemaVersion = 1

// command is one subcommand. setup registers the command's flags on fs
// and returns the function that runs it with the positional arguments.
type command struct {
	name    string
	args    string // synopsis after the name, e.g. "--socket PATH [--json]"
	summary string
	detail  string
	setup   func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, s *streams, args []string) error

// streams are where a command writes: data on out, diagnostics on err.
type streams struct {
	out, err io.Writer
	outTTY   bool // out is a terminal (watch redraws in place)
}

// warnf writes a diagnostic to stderr.
func (s *streams) warnf(format string, a ...any) {
	fmt.Fprintf(s.err, "fsctl: "+format+"\n", a...)
}

// commands is the subcommand table, in the order help lists it.
var commands []*command

func init() {
	commands = []*command{statsCommand, cacheCommand, inspectCommand, probeCommand, versionCommand, helpCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// exitError carries an exit code; its message, if any, has not been
// printed yet.
type exitError struct {
	code int
	err  error // nil: already reported
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error: exit status 2.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// errReported is a failure whose details are already on stderr.
var errReported = &exitError{code: exitFailure}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	s := &streams{out: os.Stdout, err: os.Stderr, outTTY: isTerminal(os.Stdout)}
	code := run(ctx, os.Args[1:], s)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, s *streams) int {
	if len(args) == 0 {
		writeUsage(s.err)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	}
	cmd := lookup(name)
	if cmd == nil {
		s.warnf("unknown command %q\nRun 'fsctl help' for the list of commands.", name)
		return exitUsage
	}
	fs := flag.NewFlagSet("fsctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, help on stdout
	runner := cmd.setup(fs)
	pos, err := parseArgs(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		writeCommandHelp(s.out, cmd)
		return exitOK
	}
	if err != nil {
		s.warnf("%s: %v\nRun 'fsctl help %s' for usage.", cmd.name, err, cmd.name)
		return exitUsage
	}
	err = runner(ctx, s, pos)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		s.warnf("%s: interrupted", cmd.name)
		return exitFailure
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			s.warnf("%s: %v", cmd.name, ee.err)
			if ee.code == exitUsage {
				fmt.Fprintf(s.err, "Run 'fsctl help %s' for usage.\n", cmd.name)
			}
		}
		return ee.code
	}
	s.warnf("%s: %v", cmd.name, err)
	return exitFailure
}

// parseArgs parses flags wherever they appear among the arguments
// ("fsctl inspect a --json b"), until "--", after which everything is an
// argument.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func writeUsage(w io.Writer) {
	fmt.Fprintf(w, "fsctl shows what a running ringfs engine is doing and inspects files and the host.\n\n")
	fmt.Fprintf(w, "Usage:\n\n  fsctl COMMAND [flags] [args]\n\nCommands:\n\n")
	tw := newTable(w)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nEvery command takes --json for a machine-readable document (\"schema_version\": %d),\n", schemaVersion)
	fmt.Fprintf(w, "except help. Exit status: 0 ok, 1 failure, 2 usage error.\n")
	fmt.Fprintf(w, "Run 'fsctl help COMMAND' (or 'fsctl COMMAND -h') for a command's flags.\n")
}

func writeCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: fsctl %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.detail))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs)
	tw := newTable(w)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintf(w, "\nFlags:\n\n")
			first = false
		}
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  --%s%s\t%s%s\n", f.Name, name, usage, def)
	})
	tw.Flush()
}

var helpCommand = &command{
	name:    "help",
	args:    "[COMMAND]",
	summary: "show the commands, or one command's flags",
	detail:  "Help lists the commands, or describes COMMAND and its flags.",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(_ context.Context, s *streams, args []string) error {
			switch len(args) {
			case 0:
				writeUsage(s.out)
				return nil
			case 1:
				c := lookup(args[0])
				if c == nil {
					return usageErrorf("unknown command %q", args[0])
				}
				writeCommandHelp(s.out, c)
				return nil
			}
			return usageErrorf("help takes at most one command, got %d arguments", len(args))
		}
	},
}
