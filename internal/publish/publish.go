// Package publish sends wp's SNS messages: one message at a time for the
// reduce (Publish), and streams of map messages for `wp create`
// (PublishAll), which packs them into PublishBatch calls and keeps many calls
// in flight.
//
// Limits that shape it (SNS): a message body is at most MaxMessageBytes
// (262,144) bytes; one PublishBatch call takes at most MaxBatchEntries (10)
// entries whose bodies total at most MaxMessageBytes bytes, and may fail entry
// by entry.
//
// Retries live in this package only: NewFromEnv turns the SDK's own retryer
// off so attempts do not multiply. A call (or a batch entry) is tried at most
// DefaultMaxAttempts (7) times; between attempts it waits an exponential
// backoff starting at DefaultBaseDelay (100ms), doubling, capped at
// DefaultMaxDelay (5s), with jitter (a random wait between half and all of
// that), so a call gives up after at most about 6.3s of waiting. Retried are
// connection errors, HTTP 5xx, throttling (HTTP 429 and throttling codes)
// and batch entries reported Failed with SenderFault false. Entries SNS
// rejects as the sender's fault are not retried. Each HTTP request is bounded
// by HTTPTimeout (30s). SNS standard topics deliver at least once, and a
// retry after a lost answer can publish a message twice: consumers must
// tolerate duplicates (wp's store does).
package publish

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/wp-tools/wp/internal/awslog"
)

// MaxMessageBytes is SNS's limit on one message body, and on the bodies of
// one PublishBatch call together.
const MaxMessageBytes = 262144

// MaxBatchEntries is the most entries one PublishBatch call may carry.
const MaxBatchEntries = 10

// Defaults; see the package comment.
const (
	DefaultConcurrency = 16
	DefaultMaxAttempts = 7
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 5 * time.Second
	HTTPTimeout        = 30 * time.Second
)

// api is the part of *sns.Client the publisher uses.
type api interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
	PublishBatch(context.Context, *sns.PublishBatchInput, ...func(*sns.Options)) (*sns.PublishBatchOutput, error)
}

// Publisher publishes to one SNS topic. It is safe for concurrent use.
type Publisher struct {
	client      api
	topic       string
	concurrency int
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithConcurrency sets how many PublishBatch calls PublishAll keeps in
// flight (default DefaultConcurrency). Values below 1 mean 1.
func WithConcurrency(n int) Option {
	return func(p *Publisher) { p.concurrency = max(n, 1) }
}

// WithMaxAttempts sets how many times a call or batch entry is tried before
// giving up (default DefaultMaxAttempts). Values below 1 mean 1.
func WithMaxAttempts(n int) Option {
	return func(p *Publisher) { p.maxAttempts = max(n, 1) }
}

// WithBackoff sets the first wait between attempts and the cap on it
// (defaults DefaultBaseDelay and DefaultMaxDelay).
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(p *Publisher) { p.baseDelay, p.maxDelay = base, maxDelay }
}

// New returns a publisher to topicARN through client. It does not change the
// client's retryer: give it one with retries off (as NewFromEnv does) so that
// this package's policy is the only one.
func New(client *sns.Client, topicARN string, opts ...Option) *Publisher {
	return newPublisher(client, topicARN, opts...)
}

