package worker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// TestLog_RetryWording: the caller words what becomes of a delivery that
// recorded nothing (wp local has no message to retry).
func TestLog_RetryWording(t *testing.T) {
	var buf bytes.Buffer
	f := newFixture(t, 2, Options{Log: slog.New(slog.NewTextHandler(&buf, nil)), Retry: "wp local runs it again"})
	check(t, f.r.Handle(context.Background(), mapMsg(0), f.cmd("exit 9"), nil), CommandFailed)
	if got := buf.String(); !strings.Contains(got, "nothing recorded; wp local runs it again") || strings.Contains(got, "message") {
		t.Errorf("log = %q, want the caller's wording and no message", got)
	}

	buf.Reset()
	f = newFixture(t, 2, Options{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	check(t, f.r.Handle(context.Background(), mapMsg(0), f.cmd("exit 9"), nil), CommandFailed)
	if got, want := buf.String(), "nothing recorded; the message will be retried"; !strings.Contains(got, want) {
		t.Errorf("log = %q, want %q (wp run's default)", got, want)
	}
}

// TestEnsureReduce_ClaimHeldLog: a worker waiting on another worker's claim
// does not log its own lease as if it were the holder's.
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
}
