package testservers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisInstall is what to do when redis-server is missing.
const redisInstall = "install it (Debian/Ubuntu: apt-get install -y redis-server)"

// StartRedis starts a throwaway redis-server on a free loopback port, with no
// persistence and its working files in a new temporary directory, and waits
// until it answers. extraArgs are passed on to redis-server (for example
// "--requirepass", "secret"). Stop kills the server and removes the
// directory. It does not need a testing.T, so testscript Setup can call it.
func StartRedis(extraArgs ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %s", redisInstall)
	}
	// Another process may take the free port between FreePort and the
	// server's bind: try a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := startRedisOnce(bin, extraArgs)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRedisOnce(bin string, extraArgs []string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for redis-server: %w", err)
	}
	dir, err := os.MkdirTemp("", "wp-redis-")
	if err != nil {
		return nil, fmt.Errorf("make redis-server directory: %w", err)
	}
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("make redis-server log: %w", err)
	}
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	stop := func() {
		cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitRedis(addr, exited, 10*time.Second); err != nil {
		// The log says why (most often "Address already in use"): read
		// it before stop removes the directory.
		log, _ := os.ReadFile(logPath)
		stop()
		return nil, fmt.Errorf("redis-server on %s: %w; its log ends: %s", addr, err, lastLine(log))
	}
	return &Server{Addr: addr, URL: "redis://" + addr + "/0", stop: stop}, nil
}

// waitRedis waits until the server at addr replies to PING (any reply: a
// server with a password answers NOAUTH, which is an answer), the process
// exits, or the timeout passes.
func waitRedis(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("redis-server exited before it answered (port taken, or a bad argument)")
		default:
		}
		if err := pingRedis(addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within %v: %w", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return err
	}
	if len(line) == 0 || (line[0] != '+' && line[0] != '-') {
		return fmt.Errorf("unexpected reply %q", bytes.TrimSpace(line))
	}
	if strings.HasPrefix(string(line), "-LOADING") {
		return errors.New("still loading")
	}
	return nil
}

func lastLine(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
}

// StartRedisT starts redis-server for a test or benchmark, fails it with
// what to install when that is impossible, and stops the server when the
// test ends.
func StartRedisT(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s, err := StartRedis(extraArgs...)
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
