package snsfake

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"
)

const topic = "arn:aws:sns:us-east-1:123456789012:wp-test"

func start(t *testing.T) (*Server, *sns.Client) {
	t.Helper()
	s := New()
	url, err := s.Start()
	if err != nil {
		t.Fatalf("start snsfake: %v", err)
	}
	t.Cleanup(s.Close)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url = %q, want http://127.0.0.1:PORT (loopback only)", url)
	}
	return s, newClient(url)
}

// newClient is the real SDK client with one attempt per call, so injected
// failures reach the test at once.
func newClient(url string) *sns.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	}
	return sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(url) })
}

var tricky = []string{
	"plain",
	"unicode: héllo wörld ✓ 日本語 🚀",
	"new\nlines\r\nand\ttabs\n",
	`quotes "double" 'single' <xml> & ampersand ]]> %20 + = ?`,
	`{"json":"body","n":[1,2,3]}`,
	"  leading and trailing spaces  ",
}

func TestPublish_RoundTrip(t *testing.T) {
	s, c := start(t)
	ctx := context.Background()
	for i, body := range tricky {
		subject := fmt.Sprintf(`reduce "%d" <&>!`, i)
		out, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String(subject), Message: aws.String(body)})
		if err != nil {
			t.Fatalf("publish %q: %v", body, err)
		}
		msgs := s.Messages()
		if got, want := len(msgs), i+1; got != want {
			t.Fatalf("len(Messages()) = %d, want %d", got, want)
		}
		got := msgs[i]
		want := Message{TopicArn: topic, Subject: subject, Body: body, MessageId: aws.ToString(out.MessageId)}
		if got != want {
			t.Errorf("message %d = %+v, want %+v", i, got, want)
		}
		if got.MessageId == "" {
			t.Errorf("empty MessageId")
		}
	}
	// Subject is optional.
	if _, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("no subject")}); err != nil {
		t.Fatalf("publish without subject: %v", err)
	}
	if got, want := s.Count(""), 1; got != want {
		t.Errorf("Count(\"\") = %d, want %d", got, want)
	}
}

func TestPublishBatch_RoundTrip(t *testing.T) {
	s, c := start(t)
	var entries []types.PublishBatchRequestEntry
	want := map[string]string{} // id -> body
	for i, body := range tricky {
		id := fmt.Sprintf("e-%d_x", i)
		entries = append(entries, types.PublishBatchRequestEntry{Id: aws.String(id), Message: aws.String(body), Subject: aws.String("map")})
		want[id] = body
	}
	out, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: entries})
	if err != nil {
		t.Fatalf("publish batch: %v", err)
	}
	if got, want := len(out.Successful), len(tricky); got != want {
		t.Fatalf("len(Successful) = %d, want %d (failed: %+v)", got, want, out.Failed)
	}
	if len(out.Failed) != 0 {
		t.Fatalf("Failed = %+v, want none", out.Failed)
	}
	byMessageID := map[string]Message{}
	for _, m := range s.Messages() {
		byMessageID[m.MessageId] = m
	}
	for _, ok := range out.Successful {
		m, found := byMessageID[aws.ToString(ok.MessageId)]
		if !found {
			t.Fatalf("entry %s: MessageId %s not among received messages", aws.ToString(ok.Id), aws.ToString(ok.MessageId))
		}
		if got, want := m.Body, want[aws.ToString(ok.Id)]; got != want {
			t.Errorf("entry %s: body = %q, want %q", aws.ToString(ok.Id), got, want)
		}
		if !m.Batch || m.Subject != "map" || m.TopicArn != topic {
			t.Errorf("entry %s: got %+v, want Batch, subject map, topic %s", aws.ToString(ok.Id), m, topic)
		}
	}
	if got, want := s.Count("map"), len(tricky); got != want {
		t.Errorf("Count(map) = %d, want %d", got, want)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func batch(n int, size int) []types.PublishBatchRequestEntry {
	var es []types.PublishBatchRequestEntry
	for i := range n {
		es = append(es, types.PublishBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), Message: aws.String(strings.Repeat("x", size))})
	}
	return es
}

