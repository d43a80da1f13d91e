package backends

import (
	"regexp"
	"strings"
	"testing"
)

// jobIDRule is the rule ValidateJobID checks by hand, as a regular
// expression: the two must agree.
var jobIDRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func TestValidateJobID(t *testing.T) {
	for _, id := range []string{"a", "J0b.1_2-3", "0abc", strings.Repeat("x", 128), "", "-a", ".a", "_a", "a b", "a/b", "a:b", "a{b}", "é", strings.Repeat("x", 129), "a\x00"} {
		got := ValidateJobID(id) == nil
		if want := jobIDRule.MatchString(id); got != want {
			t.Errorf("ValidateJobID(%q) accepts = %v, want %v", id, got, want)
		}
	}
}

func FuzzValidateJobID(f *testing.F) {
	for _, s := range []string{"a", "-a", "a.b", strings.Repeat("y", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validJobID(id), jobIDRule.MatchString(id); got != want {
			t.Errorf("validJobID(%q) = %v, the rule says %v", id, got, want)
		}
	})
}
