// Package text holds what wp's error messages need of strings.
package text

import "unicode/utf8"

// Truncate is s cut to at most n bytes, at a character boundary, with "..."
// after a cut: for quoting user input in a one-line error.
func Truncate[T ~string | ~[]byte](s T, n int) string {
	if len(s) <= n {
		return string(s)
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return string(s[:cut]) + "..."
}
