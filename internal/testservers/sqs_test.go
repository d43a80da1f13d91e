package testservers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests prove the harness with the real watcher and plain shell
// commands. They run in parallel (each with its own emulator) so the
// slowest, the dead-letter one (watchbot's 2 s and 4 s backoffs), sets the
// package's time.

var (
	sharedSQSOnce sync.Once
	sharedSQS     *SQS
	sharedSQSErr  error
)

// testSQS is one emulator for the package's tests; each test makes its own
// stack (topic and queues), so they do not see each other's messages.
func testSQS(t *testing.T) *SQS {
	t.Helper()
	sharedSQSOnce.Do(func() { sharedSQS, sharedSQSErr = StartSQS() })
	if sharedSQSErr != nil {
		t.Fatal(sharedSQSErr)
	}
	if d := sharedSQS.Died(); d != "" {
		t.Fatal(d)
	}
	return sharedSQS
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedSQS != nil {
		sharedSQS.Stop()
	}
	os.Exit(code)
}

// eventually polls cond every 20 ms until it returns "" or the deadline
// passes, then fails the test with cond's last word.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func counts(t *testing.T, s *SQS, url string) QueueCounts {
	t.Helper()
	c, err := s.Counts(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readEnv reads the NUL-separated `env -0` dump a command wrote.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// (a) A message published with a subject reaches the command with the
// environment watchbot documents, and exit 0 deletes it.
func TestWatcherRunsCommandAndDeletesOnExit0(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 3})
	dir := t.TempDir()
	// Written to a temporary name and renamed, so the test never reads half
	// a file. A file in $Volumes must be gone after the message. The
	// command's stdin is the watcher's, which must be at end of file (as
	// in a container), or cat would hang.
	w := s.StartWatcherT(t, WatcherOptions{
		QueueURL: st.QueueURL,
		Command: []string{
			`cat >/dev/null &&`,
			`touch "$Volumes/leftover" &&`,
			`env -0 > ` + dir + `/env.tmp &&`,
			`mv ` + dir + `/env.tmp ` + dir + `/env.$ApproximateReceiveCount`,
		},
		Env: []string{"WorkTopic=" + st.TopicArn, "WP_TEST_EXTRA=extra value"},
	})
	body := "{\"part\": 1, \"text\": \"two words\\nand a 'quote'\"}\nsecond line"
	before := time.Now().Add(-time.Second) // SentTimestamp has millisecond precision
	st.PublishT(t, "map", body)

	envFile := filepath.Join(dir, "env.1")
	eventually(t, 10*time.Second, func() string {
		if exists(envFile) {
			return ""
		}
		return "the command did not run; watcher output:\n" + w.Output()
	})
	env := readEnv(t, envFile)
	if env["Message"] != body {
		t.Errorf("Message = %q, want %q", env["Message"], body)
	}
	if env["Subject"] != "map" {
		t.Errorf("Subject = %q, want map", env["Subject"])
	}
	if env["ApproximateReceiveCount"] != "1" {
		t.Errorf("ApproximateReceiveCount = %q, want 1", env["ApproximateReceiveCount"])
	}
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(env["MessageId"]) {
		t.Errorf("MessageId = %q, want a UUID", env["MessageId"])
	}
	for _, k := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
		ts, err := time.Parse(time.RFC3339Nano, env[k])
		if err != nil {
			t.Errorf("%s = %q: %v", k, env[k], err)
		} else if ts.Before(before) || ts.After(time.Now()) {
			t.Errorf("%s = %v, not between the publish (%v) and now", k, ts, before)
		}
	}
	for k, want := range map[string]string{
		"QueueUrl":             st.QueueURL,
		"Volumes":              w.Volume,
		"maxJobDuration":       "0",
		"writableFilesystem":   "false",
		"WorkTopic":            st.TopicArn,
		"WP_TEST_EXTRA":        "extra value",
		"AWS_ENDPOINT_URL_SNS": s.URL,
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["WP_TESTSERVERS_LIFELINE_FD"]; ok {
		t.Error("the command inherited the watcher's lifeline variable")
	}

	eventually(t, 10*time.Second, func() string {
		if c := counts(t, s, st.QueueURL); c.Total() != 0 {
			return "the work queue still has " + c.String()
		}
		return ""
	})
	if c := counts(t, s, st.DeadLetterURL); c.Total() != 0 {
		t.Errorf("the dead-letter queue has %s", c)
	}
	if err := w.WaitOutput(`{"code":0,"signal":null`, 5*time.Second); err != nil {
		t.Error(err)
	}
	if !strings.Contains(w.Output(), "["+env["MessageId"]+"]") {
		t.Errorf("the watcher's log does not name MessageId %s:\n%s", env["MessageId"], w.Output())
	}
	if left, _ := os.ReadDir(w.Volume); len(left) != 0 {
		t.Errorf("the volume was not emptied: %v", left)
	}
	if exists(filepath.Join(dir, "env.2")) {
		t.Error("the message was received a second time")
	}
}

