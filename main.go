// Command wp gives shell workers on ECS watchbot the map-reduce bookkeeping
// that Python users get from watchbot-progress-py: it creates jobs, runs a
// worker command once per part, and sends exactly one reduce message when the
// last part completes.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/internal/worker"
)

// wp's own exit codes. A child command's exit code passes through wp run
// untouched; these are the codes wp chooses itself.
const (
	exitOK = 0
	// exitError: the command failed (bad input, no such job, store error in
	// an operator command).
	exitError = 1
	// exitUsage: the command line is wrong.
	exitUsage = 2
	// exitDrop: wp run got a message that can never succeed (poison):
	// watchbot deletes the message instead of retrying it.
	exitDrop = 3
	// exitRetry: wp run could not reach the store or SNS, or is
	// misconfigured (bad store URL or timeout), or another worker holds the
	// reduce claim; watchbot puts the message back on the queue and it is
	// retried. Matches sysexits' EX_TEMPFAIL.
	exitRetry = 75
	// exitCannotExec, exitNotFound: wp run's command could not be started
	// (not executable, no such command), as a shell reports it.
	exitCannotExec = 126
	exitNotFound   = 127
	// exitInterrupted: wp local was stopped by SIGINT or SIGTERM; resume it
	// with --resume.
	exitInterrupted = 130
	// exitSignalBase: wp run's command was killed by (or interrupted with)
	// signal N: 128+N.
	exitSignalBase = 128
)

// runExitCode is what wp run exits with for the outcome of its one
// delivery: what watchbot then does with the message is in the README's
// exit-code table.
func runExitCode(res worker.Result) int {
	switch res.Outcome {
	case worker.Completed, worker.Finished, worker.AlreadyDone, worker.Skipped, worker.Reduced:
		return exitOK
	case worker.FailedJob, worker.CommandFailed:
		return res.Status
	case worker.GaveUp:
		// Exit as the command did, so the message still reaches the
		// dead-letter queue.
		switch {
		case !res.Ran && res.NotFound:
			return exitNotFound
		case !res.Ran:
			return exitCannotExec
		case res.Signal != nil && res.Status == 0:
			return exitSignalBase + int(res.Signal.(syscall.Signal))
		}
		return res.Status
	case worker.Interrupted:
		// Nothing was recorded: never 0, so the message is retried.
		if res.Status == 0 {
			if sig, ok := res.Signal.(syscall.Signal); ok {
				return exitSignalBase + int(sig)
			}
			return exitSignalBase + int(syscall.SIGTERM)
		}
		return res.Status
	case worker.CannotStart:
		if res.NotFound {
			return exitNotFound
		}
		return exitCannotExec
	case worker.Dropped:
		return exitDrop
	default: // Unavailable, ClaimHeld
		return exitRetry
	}
}

// exitError carries an exit code through urfave/cli back to main.
type exitErr struct {
	code int
	err  error
	// quiet: the error was already reported.
	quiet bool
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitErr) Unwrap() error { return e.err }

// withCode wraps err so that wp exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitErr{code: code, err: err}
}

// exitCode is the silent exit with a code (the child's, or one already
// explained on stderr).
func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return &exitErr{code: code, quiet: true}
}

// usageError marks a wrong command line (exit 2).
func usageError(format string, a ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, a...))
}

var (
	// Set by the release build (goreleaser ldflags).
	version = "dev"
	commit  = ""
	date    = ""
)

func init() {
	// -v is --verbose; the version is --version (or -V).
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version"}
}

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program: it returns the process exit code, and is the
// one place where errors become exit codes.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	if len(args) > 1 && args[1] == "__complete" { // the completion scripts
		printCompletions(app, args[2:], stdout)
		return exitOK
	}
	err := app.Run(flagsFirst(app, args))
	if err == nil {
		return exitOK
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
		if ee.quiet {
			return code
		}
	} else if isUsageError(err) {
		code = exitUsage
	}
	msg := err.Error()
	if lg := appLogger(app); lg != nil && code != exitUsage {
		lg.Error(msg)
	} else {
		fmt.Fprintf(stderr, "wp: %s\n", msg)
	}
	return code
}

