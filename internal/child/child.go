// Package child runs a worker command as a child process the way a
// supervisor should: in its own process group, with every signal wp receives
// forwarded to the whole group, SIGKILL to the group when the command has not
// exited within a grace period after the first signal, nothing of the group
// left running once the command was signalled, and its status kept exactly:
// the code it exited with, or 128+N when signal N killed it (as a shell
// reports it; Go's ExitCode() says -1 there). consul-template's child package
// is the model.
package child

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

	"golang.org/x/sys/unix"
)

// Spec is one run of the command.
type Spec struct {
	Argv   []string
	Env    []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Grace is how long the command has to exit after a forwarded signal
	// before its process group is sent SIGKILL.
	Grace time.Duration
}

// Result is how the command ended.
type Result struct {
	// Status is the exit code, or 128+N when signal N killed the command.
	Status int
	// Signal is the first signal forwarded to the command (nil if none):
	// it was interrupted, and its work must not be taken as done even if
	// it exited 0.
	Signal os.Signal
	// Took is how long it ran.
	Took time.Duration
}

// StartError is a command that could not be started.
type StartError struct {
	Argv0 string
	// NotFound: no such file (a shell says 127); otherwise it could not
	// be executed (a shell says 126).
	NotFound bool
	Err      error
}

func (e *StartError) Error() string { return fmt.Sprintf("start %s: %v", e.Argv0, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// The statuses a shell reports for a command it could not start.
const (
	StatusCannotExec = 126 // found but not executable
	StatusNotFound   = 127 // no such command
)

// SignalName is "SIGINT" for syscall.SIGINT (and a signal's own String for
// one without a name).
func SignalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if n := unix.SignalName(sig); n != "" {
			return n
		}
	}
	return s.String()
}

// waitDelay is how long Run waits for the command's output pipes to close
// after it exited: a grandchild that keeps them open is not waited for.
const waitDelay = 2 * time.Second

// Run starts the command in its own process group, forwards every signal
// received on sigs to the whole group (escalating to SIGKILL after
// spec.Grace), treats the end of ctx as a SIGTERM, and waits. When the
// command was signalled, whatever is left of its group is killed once it
// has exited. The error is a *StartError, only when the command could not
// be started.
func Run(ctx context.Context, spec Spec, sigs <-chan os.Signal, lg *slog.Logger) (Result, error) {
	if len(spec.Argv) == 0 {
		return Result{}, &StartError{Err: errors.New("no command")}
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	cmd.Stdin = spec.Stdin
	cmd.Stdout = spec.Stdout
	cmd.Stderr = spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, &StartError{
			Argv0:    spec.Argv[0],
			NotFound: errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist),
			Err:      err,
		}
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var res Result
	var kill <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	startGrace := func() {
		timer = time.NewTimer(spec.Grace)
		kill = timer.C
	}
	ctxDone := ctx.Done()
loop:
	for {
		select {
		case <-done:
			break loop
		case sig := <-sigs:
			if res.Signal == nil {
				res.Signal = sig
				lg.Info("forwarding signal to the command's process group", "signal", sig.String(), "grace", spec.Grace.String())
				startGrace()
			}
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(-pgid, s)
			}
		case <-kill:
			lg.Warn("command did not exit within the grace period: sending SIGKILL to its process group", "grace", spec.Grace.String())
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			kill = nil
		case <-ctxDone:
			ctxDone = nil
			if res.Signal == nil {
				res.Signal = syscall.SIGTERM
				_ = syscall.Kill(-pgid, syscall.SIGTERM)
				startGrace()
			}
		}
	}
	res.Took = time.Since(start)
	if res.Signal != nil {
		// Leave nothing behind: grandchildren that outlived the child.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	res.Status = ShellStatus(cmd.ProcessState)
	return res, nil
}

// ShellStatus is a finished process's status as a shell reports it: the
// code it exited with, or 128+N when signal N killed it.
func ShellStatus(ps *os.ProcessState) int {
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