func TestPublishBatch_Rejected(t *testing.T) {
	s, c := start(t)
	dup := batch(2, 1)
	dup[1].Id = dup[0].Id
	badID := batch(1, 1)
	badID[0].Id = aws.String("has space")
	for _, tc := range []struct {
		name     string
		entries  []types.PublishBatchRequestEntry
		wantCode string
	}{
		{"eleven entries", batch(11, 1), "TooManyEntriesInBatchRequest"},
		{"total over 256 KiB", batch(2, MaxMessageBytes/2+1), "BatchRequestTooLong"},
		{"duplicate ids", dup, "BatchEntryIdsNotDistinct"},
		{"invalid id", badID, "InvalidBatchEntryId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: tc.entries})
			if err == nil {
				t.Fatalf("PublishBatch succeeded, want %s", tc.wantCode)
			}
			if got := apiCode(err); got != tc.wantCode {
				t.Errorf("error code = %q, want %q (err: %v)", got, tc.wantCode, err)
			}
		})
	}
	if got := len(s.Messages()); got != 0 {
		t.Errorf("%d messages accepted from rejected batches, want 0", got)
	}
	// Ten entries totalling exactly the limit pass.
	es := batch(10, MaxMessageBytes/10)
	es[0].Message = aws.String(strings.Repeat("y", MaxMessageBytes-9*(MaxMessageBytes/10)))
	out, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: es})
	if err != nil {
		t.Fatalf("batch of 10 totalling %d bytes: %v", MaxMessageBytes, err)
	}
	if got, want := len(out.Successful), 10; got != want {
		t.Errorf("len(Successful) = %d, want %d", got, want)
	}
}

func TestPublishBatch_BadEntryFailsAlone(t *testing.T) {
	s, c := start(t)
	es := batch(3, 5)
	es[1].Subject = aws.String("line\nbreak")
	out, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: es})
	if err != nil {
		t.Fatalf("publish batch: %v", err)
	}
	if len(out.Failed) != 1 || aws.ToString(out.Failed[0].Id) != "1" || !out.Failed[0].SenderFault || aws.ToString(out.Failed[0].Code) != "InvalidParameter" {
		t.Fatalf("Failed = %+v, want entry 1 InvalidParameter with SenderFault", out.Failed)
	}
	if got, want := len(s.Messages()), 2; got != want {
		t.Errorf("accepted %d, want %d", got, want)
	}
}

func TestPublish_Rejected(t *testing.T) {
	s, c := start(t)
	for _, tc := range []struct {
		name string
		in   sns.PublishInput
	}{
		{"message over 256 KiB", sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(strings.Repeat("x", MaxMessageBytes+1))}},
		{"no topic", sns.PublishInput{Message: aws.String("x")}},
		{"empty message", sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("")}},
		{"subject with newline", sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("x"), Subject: aws.String("a\nb")}},
		{"non-ascii subject", sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("x"), Subject: aws.String("héllo")}},
		{"subject of 100 chars", sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("x"), Subject: aws.String(strings.Repeat("s", 100))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Publish(context.Background(), &tc.in)
			if err == nil {
				t.Fatal("Publish succeeded, want InvalidParameter")
			}
			var ip *types.InvalidParameterException
			if !errors.As(err, &ip) {
				t.Errorf("error = %v (%T), want *types.InvalidParameterException", err, err)
			}
		})
	}
	if got := len(s.Messages()); got != 0 {
		t.Errorf("%d messages accepted, want 0", got)
	}
	// Exactly at the limit is fine.
	if _, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(strings.Repeat("x", MaxMessageBytes))}); err != nil {
		t.Fatalf("message of exactly %d bytes: %v", MaxMessageBytes, err)
	}
}

