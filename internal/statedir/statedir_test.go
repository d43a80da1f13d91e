package statedir

import (
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, tc := range []struct{ xdg, want string }{
		{"", filepath.Join(home, ".local", "state", "wp")},
		{"relative/state", filepath.Join(home, ".local", "state", "wp")},
		{"/abs/state", "/abs/state/wp"},
	} {
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		got, err := Dir()
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("XDG_STATE_HOME=%q: Dir() = %q, want %q", tc.xdg, got, tc.want)
		}
	}
}