// (b) A command that always fails is given the message maxReceiveCount
// times (watchbot backs off 2^receives seconds after each), then SQS moves
// it to the dead-letter queue.
func TestWatcherFailureReachesDeadLetterQueue(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 2})
	dir := t.TempDir()
	receives := filepath.Join(dir, "receives")
	w := s.StartWatcherT(t, WatcherOptions{
		QueueURL: st.QueueURL,
		Command:  []string{`echo "$ApproximateReceiveCount" >> ` + receives + `; exit 1`},
	})
	start := time.Now()
	st.PublishT(t, "map", "always fails")
	var firstRun, secondRun time.Duration
	eventually(t, 20*time.Second, func() string {
		b, _ := os.ReadFile(receives)
		switch got := string(b); {
		case got == "1\n" && firstRun == 0:
			firstRun = time.Since(start)
		case got == "1\n2\n" && secondRun == 0:
			secondRun = time.Since(start)
		}
		if c := counts(t, s, st.DeadLetterURL); c.Visible == 1 {
			return ""
		}
		return fmt.Sprintf("not in the dead-letter queue; receives %q; watcher output:\n%s", b, w.Output())
	})
	inDLQ := time.Since(start)
	t.Logf("receive 1 after %v, receive 2 after %v, in the dead-letter queue after %v",
		firstRun.Round(time.Millisecond), secondRun.Round(time.Millisecond), inDLQ.Round(time.Millisecond))
	if b, _ := os.ReadFile(receives); string(b) != "1\n2\n" {
		t.Errorf("the command saw receive counts %q, want 1 and 2", b)
	}
	if c := counts(t, s, st.QueueURL); c.Total() != 0 {
		t.Errorf("the work queue still has %s", c)
	}
	if got := len(w.Lines("[failure]")); got != 2 {
		t.Errorf("the watcher logged %d failures, want 2:\n%s", got, w.Output())
	}
	dead, err := st.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Message != "always fails" || dead[0].Subject != "map" {
		t.Fatalf("dead letters = %+v, want the one message", dead)
	}
	// fauxqs counts the receive that moved it (3) and the peek (4).
	t.Logf("the dead letter's ApproximateReceiveCount when peeked: %d", dead[0].ReceiveCount)
}

// (c) Exit 3 deletes the message as exit 0 does (watchbot's "ignore").
func TestWatcherExit3Deletes(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 2})
	dir := t.TempDir()
	receives := filepath.Join(dir, "receives")
	w := s.StartWatcherT(t, WatcherOptions{
		QueueURL: st.QueueURL,
		Command:  []string{`echo "$ApproximateReceiveCount" >> ` + receives + `; exit 3`},
	})
	st.PublishT(t, "", "ignore me")
	if err := w.WaitOutput(`{"code":3,"signal":null`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() string {
		if c := counts(t, s, st.QueueURL); c.Total() != 0 {
			return "the work queue still has " + c.String()
		}
		return ""
	})
	if c := counts(t, s, st.DeadLetterURL); c.Total() != 0 {
		t.Errorf("the dead-letter queue has %s", c)
	}
	if b, _ := os.ReadFile(receives); string(b) != "1\n" {
		t.Errorf("receives %q, want one", b)
	}
}

// Exit 4 ("noop") and a command killed past maxJobDuration are both
// retried: with maxReceiveCount 1 the next receive dead-letters them.
func TestWatcherExit4AndMaxJobDurationRetry(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	for _, tc := range []struct {
		name    string
		command string
		maxJob  time.Duration
		logged  string
	}{
		{"exit4", `exit 4`, 0, `{"code":4,"signal":null`},
		// tree-kill sends SIGTERM to the shell and its children; the
		// shell's exit status then depends on which died first.
		{"maxJobDuration", `sleep 30`, time.Second, `running killAll. duration has exceeded maxJobDuration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 1})
			w := s.StartWatcherT(t, WatcherOptions{
				QueueURL:       st.QueueURL,
				Command:        []string{tc.command},
				MaxJobDuration: tc.maxJob,
			})
			st.PublishT(t, "", tc.name)
			if err := w.WaitOutput(tc.logged, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, func() string {
				if c := counts(t, s, st.DeadLetterURL); c.Visible != 1 {
					return "not in the dead-letter queue: " + c.String()
				}
				return ""
			})
		})
	}
}

// Two watchers on one queue each hold a message at once: a fleet.
func TestWatcherFleet(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 2})
	dir := t.TempDir()
	gate := filepath.Join(dir, "go")
	// Each command waits for the gate: both messages can be started only
	// if two watchers hold one each.
	fleet := s.StartFleetT(t, 2, WatcherOptions{
		QueueURL: st.QueueURL,
		Command: []string{
			`touch ` + dir + `/started.$MessageId;`,
			`while [ ! -e ` + gate + ` ]; do sleep 0.05; done`,
		},
	})
	st.PublishT(t, "", "one")
	st.PublishT(t, "", "two")
	eventually(t, 10*time.Second, func() string {
		m, _ := filepath.Glob(filepath.Join(dir, "started.*"))
		if len(m) == 2 {
			return ""
		}
		return fmt.Sprintf("%d messages started, want 2 at once", len(m))
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		if c := counts(t, s, st.QueueURL); c.Total() != 0 {
			return "the work queue still has " + c.String()
		}
		return ""
	})
	for i, w := range fleet {
		if n := len(w.Lines(`{"code":0,`)); n != 1 {
			t.Errorf("watcher %d finished %d messages, want 1:\n%s", i, n, w.Output())
		}
	}
}

// A one-message watcher (writableFilesystem true) exits after its message.
func TestWatcherWritableFilesystemExits(t *testing.T) {
	t.Parallel()
	s := testSQS(t)
	st := s.NewStackT(t, StackOptions{VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 2})
	w := s.StartWatcherT(t, WatcherOptions{
		QueueURL:           st.QueueURL,
		Command:            []string{`true`},
		WritableFilesystem: true,
	})
	st.PublishT(t, "", "once")
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the watcher did not exit after its message:\n%s", w.Output())
	}
	if err := w.Err(); err != nil {
		t.Fatalf("the watcher exited with %v:\n%s", err, w.Output())
	}
	if c := counts(t, s, st.QueueURL); c.Total() != 0 {
		t.Errorf("the work queue still has %s", c)
	}
}
