package main

import (
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

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
