package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Completion: the bash, zsh and fish scripts all ask wp itself what may
// come next ("wp __complete WORDS..."), so every command's flags and
// subcommands are offered in every shell, from the one command tree. (wp
// also still answers urfave/cli's --generate-bash-completion, which scripts
// printed by older versions use.)

const bashCompletion = `# wp bash completion: source <(wp completion bash)
_wp_complete() {
	local IFS=$'\n'
	COMPREPLY=($("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o bashdefault -o default -F _wp_complete wp
`

const zshCompletion = `#compdef wp
# wp zsh completion: wp completion zsh > "${fpath[1]}/_wp"
# (or, after compinit: source <(wp completion zsh))
_wp() {
	local -a opts
	opts=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	opts=(${opts:#})
	if (( ${#opts} )); then
		compadd -a opts
	else
		_files
	fi
}
if [ "$funcstack[1]" = "_wp" ]; then
	_wp "$@"
else
	compdef _wp wp
fi
`

const fishCompletion = `# wp fish completion: wp completion fish > ~/.config/fish/completions/wp.fish
function __wp_complete
	set -l tokens (commandline -opc)
	$tokens[1] __complete $tokens[2..-1] (commandline -ct) 2>/dev/null
end
function __wp_wants_files
	test -z "$(__wp_complete)"
end
complete -c wp -f -a '(__wp_complete)'
complete -c wp -n __wp_wants_files -F
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: `Install:
   bash   echo 'source <(wp completion bash)' >> ~/.bashrc
   zsh    wp completion zsh > "${fpath[1]}/_wp"   (then restart zsh)
   fish   wp completion fish > ~/.config/fish/completions/wp.fish

The scripts offer every command, subcommand and flag, and the values of
--log-format and --status; elsewhere the shell completes file names.`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("completion needs one argument: bash, zsh or fish")
			}
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				fmt.Fprint(c.App.Writer, fishCompletion)
			default:
				return usageError("completion: unknown shell %q: want bash, zsh or fish", c.Args().First())
			}
			return nil
		},
	}
}

// printCompletions answers "wp __complete WORDS...": WORDS are what
// follows "wp" on the command line up to the cursor, the last being the
// word being completed ("" after a space). It prints each candidate on a
// line; none means "complete file names".
func printCompletions(app *cli.App, words []string, w io.Writer) {
	for _, s := range completions(app, words) {
		fmt.Fprintln(w, s)
	}
}

// flagValues are the values offered after a flag that takes one.
var flagValues = map[string][]string{
	"log-format": {"text", "json"},
	"status":     {"running", "failed", "complete", "reduced"},
}

func completions(app *cli.App, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, prev := words[len(words)-1], words[:len(words)-1]
	flags := append([]cli.Flag{}, app.Flags...)
	flags = append(flags, cli.VersionFlag)
	cmds := app.Commands
	var cmd *cli.Command
	args := 0 // positional arguments of cmd so far
	for i := 0; i < len(prev); i++ {
		w := prev[i]
		if w == "--" {
			if cmd != nil && (cmd.Name == "run" || cmd.Name == "local") {
				return nil // CMD and its own arguments: the shell's default
			}
			continue
		}
		if strings.HasPrefix(w, "-") && w != "-" {
			if takesValue(flags, w) {
				if i == len(prev)-1 { // cur is this flag's value
					return matching(flagValues[strings.TrimLeft(w, "-")], cur)
				}
				i++
			}
			continue
		}
		if c := findCommand(cmds, w); c != nil && args == 0 {
			cmd, flags, cmds = c, c.Flags, c.Subcommands
			continue
		}
		args++
	}
	if strings.HasPrefix(cur, "-") {
		if name, _, ok := strings.Cut(strings.TrimLeft(cur, "-"), "="); ok {
			return matching(prefixAll(flagValues[name], cur[:strings.Index(cur, "=")+1]), cur)
		}
		var names []string
		for _, f := range flags {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				names = append(names, dashes(n))
			}
		}
		names = append(names, "--help", "-h")
		return matching(names, cur)
	}
	if args > 0 {
		return nil
	}
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	if cmd != nil && cmd.Name == "completion" {
		names = []string{"bash", "zsh", "fish"}
	}
	return matching(names, cur)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func prefixAll(list []string, p string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = p + s
	}
	return out
}

// matching returns the names that start with prefix, sorted, each once.
func matching(names []string, prefix string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
