package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/wp-tools/wp/internal/snsfake"
)

const topic = "arn:aws:sns:us-east-1:123456789012:wp-test"

// recorder is an http.RoundTripper that remembers, for every PublishBatch
// request, how many entries it carried and their total message bytes.
type recorder struct {
	mu      sync.Mutex
	batches [][2]int // {entries, bytes}
	next    http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(strings.NewReader(string(b)))
		form, err := url.ParseQuery(string(b))
		if err == nil && form.Get("Action") == "PublishBatch" {
			n, total := 0, 0
			for k, v := range form {
				if strings.HasSuffix(k, ".Message") {
					n++
					total += len(v[0])
				}
			}
			r.mu.Lock()
			r.batches = append(r.batches, [2]int{n, total})
			r.mu.Unlock()
		}
	}
	return r.next.RoundTrip(req)
}

func (r *recorder) calls() [][2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]int(nil), r.batches...)
}

type env struct {
	srv *snsfake.Server
	rec *recorder
	cli *sns.Client
}

// setup starts snsfake and returns a real SDK client (retries off, as
// NewFromEnv configures it) that goes through a recorder.
func setup(t testing.TB) *env {
	t.Helper()
	s := snsfake.New()
	u, err := s.Start()
	if err != nil {
		t.Fatalf("start snsfake: %v", err)
	}
	t.Cleanup(s.Close)
	// Pool connections the way NewFromEnv's client does.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	t.Cleanup(tr.CloseIdleConnections)
	rec := &recorder{next: tr}
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
		HTTPClient:  &http.Client{Transport: rec, Timeout: HTTPTimeout},
	}
	cli := sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(u) })
	return &env{srv: s, rec: rec, cli: cli}
}

// fast keeps retry waits short in tests.
var fast = WithBackoff(time.Millisecond, 5*time.Millisecond)

