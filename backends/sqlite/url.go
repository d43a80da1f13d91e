package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wp-tools/wp/internal/statedir"
)

// DefaultBusyTimeout is how long one statement waits for another
// connection's write lock before giving up with SQLITE_BUSY (which the store
// then retries a few times). Override it per URL with ?busy_timeout=30s.
const DefaultBusyTimeout = 10 * time.Second

// config is everything a sqlite:// URL says.
type config struct {
	path        string // absolute path of the database file
	busyTimeout time.Duration
}

// parseURL reads sqlite:///abs/path.db (absolute) or sqlite://rel/path.db
// (relative to the working directory: host and path joined). The only query
// parameter is busy_timeout, a Go duration ("10s", "1m").
func parseURL(u *url.URL) (config, error) {
	cfg := config{busyTimeout: DefaultBusyTimeout}
	if u.Scheme != "sqlite" {
		return cfg, fmt.Errorf("scheme %q is not sqlite", u.Scheme)
	}
	if u.Opaque != "" {
		return cfg, fmt.Errorf("sqlite URL needs two slashes: use sqlite:///abs/path.db or sqlite://relative/path.db")
	}
	if u.User != nil {
		return cfg, errors.New("sqlite URL takes no user or password: it names a local file")
	}
	if u.Port() != "" {
		return cfg, errors.New("sqlite URL takes no port: it names a local file (sqlite:///abs/path.db or sqlite://relative/path.db)")
	}
	if u.Fragment != "" {
		return cfg, fmt.Errorf("sqlite URL has a fragment %q: remove it (escape '#' in a file name as %%23)", u.Fragment)
	}
	p := u.Host + u.Path
	if p == "" || strings.HasSuffix(p, "/") {
		return cfg, errors.New("sqlite URL names no database file: use sqlite:///abs/path.db or sqlite://relative/path.db")
	}
	if strings.ContainsAny(p, "?\x00") {
		return cfg, fmt.Errorf("sqlite database path %q contains '?' or NUL, which sqlite cannot open: rename the file", p)
	}
	q := u.Query()
	var unknown []string
	for k := range q {
		if k != "busy_timeout" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return cfg, fmt.Errorf("unknown sqlite URL parameter %q (known: busy_timeout)", unknown[0])
	}
	if v := q["busy_timeout"]; len(v) > 0 {
		if len(v) > 1 {
			return cfg, errors.New("sqlite URL parameter busy_timeout given more than once")
		}
		d, err := time.ParseDuration(v[0])
		if err != nil || d < time.Millisecond {
			return cfg, fmt.Errorf("sqlite URL parameter busy_timeout=%q: want a duration of at least 1ms, like 10s", v[0])
		}
		cfg.busyTimeout = d
	}
	abs, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		return cfg, fmt.Errorf("resolve sqlite database path %q: %w", p, err)
	}
	cfg.path = abs
	return cfg, nil
}

// Path is the database file a sqlite:// store URL names, made absolute
// (the URL checked as Open checks it).
func Path(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("sqlite URL: %w", err)
	}
	cfg, err := parseURL(u)
	return cfg.path, err
}

// DefaultPath is where wp keeps its progress database when no store URL is
// given: $XDG_STATE_HOME/wp/progress.db, or ~/.local/state/wp/progress.db
// when XDG_STATE_HOME is unset or not absolute (as the XDG spec says).
func DefaultPath() (string, error) {
	d, err := statedir.Dir()
	if err != nil {
		return "", fmt.Errorf("find the default progress database: %w", err)
	}
	return filepath.Join(d, "progress.db"), nil
}

// DefaultURL is DefaultPath as a sqlite:// store URL.
func DefaultURL() (string, error) {
	p, err := DefaultPath()
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "sqlite", Path: filepath.ToSlash(p)}).String(), nil
}

// prepareFile creates the database's missing parent directories (mode 0700)
// and the database file itself (mode 0600), whatever the umask. An existing
// file or directory keeps its mode. It must run before sqlite opens the file:
// closing a descriptor of an open database would drop sqlite's POSIX locks.
func prepareFile(path string) error {
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	// Chmod through the descriptor: 0600 regardless of the umask.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("set database file mode: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents with mode 0700 exactly.
func mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("database directory %s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("database directory: %w", err)
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create database directory: %w", err)
	} else if err == nil {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("set database directory mode: %w", err)
		}
	}
	return nil
}

// tightenSidecars gives the -wal and -shm files no more access than the
// database file has. SQLite already creates them with the database's mode;
// this covers files left by an older or foreign writer. Chmod works on the
// path, so it opens no descriptor and leaves sqlite's locks alone.
func tightenSidecars(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("database file: %w", err)
	}
	mode := fi.Mode().Perm()
	for _, suffix := range []string{"-wal", "-shm"} {
		si, err := os.Stat(path + suffix)
		if err != nil {
			continue // not there (yet): sqlite will copy the db's mode
		}
		if si.Mode().Perm()&^mode != 0 {
			if err := os.Chmod(path+suffix, si.Mode().Perm()&mode); err != nil {
				return fmt.Errorf("restrict %s: %w", filepath.Base(path+suffix), err)
			}
		}
	}
	return nil
}
