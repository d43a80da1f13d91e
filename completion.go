package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// The bash and zsh scripts ask wp itself for candidates through urfave/cli's
// hidden --generate-bash-completion flag; fish gets a static script that
// urfave/cli generates from the command tree.
const bashCompletion = `# wp bash completion: source <(wp completion bash)
_wp_complete() {
	local cur opts
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	if [[ "$cur" == "-"* ]]; then
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	return 0
}
complete -o bashdefault -o default -F _wp_complete wp
`

const zshCompletion = `#compdef wp
# wp zsh completion: wp completion zsh > "${fpath[1]}/_wp"
_wp() {
	local -a opts
	local cur
	cur=${words[-1]}
	if [[ "$cur" == "-"* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ "${opts[1]}" != "" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
compdef _wp wp
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: `Install:
   bash   echo 'source <(wp completion bash)' >> ~/.bashrc
   zsh    wp completion zsh > "${fpath[1]}/_wp"   (then restart zsh)
   fish   wp completion fish > ~/.config/fish/completions/wp.fish`,
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
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return usageError("completion: unknown shell %q: want bash, zsh or fish", c.Args().First())
			}
			return nil
		},
	}
}
