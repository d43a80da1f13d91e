package backends

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// OpenFunc opens a driver from its parsed URL. All of a store's settings
// come from the URL.
type OpenFunc func(ctx context.Context, u *url.URL) (Driver, error)

var (
	mu      sync.RWMutex
	openers = map[string]OpenFunc{}
)

// Register makes a store available under a URL scheme. Store packages call it
// from init. Registering a scheme twice panics.
func Register(scheme string, open OpenFunc) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := openers[scheme]; dup {
		panic("backends: scheme registered twice: " + scheme)
	}
	openers[scheme] = open
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	mu.RLock()
	defer mu.RUnlock()
	s := make([]string, 0, len(openers))
	for k := range openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// opener returns the OpenFunc registered for scheme.
func opener(scheme, rawURL string) (OpenFunc, error) {
	mu.RLock()
	open, ok := openers[scheme]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("progress store %s: unknown scheme %q (known: %s)", Redact(rawURL), scheme, strings.Join(Schemes(), ", "))
	}
	return open, nil
}

// ParseURL parses a store URL and checks it has a scheme. Its errors never
// contain the password.
func ParseURL(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, fmt.Errorf("progress store URL is empty (known schemes: %s)", strings.Join(Schemes(), ", "))
	}
	u, err := url.Parse(rawURL)
	if err != nil || atAfterAuthority(rawURL) {
		// url.Error quotes the URL, and its reason can quote part of
		// the password (as an "invalid port"): say neither. An '@'
		// after a non-empty authority is a password holding '/', '?' or
		// '#' that parsed as a path, query or fragment: a store would
		// quote that text in its errors.
		return nil, fmt.Errorf("progress store URL %s does not parse (percent-encode characters such as '/', '?', '#' and '@' in a password)", Redact(rawURL))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("progress store URL %s has no scheme (known: %s)", Redact(rawURL), strings.Join(Schemes(), ", "))
	}
	return u, nil
}

// Redact returns rawURL with any password replaced by "xxxxx". It works on
// strings that do not parse too, so it is safe to call on anything a user
// typed before printing it.
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && !atAfterAuthority(rawURL) {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
		// Nothing to hide: echo it as typed ("sqlite://" stays
		// "sqlite://", where u.String() would say "sqlite:").
		return rawURL
	}
	// Unparseable: blank out anything between "://" and the last '@'
	// before the path.
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return rawURL
	}
	// A password may hold '/', '?' or '#': blank up to the last '@'
	// anywhere (over-redacting a path that holds '@' is harmless).
	rest := rawURL[i+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return rawURL[:i+3] + "xxxxx@" + rest[at+1:]
	}
	return rawURL
}

// atAfterAuthority reports an '@' after a non-empty authority ("//host"):
// what a password holding an unencoded '/', '?' or '#' looks like
// ("redis://:123/abc@host" parses with "/abc@host" as its path). A URL with
// an empty authority ("sqlite:///dir/a@b.db") may hold '@' in its path.
func atAfterAuthority(rawURL string) bool {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return false
	}
	rest := rawURL[i+3:]
	end := strings.IndexAny(rest, "/?#")
	return end > 0 && strings.LastIndex(rest, "@") > end
}