// isUsageError recognises urfave/cli's own flag errors.
func isUsageError(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "Required flag", "Required flags", "invalid boolean"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// versionString is what --version prints: the release's version, commit
// and build date (goreleaser's ldflags), or else what the Go toolchain
// recorded in the binary: the module version of a `go install ...@vX` (or
// the pseudo-version of a `go build` in a checkout), and the VCS commit and
// its time, with "+changes" when the tree had uncommitted changes.
func versionString() string {
	v, c, d := version, commit, date
	when := "built"
	modified := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
					if len(c) > 12 {
						c = c[:12]
					}
				}
			case "vcs.time":
				if d == "" {
					d, when = s.Value, "committed"
				}
			case "vcs.modified":
				modified = s.Value == "true" && commit == ""
			}
		}
	}
	if c != "" {
		v += " (commit " + c
		if modified {
			v += "+changes"
		}
		if d != "" {
			v += ", " + when + " " + d
		}
		v += ")"
	}
	return v
}

func appLogger(app *cli.App) *slog.Logger {
	if app.Metadata == nil {
		return nil
	}
	lg, _ := app.Metadata["logger"].(*slog.Logger)
	return lg
}

const exitCodesHelp = `EXIT CODES (wp's own; wp run passes its command's code through):
   0    success
   1    error (bad input, no such job, store error)
   2    wrong command line, or a bad flag value (typed, or in its env var)
   3    wp run: the message can never succeed; watchbot drops it
   75   wp run: the store or SNS could not be reached, the store is misconfigured
        (bad URL or WP_STORE_TIMEOUT), or another worker holds the reduce claim
        without recording it; watchbot retries
   126, 127  wp run: the command could not be started (not executable, not found)
   128+N  wp run: the command was killed by signal N
   130  wp local: interrupted by SIGINT or SIGTERM (resume with --resume)`

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "wp",
		Usage:   "map-reduce progress for shell workers on ECS watchbot",
		Version: versionString(),
		Description: `wp create stores a job (a list of parts, NDJSON on stdin) in a progress store and
publishes one SNS message per part (Subject=map). On ECS, watchbot runs the
worker once per message; "wp run -- ./process.sh" runs the command and does the
bookkeeping from its exit code. The completion that finishes the job publishes
exactly one Subject=reduce message. wp local runs a whole job on one machine.

PROGRESS STORES (--progress URL, env WP_PROGRESS):
   sqlite:///abs/path.db, sqlite://rel/path.db   embedded file (default on a laptop:
                                    $XDG_STATE_HOME/wp/progress.db or ~/.local/state/wp/progress.db)
   redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS)
   dynamodb://TABLE                 default when watchbot's ProgressTable env is set

` + exitCodesHelp,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "format of wp's own log lines on stderr: text or json", EnvVars: []string{"WP_LOG_FORMAT"}},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log more (debug level)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "log only errors"},
		},
		Before: func(c *cli.Context) error {
			lg, err := newLogger(stderr, c.String("log-format"), c.Bool("verbose"), c.Bool("quiet"))
			if err != nil {
				return withCode(exitUsage, err)
			}
			// The AWS SDK logs through slog.Default (internal/awslog).
			slog.SetDefault(lg)
			to, err := parseStoreTimeout()
			c.App.Metadata = map[string]any{"logger": lg, "storeTimeout": to, "storeTimeoutErr": err}
			return nil
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() maps errors to codes
		Commands: []*cli.Command{
			createCommand(),
			runCommand(),
			localCommand(),
			retryCommand(),
			infoCommand(),
			lsCommand(),
			pendingCommand(),
			failCommand(),
			rmCommand(),
			tableCommand(),
			completionCommand(),
		},
	}
	app.CustomAppHelpTemplate = cli.AppHelpTemplate
	app.OnUsageError = oneLineUsage("wp", app.Flags)
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			name := prefix + " " + cmd.Name
			if cmd.OnUsageError == nil {
				cmd.OnUsageError = oneLineUsage(name, cmd.Flags)
			}
			walk(name, cmd.Subcommands)
		}
	}
	walk("wp", app.Commands)
	return app
}

