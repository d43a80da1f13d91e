package worker

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
)

// callerWords are what only a caller may say: what becomes of a message or
// a part next, and the names of its flags.
var callerWords = regexp.MustCompile(`will be retried|retries|runs it again|--[a-z]|resume|dead-letter|queue|watchbot`)

// TestLog_FactsOnly: the engine's lines say what it did, never what the
// caller does next, whatever the outcome.
func TestLog_FactsOnly(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, nil))

	f := newToleratingFixture(t, 3, "1", false, Options{Log: lg})
	check(t, f.r.Handle(ctx, receive(0, 1), f.cmd("exit 9"), nil), CommandFailed)
	if got, want := buf.String(), "command failed: nothing recorded"; !strings.Contains(got, want) {
		t.Errorf("log = %q, want %q", got, want)
	}
	check(t, f.r.Handle(ctx, lastReceive(1, 3), f.cmd("exit 9"), nil), GaveUp)
	if got, want := buf.String(), "part given up: its command failed on its last delivery"; !strings.Contains(got, want) {
		t.Errorf("log = %q, want %q", got, want)
	}
	check(t, f.r.Handle(ctx, mapMsg(0), child.Spec{Argv: []string{"no-such-command-wp-test"}}, nil), CannotStart)

	mark, sigs := signalWhenUp(t, syscall.SIGINT)
	check(t, f.r.Handle(ctx, mapMsg(2), f.cmd("touch "+mark+"; sleep 5"), sigs), Interrupted)
	if got, want := buf.String(), "part 2 interrupted by SIGINT: nothing recorded"; !strings.Contains(got, want) {
		t.Errorf("log = %q, want %q", got, want)
	}
	f.mem.FailOn("Complete", context.DeadlineExceeded)
	check(t, f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil), Unavailable)

	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if m := callerWords.FindString(line); m != "" {
			t.Errorf("engine line %q says %q: that is for the caller to say", line, m)
		}
	}
}

// TestEnsureReduce_ClaimHeldLog: a worker waiting on another worker's claim
// does not log its own lease as if it were the holder's, nor a flag.
func TestEnsureReduce_ClaimHeldLog(t *testing.T) {
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, nil))
	f := newFixture(t, 1, Options{ClaimWait: 50 * time.Millisecond, ReduceLease: 7 * time.Minute, Log: lg})
	f.complete(0)
	if _, ok, err := f.store.ClaimReduce(context.Background(), "j", time.Hour); !ok || err != nil {
		t.Fatalf("ClaimReduce: %v, %v", ok, err)
	}
	check(t, f.r.EnsureReduce(context.Background(), lg, backends.Status{ID: "j"}), ClaimHeld)
	got := buf.String()
	if strings.Contains(got, "7m") || !strings.Contains(got, "the holder's lease") {
		t.Errorf("log = %q: want the holder's lease named, not this worker's 7m", got)
	}
	if m := callerWords.FindString(got); m != "" {
		t.Errorf("log = %q says %q: that is for the caller to say", got, m)
	}
}
