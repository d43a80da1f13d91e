package testservers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dynaliteInstall is what to do when dynalite cannot run.
const dynaliteInstall = "dynalite not installed: run `npm ci` in the repository root (needs Node.js and npm)"

// dynaliteWrapper runs dynalite's own cli.js (path in DYNALITE_CLI, its
// arguments after "--") and exits when its standard input closes. The test
// binary holds the write end of that pipe, so dynalite dies with the test
// binary even when the binary is killed (go test -timeout) and never runs
// Stop: no node process is left behind on a shared machine.
//
// dynalite 4.0.0 rethrows the error of a request whose client hung up while
// sending it (index.js: req.on('error', err => { throw err })), which kills
// the whole server. A client that cancels a request (wp does, on a timeout or
// Ctrl-C) must not take the emulator down, as it would not take DynamoDB
// down: the wrapper drops exactly that error (ECONNRESET, "aborted") and
// lets every other uncaught error end the process as before.
const dynaliteWrapper = `process.on("uncaughtException", (err) => {
  if (err && err.code === "ECONNRESET" && err.message === "aborted") return;
  console.error(err);
  process.exit(1);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.argv.splice(1, 0, process.env.DYNALITE_CLI);
require(process.env.DYNALITE_CLI);`

// StartDynalite starts dynalite (an in-memory DynamoDB, npm package pinned in
// package.json) on a free loopback port and waits until it answers an HTTP
// request. URL is the endpoint to give the AWS SDK
// (AWS_ENDPOINT_URL_DYNAMODB). Tables take 10 ms to become ACTIVE instead of
// dynalite's default 500 ms, so tests that create a table each stay quick.
func StartDynalite() (*Server, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New(dynaliteInstall + ": node not found in PATH")
	}
	cli := filepath.Join(RepoRoot(), "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("%s: %s is missing", dynaliteInstall, cli)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := startDynaliteOnce(node, cli)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startDynaliteOnce(node, cli string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for dynalite: %w", err)
	}
	cmd := exec.Command(node, "-e", dynaliteWrapper, "--",
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--createTableMs", "10", "--deleteTableMs", "10", "--updateTableMs", "10")
	cmd.Env = append(os.Environ(), "DYNALITE_CLI="+cli)
	svc, err := startService("dynalite", cmd)
	if err != nil {
		return nil, err
	}
	stop, out := svc.stop, svc.out
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	url := "http://" + addr
	if err := waitDynalite(url, svc.exited, 20*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("dynalite on %s: %w; its output: %s", addr, err, lastLine(out.Bytes()))
	}
	return &Server{Addr: addr, URL: url, stop: stop, died: svc.died}, nil
}

// waitDynalite waits until dynalite answers an HTTP request (any status: an
// unsigned GET gets a 400, which is an answer), the process exits, or the
// timeout passes.
func waitDynalite(url string, exited <-chan struct{}, timeout time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("dynalite exited before it answered (port taken, or a broken node_modules: run `npm ci`)")
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartDynaliteT starts dynalite for a test and stops it in t.Cleanup. It
// fails the test (never skips it) when dynalite cannot start.
func StartDynaliteT(t testing.TB) *Server {
	t.Helper()
	s, err := StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d := s.Died(); d != "" {
			t.Error(d)
		}
		s.Stop()
	})
	return s
}

// lockedBuffer collects a child's output; the exec package copies into it
// from its own goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return []byte(strings.TrimSpace(b.buf.String()))
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
