package backends

import (
	"strings"
	"testing"
)

// urlSeeds are store URLs in the shapes users type, with and without
// passwords, parseable and not.
var urlSeeds = [][3]string{
	// prefix, password, suffix: the URL is prefix+password+suffix
	{"redis://:", "hunter2", "@127.0.0.1:6379/0"},
	{"rediss://user:", "pa ss", "@host:6380/2?dial_timeout=3s"},
	{"redis://:", "a/b?c#d", "@127.0.0.1:6379/0"},
	{"redis://:", "p@ss@word", "@127.0.0.1:6379/0"},
	{"redis://:", "pw%zz", "@127.0.0.1/0"},
	{"redis://:", "secret", "@127.0.0.1:abc/0"},
	{"sqlite://u:", "pw", "@/tmp/x.db"},
	{"dynamodb://u:", "pw", "@table"},
	{"redis://u:", "pw", "@[::1]:6379/0"},
	{"redis://u:", "pw", "@[::1/0"},
	{"x://", "xxxxx", "@h"},
}

// FuzzRedact: what Redact prints does not depend on the password: the same
// URL with every letter and digit of the password changed redacts to the
// same text, whether the URL parses or not.
func FuzzRedact(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, prefix, pw, suffix string) {
		raw, other, ok := withPassword(prefix, pw, suffix)
		if !ok {
			return
		}
		if a, b := Redact(raw), Redact(other); a != b {
			t.Fatalf("Redact(%q) = %q but Redact(%q) = %q: the password shows", raw, a, other, b)
		}
	})
}

// FuzzParseURL: ParseURL's error, or the Redact of the URL it accepts, does
// not depend on the password.
func FuzzParseURL(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, prefix, pw, suffix string) {
		raw, other, ok := withPassword(prefix, pw, suffix)
		if !ok {
			return
		}
		u1, err1 := ParseURL(raw)
		u2, err2 := ParseURL(other)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("ParseURL(%q) = %v but ParseURL(%q) = %v", raw, err1, other, err2)
		}
		if err1 != nil {
			if err1.Error() != err2.Error() {
				t.Fatalf("ParseURL errors show the password:\n%q: %v\n%q: %v", raw, err1, other, err2)
			}
			return
		}
		if u1.Scheme == "" {
			t.Fatalf("ParseURL(%q) accepted a URL with no scheme", raw)
		}
		if a, b := Redact(u1.String()), Redact(u2.String()); a != b {
			t.Fatalf("Redact of accepted URLs shows the password: %q, %q", a, b)
		}
	})
}

// withPassword builds prefix+pw+suffix, where prefix is "scheme://[user]:"
// and suffix starts with '@', and the same URL with every letter and digit
// of pw changed to another of its kind (hex digits stay hex digits, so
// percent-escapes stay valid or invalid alike).
func withPassword(prefix, pw, suffix string) (string, string, bool) {
	i := strings.Index(prefix, "://")
	if i <= 0 || !strings.HasSuffix(prefix, ":") || strings.Count(prefix[i+3:], ":") != 1 ||
		strings.ContainsAny(prefix[i+3:], "/?#@[]%") || !isScheme(prefix[:i]) {
		return "", "", false
	}
	if pw == "" || !strings.HasPrefix(suffix, "@") || strings.Contains(pw, ":") {
		return "", "", false
	}
	other := []byte(pw)
	changed := false
	for j, c := range other {
		var to byte
		switch {
		case c >= '0' && c <= '9':
			to = '7'
			if c == '7' {
				to = '3'
			}
		case c >= 'a' && c <= 'f':
			to = 'a'
			if c == 'a' {
				to = 'b'
			}
		case c >= 'A' && c <= 'F':
			to = 'A'
			if c == 'A' {
				to = 'B'
			}
		case c >= 'g' && c <= 'z':
			to = 'q'
			if c == 'q' {
				to = 'z'
			}
		case c >= 'G' && c <= 'Z':
			to = 'Q'
			if c == 'Q' {
				to = 'Z'
			}
		default:
			continue
		}
		other[j] = to
		changed = true
	}
	if !changed {
		return "", "", false
	}
	return prefix + pw + suffix, prefix + string(other) + suffix, true
}
func isScheme(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return s != ""
}
