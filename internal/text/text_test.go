package text

import "testing"

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer string", 8, "a longer..."},
		{"héllo", 2, "h..."}, // never half of é
		{"", 3, ""},
	} {
		if got := Truncate(c.in, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
		if got := Truncate([]byte(c.in), c.n); got != c.want {
			t.Errorf("Truncate([]byte(%q), %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