func TestFailNext(t *testing.T) {
	s, c := start(t)
	s.FailNext(2, 500)
	in := &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("m")}
	for i := range 2 {
		_, err := c.Publish(context.Background(), in)
		var ie *types.InternalErrorException
		if !errors.As(err, &ie) {
			t.Fatalf("call %d: err = %v, want *types.InternalErrorException", i, err)
		}
		var re interface{ HTTPStatusCode() int }
		if !errors.As(err, &re) || re.HTTPStatusCode() != 500 {
			t.Errorf("call %d: want HTTP status 500 in %v", i, err)
		}
	}
	if _, err := c.Publish(context.Background(), in); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if got, want := len(s.Messages()), 1; got != want {
		t.Errorf("accepted %d, want %d", got, want)
	}
	s.FailNext(1, 429)
	_, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: batch(2, 1)})
	var te *types.ThrottledException
	if !errors.As(err, &te) {
		t.Errorf("err = %v, want *types.ThrottledException", err)
	}
}

func TestFailEntries(t *testing.T) {
	s, c := start(t)
	s.FailEntries(func(subject, body string) bool { return strings.HasPrefix(body, "bad") })
	es := []types.PublishBatchRequestEntry{
		{Id: aws.String("a"), Message: aws.String("good 1")},
		{Id: aws.String("b"), Message: aws.String("bad 1")},
		{Id: aws.String("c"), Message: aws.String("good 2")},
		{Id: aws.String("d"), Message: aws.String("bad 2")},
	}
	out, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: es})
	if err != nil {
		t.Fatalf("publish batch: %v", err)
	}
	var failed []string
	for _, f := range out.Failed {
		failed = append(failed, aws.ToString(f.Id))
		if aws.ToString(f.Code) != "InternalError" || f.SenderFault {
			t.Errorf("failure %+v: want Code InternalError, SenderFault false", f)
		}
	}
	if got, want := strings.Join(failed, ","), "b,d"; got != want {
		t.Errorf("failed ids = %s, want %s", got, want)
	}
	if got, want := len(out.Successful), 2; got != want {
		t.Errorf("len(Successful) = %d, want %d", got, want)
	}
	for _, m := range s.Messages() {
		if strings.HasPrefix(m.Body, "bad") {
			t.Errorf("failed entry %q was accepted", m.Body)
		}
	}
	s.Reset()
	if _, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: es}); err != nil {
		t.Fatal(err)
	}
	if got, want := len(s.Messages()), 4; got != want {
		t.Errorf("after Reset accepted %d, want %d", got, want)
	}
}

func TestHoldSubject(t *testing.T) {
	s, c := start(t)
	release := s.HoldSubject("reduce")
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("reduce"), Message: aws.String("r")})
		done <- err
	}()
	// Other subjects pass while reduce is held.
	if _, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("map"), Message: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("held publish returned before release: %v", err)
	default:
	}
	if got := s.Count("reduce"); got != 0 {
		t.Fatalf("Count(reduce) = %d before release, want 0", got)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("held publish after release: %v", err)
	}
	if got, want := s.Count("reduce"), 1; got != want {
		t.Errorf("Count(reduce) = %d, want %d", got, want)
	}
	release() // twice is fine
}

// waitFor polls cond; the test's own timeout bounds it.
func waitFor(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

func TestHoldSubject_ClientGoneDropsRequest(t *testing.T) {
	s, c := start(t)
	var heldMsgs []Message
	s.OnHold(func(m Message) { heldMsgs = append(heldMsgs, m) })
	release := s.HoldSubject("reduce")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("reduce"), Message: aws.String("r")})
		done <- err
	}()
	waitFor(func() bool { return s.Held() == 1 })
	cancel() // as a SIGKILLed client would
	if err := <-done; err == nil {
		t.Fatal("cancelled publish succeeded")
	}
	waitFor(func() bool { return s.Held() == 0 })
	release()
	if got := s.Count("reduce"); got != 0 {
		t.Errorf("Count(reduce) = %d after the client went away, want 0", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(heldMsgs) != 1 || heldMsgs[0].Body != "r" || heldMsgs[0].Subject != "reduce" {
		t.Errorf("OnHold saw %+v, want the reduce message once", heldMsgs)
	}
}

func TestFailSubject(t *testing.T) {
	s, c := start(t)
	s.FailSubject("reduce")
	_, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("reduce"), Message: aws.String("r")})
	if got, want := apiCode(err), "InternalError"; got != want {
		t.Fatalf("error code = %q (%v), want %q", got, err, want)
	}
	if _, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("map"), Message: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Count("reduce"), 0; got != want {
		t.Errorf("Count(reduce) = %d, want %d", got, want)
	}
}

