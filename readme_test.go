package main

import (
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
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
	heading := regexp.MustCompile("(?m)^### (?:`wp ([a-z -]+)`|(Global flags))\\s*$")
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

// TestReadmeHelpNamesStore checks the README's claim that `wp <command>
// --help` names the store it would use here, for every command that takes
// --progress: from WP_PROGRESS (password redacted), from ProgressTable, and
// the SQLite default.
func TestReadmeHelpNamesStore(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const claim = "`wp <command> --help` names the\nstore it would use here"
	if !strings.Contains(string(b), claim) {
		t.Fatalf("README no longer says %q: update this test with it", claim)
	}
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	cases := []struct {
		name, progress, table, want string
	}{
		{"WP_PROGRESS", "redis://:s3cret@127.0.0.1:6379/2", "arn:aws:dynamodb:us-east-1:123456789012:table/T", "(here, from WP_PROGRESS: redis://:xxxxx@127.0.0.1:6379/2)"},
		{"ProgressTable", "", "arn:aws:dynamodb:us-east-1:123456789012:table/T", "(here, from ProgressTable: dynamodb://T)"},
		{"default", "", "", "(here, from the default: sqlite://" + state + "/wp/progress.db)"},
	}
	var cmds [][]string
	var walk func(prefix []string, list []*cli.Command)
	walk = func(prefix []string, list []*cli.Command) {
		for _, c := range list {
			path := append(append([]string{}, prefix...), c.Name)
			walk(path, c.Subcommands)
			for _, f := range c.Flags {
				if f.Names()[0] == "progress" {
					cmds = append(cmds, path)
				}
			}
		}
	}
	walk(nil, newApp(strings.NewReader(""), io.Discard, io.Discard).Commands)
	if len(cmds) < 5 {
		t.Fatalf("only %d commands take --progress: %v", len(cmds), cmds)
	}
	for _, tc := range cases {
		t.Setenv("WP_PROGRESS", tc.progress)
		t.Setenv("ProgressTable", tc.table)
		for _, cmd := range cmds {
			var out strings.Builder
			args := append(append([]string{"wp"}, cmd...), "--help")
			if code := run(args, strings.NewReader(""), &out, &out); code != 0 {
				t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("%s: %s: --help does not say %q", tc.name, strings.Join(args, " "), tc.want)
			}
			if strings.Contains(out.String(), "s3cret") {
				t.Errorf("%s: --help shows the password", strings.Join(args, " "))
			}
		}
	}
}

// TestReadmeJobIDRule: every statement of the job-id rule, in the README
// and in --help, says what ValidateJobID enforces: 1 to 128 characters,
// starting with a letter or digit.
func TestReadmeJobIDRule(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ")
	for _, want := range []string{
		"`--jobid ID`: default a new UUID. 1 to 128 letters, digits, `.`, `_`, `-`, starting with a letter or digit.",
		"ids are 1 to 128 letters, digits, `.`, `_`, `-`, starting with a letter or digit",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README does not say %q", want)
		}
	}
	for _, id := range []string{"-a", ".a", "_a"} {
		if backends.ValidateJobID(id) == nil {
			t.Errorf("ValidateJobID(%q) accepted an id that does not start with a letter or digit", id)
		}
	}
	for _, cmd := range []string{"create", "local"} {
		var out strings.Builder
		run([]string{"wp", cmd, "--help"}, strings.NewReader(""), &out, &out)
		if !strings.Contains(out.String(), "1 to 128 letters, digits, '.', '_', '-', starting with a letter or digit") {
			t.Errorf("wp %s --help does not state the job-id rule", cmd)
		}
	}
}
