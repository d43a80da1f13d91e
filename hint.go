package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
)

// How wp tells a user to go on after a stop (a failed publish, Ctrl-C): a
// command line that works as printed, pasted into the same shell.

// rerunFlags are the flags of this command the user set (typed, or through
// their environment variables), but those in skip and --progress, shell
// quoted, followed by --progress when the store is not the default (see
// progressArg).
func rerunFlags(c *cli.Context, skip ...string) []string {
	var words []string
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "help" || name == "progress" || slices.Contains(skip, name) || !c.IsSet(name) {
			continue
		}
		if _, ok := f.(*cli.BoolFlag); ok {
			if c.Bool(name) {
				words = append(words, "--"+name)
			} else {
				words = append(words, "--"+name+"=false")
			}
			continue
		}
		words = append(words, dashes(name), shellQuote(fmt.Sprint(c.Value(name))))
	}
	return append(words, progressArg(c)...)
}

// progressArg is the --progress a rerun needs: none for the default store,
// the URL itself when it holds no password, and otherwise the WP_PROGRESS
// environment variable, in a form the shell refuses to run when it is
// unset (so the rerun can never fall back to another store). A password
// is never printed.
func progressArg(c *cli.Context) []string {
	u, src, err := storeURL(c)
	if err != nil || src == "the default" {
		return nil
	}
	if backends.Redact(u) != u {
		return []string{"--progress", `"${WP_PROGRESS:?set WP_PROGRESS to the progress store URL}"`}
	}
	return []string{"--progress", shellQuote(u)}
}

// shellQuote quotes s for a POSIX shell, when it needs it: a word with any
// character the shell treats specially ('=' included, which would make a
// first word an assignment) is put in single quotes.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~=") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin is argv as one command line a user can paste.
func shellJoin(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = shellQuote(a)
	}
	return strings.Join(words, " ")
}

// stdinPath is the file stdin was redirected from, when it is a regular
// file whose path the system tells (Linux's /proc), else "".
func stdinPath(r io.Reader) string {
	f, ok := r.(*os.File)
	if !ok {
		return ""
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil || !filepath.IsAbs(p) {
		return ""
	}
	if pi, err := os.Stat(p); err != nil || !os.SameFile(fi, pi) {
		return ""
	}
	return p
}

// tellRerun logs msg as an error with attrs, and how to go on: cmd, a
// command line to paste as printed. Text logs put cmd on its own indented
// line after "wp: HOW:"; JSON logs carry it as the line's "rerun".
func (a *appState) tellRerun(lg *slog.Logger, msg, how, cmd string, attrs ...any) {
	if a.jsonLogs {
		lg.Error(msg+"; "+how+" the command in rerun", append(attrs, "rerun", cmd)...)
		return
	}
	lg.Error(msg, attrs...)
	a.tellHow(lg, how, cmd)
}

// localResume is the wp local command line that resumes job id: --resume,
// extra, the flags of this run that still apply (-j, --retries, ...), the
// store when it is not the default, then -- CMD.
func localResume(c *cli.Context, id string, argv []string, extra ...string) string {
	words := append([]string{"wp", "local", "--resume", shellQuote(id)}, extra...)
	words = append(words, rerunFlags(c, "resume", "jobid", "metadata", "tolerate", "reduce-on-failure", "retry-given-up", "batch", "batch-bytes", "expire-after")...)
	return strings.Join(append(words, "--", shellJoin(argv)), " ")
}

// retryRerun is the wp retry command line that publishes the pending parts
// of job id: --pending, the flags of this run that still apply (--force,
// --concurrency), the store when it is not the default, the topic and the
// same input.
func retryRerun(c *cli.Context, id string) string {
	words := []string{"wp", "retry", shellQuote(id), "--pending"}
	words = append(words, rerunFlags(c, "given-up", "pending", "dry-run", "topic")...)
	words = append(words, "--topic", shellQuote(c.String("topic")), "<", inputArg(c))
	return strings.Join(words, " ")
}

// inputArg is the file stdin was redirected from, quoted, or PARTS when
// stdin was not a file (the user gives the same input again).
func inputArg(c *cli.Context) string {
	if p := stdinPath(c.App.Reader); p != "" {
		return shellQuote(p)
	}
	return "PARTS"
}

// tellHow prints how to go on: "wp: HOW:" and cmd on its own indented
// line, to paste as printed; JSON logs get one line carrying it as
// "rerun" instead.
func (a *appState) tellHow(lg *slog.Logger, how, cmd string) {
	if a.jsonLogs {
		lg.Info(how+" the command in rerun", "rerun", cmd)
		return
	}
	fmt.Fprintf(a.stderr, "wp: %s:\n  %s\n", how, cmd)
}