func newPublisher(client api, topicARN string, opts ...Option) *Publisher {
	p := &Publisher{
		client:      client,
		topic:       topicARN,
		concurrency: DefaultConcurrency,
		maxAttempts: DefaultMaxAttempts,
		baseDelay:   DefaultBaseDelay,
		maxDelay:    DefaultMaxDelay,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// NewFromEnv builds a publisher from the standard AWS configuration
// (environment, shared config files, instance or task role), which also
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SNS. When no region is
// configured, the topic ARN's region is used. HTTP requests time out after
// HTTPTimeout and the SDK's retryer is off (see the package comment).
func NewFromEnv(ctx context.Context, topicARN string, opts ...Option) (*Publisher, error) {
	arnRegion, err := topicRegion(topicARN)
	if err != nil {
		return nil, err
	}
	p := newPublisher(nil, topicARN, opts...)
	httpClient := awshttp.NewBuildableClient().
		WithTimeout(HTTPTimeout).
		WithTransportOptions(func(t *http.Transport) {
			// Keep a connection per call in flight instead of churning.
			t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, p.concurrency)
			t.MaxIdleConns = max(t.MaxIdleConns, p.concurrency)
		})
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithLogger(awslog.Logger()),
	)
	if err != nil {
		return nil, fmt.Errorf("load aws configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = arnRegion
	}
	p.client = sns.NewFromConfig(cfg)
	return p, nil
}

// topicRegion checks that arn looks like an SNS topic ARN
// (arn:PARTITION:sns:REGION:ACCOUNT:NAME) and returns its region.
func topicRegion(arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[3] == "" || parts[5] == "" {
		return "", fmt.Errorf("topic %q is not an SNS topic ARN (want arn:aws:sns:REGION:ACCOUNT:NAME)", arn)
	}
	return parts[3], nil
}

// checkBody applies SNS's size rules to the message at position n (1-based).
func checkBody(n int, body string) error {
	if body == "" {
		return fmt.Errorf("message %d is empty: SNS rejects empty messages", n)
	}
	if len(body) > MaxMessageBytes {
		return fmt.Errorf("message %d is %d bytes, over the SNS limit of %d bytes", n, len(body), MaxMessageBytes)
	}
	return nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Publish publishes one message, retrying as the package comment says. An
// empty subject is left out.
func (p *Publisher) Publish(ctx context.Context, subject, body string) error {
	if err := checkBody(1, body); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	in := &sns.PublishInput{TopicArn: aws.String(p.topic), Subject: optional(subject), Message: aws.String(body)}
	for attempt := 1; ; attempt++ {
		_, err := p.client.Publish(ctx, in)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return fmt.Errorf("publish %s message to %s: %w", subject, p.topic, err)
		}
		if attempt >= p.maxAttempts {
			return fmt.Errorf("publish %s message to %s: gave up after %d attempts: %w", subject, p.topic, attempt, err)
		}
		if serr := p.sleep(ctx, nil, attempt); serr != nil {
			return fmt.Errorf("publish %s message to %s: %w (last error: %v)", subject, p.topic, serr, err)
		}
	}
}

// retryables classifies errors worth another attempt: the SDK's defaults
// (connection errors, 500/502/503/504, throttling codes, request timeouts)
// plus SNS's own codes and HTTP 429. The SDK's NoRetryCanceledError comes
// first, so a cancelled context is never retried.
var retryables = retry.IsErrorRetryables(append(append([]retry.IsErrorRetryable{}, retry.DefaultRetryables...),
	retry.RetryableErrorCode{Codes: map[string]struct{}{
		"Throttled": {}, "InternalError": {}, "ServiceUnavailable": {}, "KMSThrottling": {},
	}},
	retry.RetryableHTTPStatusCode{Codes: map[int]struct{}{http.StatusTooManyRequests: {}}},
))

func retryable(err error) bool {
	return retryables.IsErrorRetryable(err) == aws.TrueTernary
}

// errStopped means PublishAll stopped because of another batch's failure.
var errStopped = errors.New("stopped")

// sleep waits before attempt+1. It returns ctx's error if ctx ends first and
// errStopped if stop is closed first.
func (p *Publisher) sleep(ctx context.Context, stop <-chan struct{}, attempt int) error {
	d := p.baseDelay
	for i := 1; i < attempt && d < p.maxDelay; i++ {
		d *= 2
	}
	d = min(d, p.maxDelay)
	if d > 1 {
		d = d/2 + rand.N(d/2+1)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errStopped
	}
}

// batch is up to MaxBatchEntries consecutive messages of the stream.
type batch struct {
	first  int // 1-based position of bodies[0] in the stream
	bodies []string
}

// PublishAll publishes every body next yields, all with the same subject
// (empty means none), and returns how many SNS confirmed. Order is not
// preserved.
//
// next is called from the caller's goroutine only, one body at a time, and
// only as fast as batches go out: at most about 2*concurrency+2 batches are
// held in memory. It returns ok false at the end and a non-nil error to
// abort.
//
// progress, if not nil, is called after each confirmation with the running
// total; calls come from publishing goroutines, one at a time, with a
// non-decreasing count.
//
// Bodies are packed into PublishBatch calls of at most MaxBatchEntries
// entries and MaxMessageBytes bytes. Failed calls and failed entries are
// retried (see the package comment). On the first final failure, an empty
// or oversized body, or an error from next, PublishAll stops: it sends
// nothing more, lets calls already in flight finish (without retrying them),
// and returns the number confirmed with an error naming the cause. When ctx
// ends, calls in flight are abandoned and ctx's error is returned.
func (p *Publisher) PublishAll(ctx context.Context, subject string, next func() (body string, ok bool, err error), progress func(sent int)) (int, error) {
	var (
		mu       sync.Mutex
		sent     int
		firstErr error
		stop     = make(chan struct{})
		stopOnce sync.Once
		wg       sync.WaitGroup
		batches  = make(chan batch, p.concurrency)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		stopOnce.Do(func() { close(stop) })
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	confirm := func(n int) {
		if n == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		sent += n
		if progress != nil {
			progress(sent)
		}
	}
	for range p.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if stopped() {
					continue // drain without sending
				}
				if err := p.sendBatch(ctx, stop, subject, b, confirm); err != nil && !errors.Is(err, errStopped) {
					fail(err)
				}
			}
		}()
	}

	send := func(b batch) bool {
		select {
		case batches <- b:
			return true
		case <-stop:
			return false
		case <-ctx.Done():
			fail(ctx.Err())
			return false
		}
	}
	cur := batch{first: 1}
	curBytes := 0
	n := 0
	for !stopped() {
		if ctx.Err() != nil {
			fail(ctx.Err())
			break
		}
		body, ok, err := next()
		if err != nil {
			fail(fmt.Errorf("read message %d: %w", n+1, err))
			break
		}
		if !ok {
			if len(cur.bodies) > 0 {
				send(cur)
			}
			break
		}
		n++
		if err := checkBody(n, body); err != nil {
			fail(err)
			break
		}
		if len(cur.bodies) == MaxBatchEntries || curBytes+len(body) > MaxMessageBytes {
			if !send(cur) {
				break
			}
			cur, curBytes = batch{first: n}, 0
		}
		cur.bodies = append(cur.bodies, body)
		curBytes += len(body)
	}
	close(batches)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return sent, fmt.Errorf("publish %s messages to %s: %d confirmed, then: %w", subject, p.topic, sent, firstErr)
	}
	return sent, nil
}