var (
	envValueErr  = regexp.MustCompile(`^could not parse "(.*)" as \w+ value from environment variable "(\w+)" for flag ([\w-]+): `)
	flagValueErr = regexp.MustCompile(`^invalid value "(.*)" for flag -([\w-]+): `)
	flagErr      = regexp.MustCompile(`^(flag provided but not defined|flag needs an argument): -([\w-]+)$`)
)

// oneLineUsage turns a flag error urfave/cli found (a bad value typed or
// taken from a flag's environment variable, an unknown flag) into one line
// that says which value is wrong and what it should be: a usage error
// (exit 2), without the help page urfave/cli would print.
func oneLineUsage(cmd string, flags []cli.Flag) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if m := envValueErr.FindStringSubmatch(msg); m != nil {
			return usageError("%s=%q (the environment variable for --%s): %s", m[2], m[1], m[3], wantValue(flags, m[3]))
		}
		if m := flagValueErr.FindStringSubmatch(msg); m != nil {
			return usageError("%s %q: %s", dashes(m[2]), m[1], wantValue(flags, m[2]))
		}
		if m := flagErr.FindStringSubmatch(msg); m != nil {
			if strings.HasPrefix(m[1], "flag provided") {
				return usageError("unknown flag %s (%s --help lists the flags)", dashes(m[2]), cmd)
			}
			return usageError("%s needs a value (%s --help)", dashes(m[2]), cmd)
		}
		return usageError("%s (%s --help)", msg, cmd)
	}
}

func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// wantValue says what a flag's value should look like.
func wantValue(flags []cli.Flag, name string) string {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *cli.DurationFlag:
				return "want a duration such as 10s, 1m30s or 2m"
			case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag:
				return "want a whole number"
			case *cli.BoolFlag:
				return "want true or false"
			}
		}
	}
	return "not a valid value"
}

func newLogger(w io.Writer, format string, verbose, quiet bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	switch {
	case verbose && quiet:
		return nil, errors.New("--verbose and --quiet cannot be used together")
	case verbose:
		level = slog.LevelDebug
	case quiet:
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.New(newTextHandler(w, level)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

// appStoreTimeout is WP_STORE_TIMEOUT as the app parsed it at start.
func appStoreTimeout(c *cli.Context) (time.Duration, error) {
	if c.App.Metadata == nil {
		return parseStoreTimeout()
	}
	if err, _ := c.App.Metadata["storeTimeoutErr"].(error); err != nil {
		return 0, err
	}
	to, _ := c.App.Metadata["storeTimeout"].(time.Duration)
	return to, nil
}

func logger(c *cli.Context) *slog.Logger {
	if lg := appLogger(c.App); lg != nil {
		return lg
	}
	return slog.New(newTextHandler(c.App.ErrWriter, slog.LevelInfo))
}

// flagsFirst lets flags follow arguments ("wp info JOBID --json"), which
// urfave/cli v2 does not parse by itself: it moves a command's flags before
// its arguments. Commands that run a command after "--" (run, local) are left
// as typed, so CMD's own flags are never taken for wp's.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Find the command name after the global flags.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil || cmd.Name == "run" || cmd.Name == "local" || len(cmd.Subcommands) > 0 {
		return args
	}
	out := append([]string{}, args[:i+1]...)
	var pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			pos = append(pos, rest[j:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			out = append(out, a)
			if takesValue(cmd.Flags, a) && j+1 < len(rest) {
				out = append(out, rest[j+1])
				j++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(out, pos...)
}

// takesValue says whether arg ("--name", "-n") names a flag that needs a
// value in the next argument.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
