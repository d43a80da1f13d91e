// Command wp gives shell workers on ECS watchbot the map-reduce bookkeeping
// that Python users get from watchbot-progress-py: it creates jobs, runs a
// worker command once per part, and sends exactly one reduce message when the
// last part completes.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program, argv in and exit code out: the one place where
// an error becomes an exit code (exitcodes.go).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app, a := buildApp(stdin, stdout, stderr)
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
	if a.log != nil && code != exitUsage {
		a.log.Error(err.Error())
	} else {
		fmt.Fprintf(stderr, "wp: %s\n", err)
	}
	return code
}
