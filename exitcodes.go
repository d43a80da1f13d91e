package main

import "fmt"

// wp's own exit codes. A child command's exit code passes through wp run
// untouched; these are the codes wp chooses itself. run (main.go) is the one
// place where an error becomes one of them.
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
	// exitInterrupted: wp local was stopped by SIGINT or SIGTERM; resume it
	// with --resume.
	exitInterrupted = 130
	// exitSignalBase: a command killed by (or interrupted with) signal N
	// exits 128+N, as a shell reports it.
	exitSignalBase = 128
)

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

// exitErr carries an exit code through urfave/cli back to run.
type exitErr struct {
	code int
	err  error
	// quiet: what happened was already said; run prints nothing.
	quiet bool
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitErr) Unwrap() error { return e.err }

// withCode wraps err so that wp prints it and exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitErr{code: code, err: err}
}

// exitSilently makes wp exit with code and print nothing more: the code is
// the child's, or what happened was already logged.
func exitSilently(code int) error {
	if code == exitOK {
		return nil
	}
	return &exitErr{code: code, quiet: true}
}
