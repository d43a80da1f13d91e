// Package statedir says where wp keeps its state on this machine: the
// default SQLite progress database and wp local's parts files.
package statedir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is wp's state directory: $XDG_STATE_HOME/wp, or ~/.local/state/wp
// when XDG_STATE_HOME is unset or not absolute (as the XDG Base Directory
// spec says a relative value must be ignored).
func Dir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "wp"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find wp's state directory: %w (set XDG_STATE_HOME or HOME)", err)
	}
	return filepath.Join(home, ".local", "state", "wp"), nil
}