// sendBatch publishes b, retrying failed calls and entries, and reports each
// confirmation. Entry Ids are the bodies' indexes in b, so they stay the
// same across retries.
func (p *Publisher) sendBatch(ctx context.Context, stop <-chan struct{}, subject string, b batch, confirm func(int)) error {
	pending := make([]int, len(b.bodies))
	for i := range pending {
		pending[i] = i
	}
	last := b.first + len(b.bodies) - 1
	for attempt := 1; ; attempt++ {
		entries := make([]types.PublishBatchRequestEntry, len(pending))
		for j, i := range pending {
			entries[j] = types.PublishBatchRequestEntry{
				Id:      aws.String(strconv.Itoa(i)),
				Subject: optional(subject),
				Message: aws.String(b.bodies[i]),
			}
		}
		out, err := p.client.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String(p.topic), PublishBatchRequestEntries: entries})
		var lastErr error
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !retryable(err) {
				return fmt.Errorf("messages %d-%d: %w", b.first, last, err)
			}
			lastErr = err
		} else {
			done := map[int]bool{}
			for _, s := range out.Successful {
				if i, err := strconv.Atoi(aws.ToString(s.Id)); err == nil {
					done[i] = true
				}
			}
			var (
				still     []int
				confirmed int
			)
			for _, i := range pending {
				if done[i] {
					confirmed++
				} else {
					still = append(still, i)
				}
			}
			confirm(confirmed)
			for _, f := range out.Failed {
				i, _ := strconv.Atoi(aws.ToString(f.Id))
				why := fmt.Errorf("message %d: %s: %s", b.first+i, aws.ToString(f.Code), aws.ToString(f.Message))
				if f.SenderFault {
					return fmt.Errorf("rejected by SNS: %w", why)
				}
				lastErr = why
			}
			if len(still) == 0 {
				return nil
			}
			if lastErr == nil {
				lastErr = fmt.Errorf("%d entries of messages %d-%d were neither successful nor failed in the answer", len(still), b.first, last)
			}
			pending = still
		}
		if attempt >= p.maxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, lastErr)
		}
		if err := p.sleep(ctx, stop, attempt); err != nil {
			return err
		}
	}
}
