// Package testservers starts the real services wp's tests run against
// (redis-server, dynalite) on free loopback ports, and stops them. Tests never
// rely on a service someone started by hand: when a service cannot start, the
// error says what to install.
package testservers

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Server is a running service.
type Server struct {
	// Addr is host:port on loopback.
	Addr string
	// URL is how wp reaches it: a redis:// store URL or an http:// endpoint.
	URL  string
	stop func()
	// died reports, once the process has exited on its own, how it ended
	// and the last of its output; "" while it runs.
	died func() string
}

// Died returns "" while the service runs; once it has exited without Stop,
// it says how (exit status and the end of its output). Tests call it when a
// request fails so that "connection refused" names the real cause.
func (s *Server) Died() string {
	if s == nil || s.died == nil {
		return ""
	}
	return s.died()
}

// Stop stops the service and removes its files. Safe to call twice.
func (s *Server) Stop() {
	if s != nil && s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitDial waits until addr accepts TCP connections or the timeout passes.
func WaitDial(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %w", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RepoRoot is the directory holding wp's go.mod (and package.json, for
// dynalite's node_modules).
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		wd, _ := os.Getwd()
		return wd
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