func TestDelay(t *testing.T) {
	s, c := start(t)
	s.SetDelay(time.Millisecond)
	if _, err := c.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Messages()); got != 1 {
		t.Errorf("accepted %d, want 1", got)
	}
}

func TestNonPost(t *testing.T) {
	s := New()
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(url + "/?Action=Publish")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusMethodNotAllowed; got != want {
		t.Errorf("GET status = %d, want %d", got, want)
	}
}

func TestConcurrentPublish(t *testing.T) {
	s, c := start(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := c.PublishBatch(context.Background(), &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: []types.PublishBatchRequestEntry{
					{Id: aws.String("a"), Message: aws.String(fmt.Sprintf("%d-%d-a", g, i))},
					{Id: aws.String("b"), Message: aws.String(fmt.Sprintf("%d-%d-b", g, i))},
				}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, m := range s.Messages() {
		seen[m.Body]++
	}
	if got, want := len(seen), 8*20*2; got != want {
		t.Errorf("distinct bodies = %d, want %d", got, want)
	}
	for b, n := range seen {
		if n != 1 {
			t.Errorf("body %q arrived %d times", b, n)
		}
	}
}

// TestMain_Standalone runs the command as testscript would, in-process: it
// writes its URL, logs accepted messages, fails and holds subjects, and
// exits 0 on SIGTERM.
func TestMain_Standalone(t *testing.T) {
	dir := t.TempDir()
	addrFile, logFile := filepath.Join(dir, "addr"), filepath.Join(dir, "log")
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"serve", "-fail-subject", "boom", "-hold-subject", "wait", addrFile, logFile}, &stderr)
	}()
	var url string
	for url == "" {
		b, err := os.ReadFile(addrFile)
		if err == nil {
			url = strings.TrimSpace(string(b))
			break
		}
		select {
		case c := <-code:
			t.Fatalf("snsfake exited %d before writing its address: %s", c, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	c := newClient(url)
	ctx := context.Background()
	body := "line 1\nline \"2\" ✓"
	if _, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("reduce"), Message: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: []types.PublishBatchRequestEntry{
		{Id: aws.String("1"), Subject: aws.String("map"), Message: aws.String("m1")},
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("boom"), Message: aws.String("b")})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 500 {
		t.Errorf("publish with -fail-subject: err = %v, want HTTP 500", err)
	}
	before, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() {
		_, err := c.Publish(hctx, &sns.PublishInput{TopicArn: aws.String(topic), Subject: aws.String("wait"), Message: aws.String("w")})
		held <- err
	}()

	// Wait until the held message is logged.
	waitFor(func() bool {
		b, _ := os.ReadFile(logFile)
		return len(b) > len(before)
	})

	// run catches SIGTERM with signal.NotifyContext, so this stops only run.
	p, _ := os.FindProcess(os.Getpid())
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := <-code; got != 0 {
		t.Errorf("exit code = %d, want 0; stderr: %s", got, stderr.String())
	}
	cancel()
	if err := <-held; err == nil {
		t.Error("held publish succeeded, want it never answered")
	}

	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []LogLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	want := []LogLine{{"reduce", body, topic, false}, {"map", "m1", topic, false}, {"wait", "w", topic, true}}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("log = %+v, want %+v", lines, want)
	}
}

func TestMain_Usage(t *testing.T) {
	var stderr bytes.Buffer
	if got, want := run(nil, &stderr), 2; got != want {
		t.Errorf("exit code = %d, want %d", got, want)
	}
	if !strings.Contains(stderr.String(), "usage: snsfake serve") {
		t.Errorf("stderr = %q, want usage", stderr.String())
	}
	if got, want := run([]string{"serve", "onlyone"}, &stderr), 2; got != want {
		t.Errorf("exit code with one argument = %d, want %d", got, want)
	}
}
