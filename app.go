package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"
)

// appState is what every command shares, set once by the app's Before from
// the global flags and the environment.
type appState struct {
	stderr io.Writer
	log    *slog.Logger
	// jsonLogs: --log-format json; what wp tells the user to run next is
	// then a field of a JSON line, not a line of its own.
	jsonLogs bool
	verbose  bool
	// storeTimeout bounds each store call (WP_STORE_TIMEOUT);
	// storeTimeoutErr says why WP_STORE_TIMEOUT was refused. Only commands
	// that open a store report it.
	storeTimeout    time.Duration
	storeTimeoutErr error
}

// logger is wp's logger for the command that runs (a plain text logger
// before the app has set its own up).
func (a *appState) logger() *slog.Logger {
	if a.log == nil {
		return slog.New(newTextHandler(a.stderr, slog.LevelInfo))
	}
	return a.log
}

// newApp is wp's command line: the app, its global flags and commands.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app, _ := buildApp(stdin, stdout, stderr)
	return app
}

// buildApp is newApp, and the state its commands share.
func buildApp(stdin io.Reader, stdout, stderr io.Writer) (*cli.App, *appState) {
	a := &appState{stderr: stderr}
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
			a.log, a.jsonLogs, a.verbose = lg, c.String("log-format") == "json", c.Bool("verbose")
			a.storeTimeout, a.storeTimeoutErr = parseStoreTimeout()
			return nil
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() maps errors to codes
		Commands: []*cli.Command{
			createCommand(a),
			runCommand(a),
			localCommand(a),
			retryCommand(a),
			deadLetterCommand(a),
			infoCommand(a),
			lsCommand(a),
			pendingCommand(a),
			failCommand(a),
			rmCommand(a),
			expireCommand(a),
			tableCommand(a),
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
	return app, a
}
