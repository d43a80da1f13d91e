package main

import (
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestReadmeMatchesHelp checks that the README's command reference names
// every flag each command has, and no flag it does not have.
func TestReadmeMatchesHelp(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "\n## Command reference")
	if i < 0 {
		t.Fatal("README has no '## Command reference' section")
	}
	ref := readme[i+1:]
	if j := strings.Index(ref[3:], "\n## "); j >= 0 {
		ref = ref[:j+3]
	}
	heading := regexp.MustCompile("(?m)^### (?:`wp ([a-z ]+)`|(Global flags))\\s*$")
	flagRE := regexp.MustCompile(`(?:^|[^-\w])--([a-z][a-z-]*)`)
	documented := map[string]map[string]bool{}
	locs := heading.FindAllStringSubmatchIndex(ref, -1)
	for k, loc := range locs {
		name := "global"
		if loc[2] >= 0 {
			name = ref[loc[2]:loc[3]]
		}
		end := len(ref)
		if k+1 < len(locs) {
			end = locs[k+1][0]
		}
		set := map[string]bool{}
		for _, m := range flagRE.FindAllStringSubmatch(ref[loc[1]:end], -1) {
			set[m[1]] = true
		}
		documented[name] = set
	}

	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	actual := map[string]map[string]bool{"global": flagNames(append(app.Flags, cli.VersionFlag))}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			if len(c.Subcommands) > 0 {
				walk(name, c.Subcommands)
				continue
			}
			actual[name] = flagNames(c.Flags)
		}
	}
	walk("", app.Commands)

	for name, flags := range actual {
		doc, ok := documented[name]
		if !ok {
			t.Errorf("README's command reference has no section for %q", name)
			continue
		}
		for f := range flags {
			if !doc[f] {
				t.Errorf("%s: --%s is in --help but not in the README", name, f)
			}
		}
		for f := range doc {
			if !flags[f] {
				t.Errorf("%s: README names --%s, which --help does not have", name, f)
			}
		}
	}
	for name := range documented {
		if _, ok := actual[name]; !ok {
			t.Errorf("README documents %q, which is not a wp command", name)
		}
	}
	if t.Failed() {
		var names []string
		for n := range actual {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("commands: %v", names)
	}
}

func flagNames(flags []cli.Flag) map[string]bool {
	set := map[string]bool{}
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) > 1 && n != "help" {
				set[n] = true
			}
		}
	}
	return set
}
