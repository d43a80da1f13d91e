package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// How wp reads its command line, and what it says when the command line is
// wrong: one line naming the value or flag, and exit 2.

// usageError marks a wrong command line (exit 2).
func usageError(format string, a ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, a...))
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
