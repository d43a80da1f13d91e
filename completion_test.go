package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// A completion query: the words typed after "wp", the last one being
// completed, and the candidates the shell must offer (all of them, and for
// flags nothing else).
type completionQuery struct {
	words []string
	want  []string
	exact bool
}

// completionQueries asks, for every command and subcommand, for its flags
// ("wp CMD --<TAB>"), and for the commands and subcommands themselves.
func completionQueries() []completionQuery {
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	var qs []completionQuery
	var top []string
	for _, c := range app.Commands {
		top = append(top, c.Name)
	}
	qs = append(qs, completionQuery{words: []string{""}, want: top, exact: true})
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), c.Name)
			if len(c.Subcommands) > 0 {
				var subs []string
				for _, s := range c.Subcommands {
					subs = append(subs, s.Name)
				}
				qs = append(qs, completionQuery{words: append(append([]string{}, p...), ""), want: subs, exact: true})
				walk(p, c.Subcommands)
			}
			want := []string{"--help"}
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					if len(n) > 1 {
						want = append(want, "--"+n)
					}
				}
			}
			qs = append(qs, completionQuery{words: append(p, "--"), want: want, exact: true})
		}
	}
	walk(nil, app.Commands)
	return qs
}

// wpOnPath puts this test binary on PATH as "wp" (testscript.Main runs
// main when the binary is called wp).
func wpOnPath(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "wp")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func shellOrSkip(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (.ci/run installs it)", name)
	}
	return p
}

// runShell runs script in shell and returns the candidates it printed
// under each "### QUERY" line.
func runShell(t *testing.T, argv []string, script string) map[string][]string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", argv[0], err, out)
	}
	got := map[string][]string{}
	q, in := "", false
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "### "); ok {
			q, in = s, true
			got[q] = []string{}
			continue
		}
		if line = strings.TrimSpace(strings.SplitN(line, "\t", 2)[0]); line != "" && in {
			got[q] = append(got[q], line)
		}
	}
	return got
}

func checkCompletions(t *testing.T, shell string, got map[string][]string) {
	t.Helper()
	for _, q := range completionQueries() {
		key := strings.Join(q.words, " ")
		cands, ok := got[key]
		if !ok {
			t.Errorf("%s: no answer for %q", shell, "wp "+key)
			continue
		}
		have := map[string]bool{}
		for _, c := range cands {
			have[c] = true
		}
		var missing []string
		for _, w := range q.want {
			if !have[w] {
				missing = append(missing, w)
			}
			delete(have, w)
		}
		if len(missing) > 0 {
			t.Errorf("%s: wp %s<TAB> does not offer %v (offers %v)", shell, key, missing, cands)
		}
		if q.exact && len(have) > 0 {
			var extra []string
			for c := range have {
				extra = append(extra, c)
			}
			sort.Strings(extra)
			t.Errorf("%s: wp %s<TAB> offers %v, which is not wp's", shell, key, extra)
		}
	}
}

// shellWords quotes words for bash and zsh arrays.
func shellWords(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("'" + w + "'")
	}
	return b.String()
}

func TestCompletion_Bash(t *testing.T) {
	bash := shellOrSkip(t, "bash")
	wpOnPath(t)
	var s strings.Builder
	s.WriteString("source <(wp completion bash)\n")
	for _, q := range completionQueries() {
		fmt.Fprintf(&s, "echo '### %s'\nCOMP_WORDS=(wp %s); COMP_CWORD=%d; COMPREPLY=(); _wp_complete; printf '%%s\\n' \"${COMPREPLY[@]}\"\n",
			strings.Join(q.words, " "), shellWords(q.words), len(q.words))
	}
	checkCompletions(t, "bash", runShell(t, []string{bash, "--norc", "--noprofile"}, s.String()))
}

// TestCompletion_Zsh drives the zsh function as zsh's completion system
// calls it (words, CURRENT; compadd collects the candidates) for every
// query, then checks two of them through a real interactive zsh with
// compinit, over a pseudo-terminal (zsh/zpty).
func TestCompletion_Zsh(t *testing.T) {
	zsh := shellOrSkip(t, "zsh")
	wpOnPath(t)
	var s strings.Builder
	s.WriteString(`compdef() { :; }
compadd() { [[ $1 == -a ]] && print -l -- "${(@P)2}"; }
_files() { :; }
source <(wp completion zsh)
`)
	for _, q := range completionQueries() {
		fmt.Fprintf(&s, "print -r -- '### %s'\nwords=(wp %s); CURRENT=%d; _wp\n", strings.Join(q.words, " "), shellWords(q.words), len(q.words)+1)
	}
	checkCompletions(t, "zsh", runShell(t, []string{zsh, "-f"}, s.String()))

	for _, tc := range []struct{ line, last string }{
		{"wp info --", "--watch"},
		{"wp local --", "--tolerate"},
	} {
		script := `zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PS1="> "; autoload -U compinit; compinit -u -D; source <(wp completion zsh)'
zpty -wn z $'` + tc.line + `\t'
out=""; deadline=$(( SECONDS + 20 ))
while [[ $out != *` + tc.last + `* ]] && (( SECONDS < deadline )); do
	if zpty -rt z chunk; then out+=$chunk; else sleep 0.05; fi
done
zpty -d z
print -r -- "$out"
`
		cmd := exec.Command(zsh, "-f")
		cmd.Stdin = strings.NewReader(script)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("zsh zpty: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), tc.last) {
			t.Errorf("interactive zsh: %s<TAB> did not list %s:\n%q", tc.line, tc.last, out)
		}
	}
}

func TestCompletion_Fish(t *testing.T) {
	fish := shellOrSkip(t, "fish")
	wpOnPath(t)
	var s strings.Builder
	s.WriteString("wp completion fish | source\n")
	for _, q := range completionQueries() {
		line := "wp " + strings.Join(q.words, " ")
		fmt.Fprintf(&s, "echo '### %s'\ncomplete -C '%s'\n", strings.Join(q.words, " "), line)
	}
	checkCompletions(t, "fish", runShell(t, []string{fish, "--no-config"}, s.String()))
}
