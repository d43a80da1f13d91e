package child

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sh(script string) Spec {
	return Spec{Argv: []string{"sh", "-c", script}, Env: os.Environ(), Grace: 5 * time.Second}
}

func TestRun_ExitCodePassesThrough(t *testing.T) {
	for _, code := range []int{0, 1, 3, 75, 255} {
		res, err := Run(context.Background(), sh("exit "+strconv.Itoa(code)), nil, quiet())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res.Status, code; got != want {
			t.Errorf("exit %d: Status = %d, want %d", code, got, want)
		}
		if res.Signal != nil {
			t.Errorf("exit %d: Signal = %v, want none", code, res.Signal)
		}
	}
}

func TestRun_KilledBySignalIs128PlusN(t *testing.T) {
	res, err := Run(context.Background(), sh("kill -KILL $$"), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Status, 128+9; got != want {
		t.Errorf("Status = %d, want %d", got, want)
	}
}

func TestRun_OutputAndEnvironment(t *testing.T) {
	var out, errOut bytes.Buffer
	spec := sh(`echo "out $X"; echo "err $X" >&2; read line; echo "in $line"`)
	spec.Env = []string{"X=42", "PATH=" + os.Getenv("PATH")}
	spec.Stdout, spec.Stderr, spec.Stdin = &out, &errOut, strings.NewReader("hello\n")
	if _, err := Run(context.Background(), spec, nil, quiet()); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "out 42\nin hello\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := errOut.String(), "err 42\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

// ready waits until the command has written path (so its traps are set).
func ready(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRun_ForwardsSignalToGroup(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ready")
	mark2 := filepath.Join(dir, "ready2")
	got := filepath.Join(dir, "got")
	// The command and a grandchild both trap TERM: both must receive it.
	spec := sh(`trap 'echo child >> ` + got + `; wait $gc; exit 0' TERM
sh -c 'trap "echo grandchild >> ` + got + `; exit 0" TERM; echo ok > ` + mark2 + `; while :; do sleep 0.05; done' &
gc=$!
echo ok > ` + mark + `
while :; do sleep 0.05; done`)
	sigs := make(chan os.Signal, 1)
	go func() {
		ready(t, mark)
		ready(t, mark2)
		sigs <- syscall.SIGTERM
	}()
	res, err := Run(context.Background(), spec, sigs, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if res.Signal != syscall.SIGTERM {
		t.Errorf("Signal = %v, want SIGTERM", res.Signal)
	}
	if res.Status != 0 {
		t.Errorf("Status = %d, want 0 (the command exited 0 after the signal)", res.Status)
	}
	b, _ := os.ReadFile(got)
	if !strings.Contains(string(b), "child") || !strings.Contains(string(b), "grandchild") {
		t.Errorf("received TERM: %q, want both child and grandchild", b)
	}
}

func TestRun_GraceThenKill(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ready")
	spec := sh(`trap '' TERM; echo ok > ` + mark + `; while :; do sleep 0.05; done`)
	spec.Grace = 300 * time.Millisecond
	sigs := make(chan os.Signal, 1)
	go func() {
		ready(t, mark)
		sigs <- syscall.SIGTERM
	}()
	res, err := Run(context.Background(), spec, sigs, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Status, 128+int(syscall.SIGKILL); got != want {
		t.Errorf("Status = %d, want %d (SIGKILL after the grace period)", got, want)
	}
	if res.Signal != syscall.SIGTERM {
		t.Errorf("Signal = %v, want SIGTERM (the first one forwarded)", res.Signal)
	}
}

// alive reports whether pid still runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestRun_NoGrandchildLeftAfterSignal(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The grandchild ignores TERM and outlives the command, which exits
	// at once on TERM.
	spec := sh(`sh -c 'trap "" TERM; echo $$ > ` + pidFile + `; while :; do sleep 0.05; done' &
trap 'exit 0' TERM
while :; do sleep 0.05; done`)
	sigs := make(chan os.Signal, 1)
	go func() {
		ready(t, pidFile)
		sigs <- syscall.SIGTERM
	}()
	if _, err := Run(context.Background(), spec, sigs, quiet()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", b, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still runs after the command was signalled", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRun_ContextEndIsSIGTERM(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		ready(t, mark)
		cancel()
	}()
	res, err := Run(ctx, sh(`trap 'exit 7' TERM; echo ok > `+mark+`; while :; do sleep 0.05; done`), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if res.Signal != syscall.SIGTERM || res.Status != 7 {
		t.Errorf("Signal, Status = %v, %d; want SIGTERM, 7", res.Signal, res.Status)
	}
}

func TestRun_StartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv     string
		notFound bool
	}{
		{"no-such-command-wp-test", true},
		{filepath.Join(dir, "missing"), true},
		{notExec, false},
	} {
		_, err := Run(context.Background(), Spec{Argv: []string{tc.argv}}, nil, quiet())
		var se *StartError
		if !errors.As(err, &se) {
			t.Fatalf("%s: err = %v, want a *StartError", tc.argv, err)
		}
		if se.NotFound != tc.notFound {
			t.Errorf("%s: NotFound = %v, want %v (%v)", tc.argv, se.NotFound, tc.notFound, err)
		}
	}
}