// source yields bodies one by one, as the caller's spool reader does.
func source(bodies []string) func() (string, bool, error) {
	i := 0
	return func() (string, bool, error) {
		if i == len(bodies) {
			return "", false, nil
		}
		i++
		return bodies[i-1], true, nil
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"jobid":"j","partid":%d}`, i)
	}
	return out
}

// arrivedOnce checks that the server accepted exactly want, each once, with
// the subject.
func arrivedOnce(t *testing.T, s *snsfake.Server, subject string, want []string) {
	t.Helper()
	got := map[string]int{}
	for _, m := range s.Messages() {
		if m.Subject != subject || m.TopicArn != topic || !m.Batch {
			t.Fatalf("unexpected message %+v", m)
		}
		got[m.Body]++
	}
	for _, b := range want {
		if got[b] != 1 {
			t.Fatalf("body %.60q arrived %d times, want 1", b, got[b])
		}
	}
	if g, w := len(s.Messages()), len(want); g != w {
		t.Fatalf("server accepted %d messages, want %d", g, w)
	}
}

func TestPublishAll_25In3Batches(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	bodies := numbered(25)
	bodies[3] = "unicode ✓ 日本語\nnew line \"quoted\" <tag> & more"
	var progress []int
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), func(n int) { progress = append(progress, n) })
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	if got, want := sent, 25; got != want {
		t.Errorf("sent = %d, want %d", got, want)
	}
	arrivedOnce(t, e.srv, "map", bodies)
	calls := e.rec.calls()
	if got, want := len(calls), 3; got != want {
		t.Fatalf("PublishBatch calls = %d, want %d (%v)", got, want, calls)
	}
	entries := 0
	for _, c := range calls {
		entries += c[0]
	}
	if entries != 25 {
		t.Errorf("entries over all calls = %d, want 25", entries)
	}
	if len(progress) != 3 || progress[len(progress)-1] != 25 {
		t.Errorf("progress calls = %v, want 3 ending at 25", progress)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i] < progress[i-1] {
			t.Errorf("progress decreased: %v", progress)
		}
	}
}

func TestPublishAll_TenThousandExactlyOnce(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	bodies := numbered(10000)
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	if sent != len(bodies) {
		t.Errorf("sent = %d, want %d", sent, len(bodies))
	}
	arrivedOnce(t, e.srv, "map", bodies)
	if got, want := len(e.rec.calls()), 1000; got != want {
		t.Errorf("PublishBatch calls = %d, want %d", got, want)
	}
}

func TestPublishAll_FailedEntriesRetried(t *testing.T) {
	e := setup(t)
	seen := map[string]bool{}
	failures := 0
	e.srv.FailEntries(func(subject, body string) bool {
		// Called with the server's lock held: no extra locking needed.
		if seen[body] {
			return false
		}
		seen[body] = true
		failures++
		return true // every entry fails its first attempt
	})
	p := New(e.cli, topic, fast)
	bodies := numbered(95)
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	if sent != len(bodies) {
		t.Errorf("sent = %d, want %d", sent, len(bodies))
	}
	arrivedOnce(t, e.srv, "map", bodies)
	if failures != len(bodies) {
		t.Errorf("injected %d failures, want %d (one per body)", failures, len(bodies))
	}
}

func TestPublishAll_WholeCallErrorsRetried(t *testing.T) {
	e := setup(t)
	e.srv.FailNext(4, 503)
	p := New(e.cli, topic, fast, WithConcurrency(2))
	bodies := numbered(40)
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	if sent != len(bodies) {
		t.Errorf("sent = %d, want %d", sent, len(bodies))
	}
	arrivedOnce(t, e.srv, "map", bodies)
	if got, want := len(e.rec.calls()), 4+4; got != want {
		t.Errorf("PublishBatch calls = %d, want %d (4 failed + 4 good)", got, want)
	}
}

func TestPublishAll_PermanentFailure(t *testing.T) {
	e := setup(t)
	e.srv.FailEntries(func(subject, body string) bool { return strings.Contains(body, `"partid":150}`) })
	p := New(e.cli, topic, fast, WithMaxAttempts(3), WithConcurrency(4))
	bodies := numbered(2000)
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err == nil {
		t.Fatal("PublishAll succeeded, want an error")
	}
	if sent >= len(bodies) {
		t.Errorf("sent = %d, want fewer than %d", sent, len(bodies))
	}
	for _, want := range []string{"message 151", "InternalError", "gave up after 3 attempts", fmt.Sprintf("%d confirmed", sent)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// In-flight calls finish before PublishAll returns, so the count is
	// exactly what the server accepted.
	if got := len(e.srv.Messages()); got != sent {
		t.Errorf("server accepted %d, sent reports %d", got, sent)
	}
}

func TestPublishAll_SenderFaultNotRetried(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast, WithConcurrency(1))
	// SNS rejects a subject with a line break, entry by entry.
	_, err := p.PublishAll(context.Background(), "bad\nsubject", source(numbered(3)), nil)
	if err == nil || !strings.Contains(err.Error(), "rejected by SNS") || !strings.Contains(err.Error(), "InvalidParameter") {
		t.Fatalf("err = %v, want rejected by SNS: InvalidParameter", err)
	}
	if got, want := len(e.rec.calls()), 1; got != want {
		t.Errorf("PublishBatch calls = %d, want %d (no retry of a sender fault)", got, want)
	}
}

func TestPublishAll_NearLimitSplit(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	var bodies []string
	for i, size := range []int{100000, 100000, 62144, 1, MaxMessageBytes, 87382, 87382, 87382, 87381, 131072, 131072, 5, 200000, 62145} {
		b := []byte(strings.Repeat("x", size))
		copy(b, fmt.Sprint(i, ":")) // distinct bodies
		bodies = append(bodies, string(b))
	}
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	if sent != len(bodies) {
		t.Errorf("sent = %d, want %d", sent, len(bodies))
	}
	arrivedOnce(t, e.srv, "map", bodies)
	entries := 0
	for _, c := range e.rec.calls() {
		entries += c[0]
		if c[1] > MaxMessageBytes || c[0] > MaxBatchEntries {
			t.Errorf("a call carried %d entries, %d bytes: over the limit", c[0], c[1])
		}
	}
	if entries != len(bodies) {
		t.Errorf("entries over all calls = %d, want %d", entries, len(bodies))
	}
	// Greedy packing in stream order: {100000,100000,62144} (exactly the
	// limit), {1}, {262144}, {87382,87382}, {87382,87381},
	// {131072,131072}, {5,200000}, {62145}.
	if got, want := len(e.rec.calls()), 8; got != want {
		t.Errorf("PublishBatch calls = %d, want %d: %v", got, want, e.rec.calls())
	}
}

func TestPublishAll_OversizedMessage(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	bodies := numbered(30)
	bodies[21] = strings.Repeat("x", MaxMessageBytes+1)
	sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
	if err == nil || !strings.Contains(err.Error(), "message 22 is 262145 bytes") {
		t.Fatalf("err = %v, want it to name message 22 and its size", err)
	}
	if sent >= len(bodies) || sent != len(e.srv.Messages()) {
		t.Errorf("sent = %d, server accepted %d, total %d", sent, len(e.srv.Messages()), len(bodies))
	}
}

func TestPublishAll_NextError(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	boom := errors.New("spool read failed")
	i := 0
	next := func() (string, bool, error) {
		i++
		if i == 16 {
			return "", false, boom
		}
		return fmt.Sprint("m", i), true, nil
	}
	sent, err := p.PublishAll(context.Background(), "map", next, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "read message 16") {
		t.Fatalf("err = %v, want it to wrap %v at message 16", err, boom)
	}
	if sent > 15 || sent != len(e.srv.Messages()) {
		t.Errorf("sent = %d, server accepted %d, want equal and at most 15", sent, len(e.srv.Messages()))
	}
}

func TestPublishAll_Cancel(t *testing.T) {
	e := setup(t)
	release := e.srv.HoldSubject("map")
	defer release()
	p := New(e.cli, topic, fast, WithConcurrency(2))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.PublishAll(ctx, "map", source(numbered(1000)), nil)
		done <- err
	}()
	for e.srv.Held() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestPublishAll_BoundedReadAhead checks that next is never called far ahead
// of what is confirmed: the spool is streamed, never held whole.
func TestPublishAll_BoundedReadAhead(t *testing.T) {
	e := setup(t)
	const conc = 3
	p := New(e.cli, topic, fast, WithConcurrency(conc))
	var confirmed atomic.Int64
	// in flight (conc) + queued (conc) + one being handed over + one being
	// built, 10 each, plus the body that closes a batch.
	limit := int64((2*conc+2)*MaxBatchEntries + 1)
	var reads, worst int64
	total := 3000
	next := func() (string, bool, error) {
		if reads == int64(total) {
			return "", false, nil
		}
		reads++
		worst = max(worst, reads-confirmed.Load())
		return fmt.Sprint("m", reads), true, nil
	}
	sent, err := p.PublishAll(context.Background(), "map", next, func(n int) { confirmed.Store(int64(n)) })
	if err != nil || sent != total {
		t.Fatalf("sent %d, err %v; want %d, nil", sent, err, total)
	}
	if worst > limit {
		t.Errorf("next ran %d messages ahead of confirmations, want at most %d", worst, limit)
	}
}

func TestPublish(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	body := `{"jobid":"j","reduce":true,"note":"ü\n\"q\""}`
	if err := p.Publish(context.Background(), "reduce", body); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	msgs := e.srv.Messages()
	if len(msgs) != 1 || msgs[0].Body != body || msgs[0].Subject != "reduce" || msgs[0].Batch {
		t.Fatalf("messages = %+v, want one reduce message with the body", msgs)
	}
}

func TestPublish_RetriesServerError(t *testing.T) {
	e := setup(t)
	e.srv.FailNext(2, 500)
	p := New(e.cli, topic, fast, WithMaxAttempts(3))
	if err := p.Publish(context.Background(), "reduce", "r"); err != nil {
		t.Fatalf("Publish after 2 server errors with 3 attempts: %v", err)
	}
	if got, want := e.srv.Count("reduce"), 1; got != want {
		t.Errorf("Count(reduce) = %d, want %d", got, want)
	}
}

func TestPublish_ServerError(t *testing.T) {
	e := setup(t)
	e.srv.FailNext(3, 500)
	p := New(e.cli, topic, fast, WithMaxAttempts(3))
	err := p.Publish(context.Background(), "reduce", "r")
	if err == nil {
		t.Fatal("Publish succeeded, want an error")
	}
	for _, want := range []string{"reduce", topic, "gave up after 3 attempts", "InternalError"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := e.srv.Count("reduce"); got != 0 {
		t.Errorf("Count(reduce) = %d, want 0", got)
	}
}

func TestPublish_TooLarge(t *testing.T) {
	e := setup(t)
	p := New(e.cli, topic, fast)
	if err := p.Publish(context.Background(), "reduce", strings.Repeat("x", MaxMessageBytes+1)); err == nil || !strings.Contains(err.Error(), "over the SNS limit") {
		t.Fatalf("err = %v, want over the SNS limit", err)
	}
	if n := len(e.rec.calls()); n != 0 {
		t.Errorf("%d calls made, want none", n)
	}
}

func TestNewFromEnv(t *testing.T) {
	s := snsfake.New()
	u, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SNS":        u,
		"AWS_ENDPOINT_URL":            "",
		"AWS_REGION":                  "", // taken from the ARN
		"AWS_DEFAULT_REGION":          "",
		"AWS_PROFILE":                 "",
		"AWS_ACCESS_KEY_ID":           "test",
		"AWS_SECRET_ACCESS_KEY":       "test",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	arn := "arn:aws:sns:eu-west-1:123456789012:wp"
	p, err := NewFromEnv(context.Background(), arn, WithConcurrency(4))
	if err != nil {
		t.Fatalf("NewFromEnv: %v", err)
	}
	if err := p.Publish(context.Background(), "reduce", "r"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].TopicArn != arn {
		t.Fatalf("messages = %+v, want one to %s", msgs, arn)
	}
	// The SDK's retryer is off: one injected error is one failed attempt
	// here, and the retry comes from this package.
	s.FailNext(1, 500)
	sent, err := p.PublishAll(context.Background(), "map", source(numbered(12)), nil)
	if err != nil || sent != 12 {
		t.Fatalf("PublishAll: sent %d, err %v", sent, err)
	}

	for _, bad := range []string{"", "wp-topic", "arn:aws:sqs:us-east-1:1:q", "arn:aws:sns:us-east-1:1"} {
		if _, err := NewFromEnv(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "not an SNS topic ARN") {
			t.Errorf("NewFromEnv(%q) err = %v, want not an SNS topic ARN", bad, err)
		}
	}
}

// BenchmarkPublishAll publishes 100,000 small messages per iteration to
// snsfake over loopback with the default concurrency.
func BenchmarkPublishAll(b *testing.B) {
	e := setup(b)
	p := New(e.cli, topic)
	bodies := numbered(100000)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		e.srv.Reset()
		sent, err := p.PublishAll(context.Background(), "map", source(bodies), nil)
		if err != nil || sent != len(bodies) {
			b.Fatalf("sent %d, err %v", sent, err)
		}
	}
	b.ReportMetric(float64(b.N*len(bodies))/time.Since(start).Seconds(), "msgs/s")
}
