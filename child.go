package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// childSpec is one run of the worker command.
type childSpec struct {
	argv   []string
	env    []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// grace is how long a child has to exit after a forwarded signal
	// before its process group is sent SIGKILL.
	grace time.Duration
}

// childResult is how the child ended.
type childResult struct {
	code int // exit code; 128+N when killed by signal N
	// signal is the first signal forwarded to the child (nil if none):
	// the child was interrupted and its work must not be recorded.
	signal os.Signal
	took   time.Duration
}

// runChild starts the child in its own process group, forwards every signal
// received on sigs to the whole group, escalates to SIGKILL after the grace
// period, and waits. It returns an error only when the child could not be
// started; the code is then 127 (not found) or 126 (not executable), as a
// shell would report.
func runChild(ctx context.Context, spec childSpec, sigs <-chan os.Signal, lg *slog.Logger) (childResult, error) {
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Env = spec.env
	cmd.Stdin = spec.stdin
	cmd.Stdout = spec.stdout
	cmd.Stderr = spec.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// If a grandchild keeps our output pipes open after the child exits,
	// stop waiting for it.
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return childResult{code: code}, fmt.Errorf("start %s: %w", spec.argv[0], err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var res childResult
	var kill <-chan time.Time
	var waitErr error
	ctxDone := ctx.Done()
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case sig := <-sigs:
			if res.signal == nil {
				res.signal = sig
				lg.Info("forwarding signal to the command's process group", "signal", sig.String(), "grace", spec.grace.String())
				t := time.NewTimer(spec.grace)
				defer t.Stop()
				kill = t.C
			}
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(-pgid, s)
			}
		case <-kill:
			lg.Warn("command did not exit within the grace period: sending SIGKILL to its process group", "grace", spec.grace.String())
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			kill = nil
		case <-ctxDone:
			ctxDone = nil
			if res.signal == nil {
				res.signal = syscall.SIGTERM
				_ = syscall.Kill(-pgid, syscall.SIGTERM)
				t := time.NewTimer(spec.grace)
				defer t.Stop()
				kill = t.C
			}
		}
	}
	res.took = time.Since(start)
	if res.signal != nil {
		// Leave nothing behind: grandchildren that outlived the child.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	res.code = exitStatus(cmd.ProcessState, waitErr)
	return res, nil
}

// exitStatus turns a finished process into a shell-style exit code: the
// code it exited with, or 128+N when signal N killed it (Go's ExitCode()
// returns -1 there).
func exitStatus(ps *os.ProcessState, waitErr error) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return 1
}
