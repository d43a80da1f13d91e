package main

import (
	"os/exec"
	"testing"
)

// TestShellQuote: every word a hint prints reads back, through a real
// shell, as the word itself.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "two words", `{"name":"it's"}`, "$HOME", "`x`", "a\nb", `back\slash`, "!*?[]{}()<>|&;#~=", "-n"} {
		out, err := exec.Command("sh", "-c", "printf '%s' "+shellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if got := string(out); got != s {
			t.Errorf("shellQuote(%q) reads back as %q", s, got)
		}
	}
}
