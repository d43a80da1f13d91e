package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one child process to time.
type proc struct {
	args  []string
	env   []string // added to the harness's environment
	dir   string
	stdin string // file to read stdin from; empty: /dev/null
	// rss: measure the peak RSS, through GNU time (see timeBin).
	rss bool
}

// timeBin is GNU time, the launcher that measures a child's peak RSS. The
// harness cannot take ru_maxrss of its own children: Go starts them with
// vfork, and Linux records the parent's high-water RSS in the child's
// ru_maxrss when the child execs, so every child would report at least the
// harness's own RSS. GNU time is a small C program that forks, so the
// grandchild's ru_maxrss (which time prints with %M) starts from time's
// own RSS, about 1 MiB: the bare `true` row shows that floor.
var timeBin string

// procResult is what one run of a child cost.
type procResult struct {
	wall   time.Duration
	maxRSS int64 // bytes
	stdout []byte
}

// run starts p, waits for it, and fails unless it exits 0. Peak RSS comes
// from the kernel's rusage of the child (ru_maxrss, KiB on Linux).
func (p proc) run() (procResult, error) {
	args := p.args
	var rssFile string
	if p.rss {
		f, err := os.CreateTemp("", "wp-bench-rss-")
		if err != nil {
			return procResult{}, err
		}
		f.Close()
		rssFile = f.Name()
		defer os.Remove(rssFile)
		args = append([]string{timeBin, "-f", "%M", "-o", rssFile}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Dir = p.dir
	if p.stdin != "" {
		f, err := os.Open(p.stdin)
		if err != nil {
			return procResult{}, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &limited{b: &errb, n: 1 << 16}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return procResult{}, fmt.Errorf("%s: %v; stderr: %s", strings.Join(p.args, " "), err, lastLines(errb.String(), 5))
	}
	var rss int64
	if p.rss {
		b, err := os.ReadFile(rssFile)
		if err != nil {
			return procResult{}, err
		}
		kb, err := strconv.ParseInt(string(lastLine(b)), 10, 64)
		if err != nil {
			return procResult{}, fmt.Errorf("%s: peak RSS from GNU time: %q", strings.Join(p.args, " "), b)
		}
		rss = kb * 1024
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return procResult{wall: wall, maxRSS: rss, stdout: out.Bytes()}, nil
}

// limited keeps the first n bytes written to it and drops the rest.
type limited struct {
	b *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

var _ io.Writer = (*limited)(nil)

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// stats of a list of samples.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

const mib = 1 << 20
