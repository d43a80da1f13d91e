package testservers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// This file runs the real watchbot loop for tests: fauxqs (an in-memory
// SNS/SQS emulator) on loopback, SNS topic → SQS work queue → dead-letter
// queue as watchbot's CloudFormation stack makes them, and the real watcher
// of npm @mapbox/watchbot 4.7.1 (bin/watchbot.js listen CMD...) running a
// command per message. What the watcher really does, read from its source,
// is in WATCHBOT.md beside this file.

// sqsInstall is what to do when fauxqs or the watcher cannot run.
const sqsInstall = "fauxqs and @mapbox/watchbot not installed: run `npm ci` in the repository root (needs Node.js 20 and npm)"

// SQSRegion is the region of every topic and queue the emulator makes here.
const SQSRegion = "us-east-1"

// SQS is a running fauxqs: an SNS and SQS endpoint on 127.0.0.1. URL
// (from the embedded Server) is the endpoint for aws-sdk-go-v2
// (AWS_ENDPOINT_URL_SNS and AWS_ENDPOINT_URL_SQS, see Env). Queue URLs have
// the form http://sqs.us-east-1.localhost:PORT/000000000000/NAME, which is
// what the watcher's aws-sdk v2 needs (it takes the region from the host
// and sends each request to the queue URL; the shim resolves the host).
type SQS struct {
	*Server
	// SNS and SQSClient are clients of the emulator (region SQSRegion,
	// credentials test/test).
	SNS       *sns.Client
	SQSClient *sqs.Client
	// stacks numbers NewStack's topics and queues, so each is new.
	stacks atomic.Int64
}

// StartSQS starts fauxqs (npm package pinned in package.json) through the
// launcher js/fauxqs.js on a port the kernel picks on 127.0.0.1, and waits
// until it accepts connections. Stop ends it; the emulator also ends when the
// test binary dies (it watches its standard input).
func StartSQS() (*SQS, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New(sqsInstall + ": node not found in PATH")
	}
	if err := checkSQSInstall(); err != nil {
		return nil, err
	}
	launcher := filepath.Join(RepoRoot(), "internal", "testservers", "js", "fauxqs.js")
	cmd := exec.Command(node, launcher, SQSRegion)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=")
	svc, err := startService("fauxqs", cmd)
	if err != nil {
		return nil, err
	}
	stop, out := svc.stop, svc.out
	addr, err := waitListening(out, svc.exited, 20*time.Second)
	if err != nil {
		stop()
		return nil, fmt.Errorf("fauxqs: %w; its output: %s", err, tail(out.Bytes(), 2000))
	}
	if err := WaitDial(addr, 5*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("fauxqs: %w", err)
	}
	s := &SQS{Server: &Server{Addr: addr, URL: "http://" + addr, stop: stop, died: svc.died}}
	cfg := aws.Config{
		Region:      SQSRegion,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	s.SNS = sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(s.URL) })
	s.SQSClient = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(s.URL) })
	return s, nil
}

// StartSQST starts fauxqs for a test and stops it in t.Cleanup. It fails the
// test (never skips it) when fauxqs cannot start, saying what to install.
func StartSQST(t testing.TB) *SQS {
	t.Helper()
	s, err := StartSQS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d := s.Died(); d != "" {
			t.Error(d)
		}
		s.Stop()
	})
	return s
}

func checkSQSInstall() error {
	root := RepoRoot()
	for _, f := range []string{
		filepath.Join(root, "node_modules", "fauxqs", "package.json"),
		filepath.Join(root, "node_modules", "@mapbox", "watchbot", "bin", "watchbot.js"),
	} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: %s is missing", sqsInstall, f)
		}
	}
	return nil
}

var listeningLine = regexp.MustCompile(`fauxqs listening on (127\.0\.0\.1:[0-9]+)`)

// waitListening waits for the launcher's one line naming its address.
func waitListening(out *lockedBuffer, exited <-chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := listeningLine.FindSubmatch(out.Bytes()); m != nil {
			return string(m[1]), nil
		}
		select {
		case <-exited:
			return "", errors.New("it exited before it listened (a broken node_modules? run `npm ci`)")
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("it did not listen within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Env is what a process needs to reach the emulator with an AWS SDK:
// endpoint variables for SNS and SQS, the region and test credentials. The
// watcher gets it (and so the commands it runs, such as wp).
func (s *SQS) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_SNS=" + s.URL,
		"AWS_ENDPOINT_URL_SQS=" + s.URL,
		"AWS_REGION=" + SQSRegion,
		"AWS_DEFAULT_REGION=" + SQSRegion,
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		// Never ask an instance metadata service (no network here).
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// StackOptions shape the queues of NewStack. Zero values are watchbot's
// template defaults, which are far too slow for most tests.
type StackOptions struct {
	// Name starts the topic and queue names; a number is added so that
	// every stack is new. "" is "wp-test".
	Name string
	// VisibilityTimeout is the work queue's (watchbot's messageTimeout),
	// in whole seconds; 0 is watchbot's 180 s. The watcher overrides it
	// after every failed run (2^receives seconds), so it matters only for a
	// command that runs longer than it, or a watcher that dies mid-message.
	VisibilityTimeout time.Duration
	// MaxReceiveCount is the work queue's RedrivePolicy maxReceiveCount
	// (watchbot's deadletterThreshold); 0 is watchbot's 10. A message is
	// moved to the dead-letter queue by the receive after its
	// MaxReceiveCount-th.
	MaxReceiveCount int
}

// Stack is what watchbot's CloudFormation template makes for a service: an
// SNS topic (WorkTopic), a work queue subscribed to it (QueueUrl; SNS
// envelope, not raw delivery: the watcher parses the envelope) whose
// RedrivePolicy sends a message that was received too often to a
// dead-letter queue.
type Stack struct {
	sqs           *SQS
	TopicArn      string
	QueueURL      string
	QueueArn      string
	DeadLetterURL string
	DeadLetterArn string
}

// NewStack makes a topic, its dead-letter queue and a work queue subscribed
// to the topic.
func (s *SQS) NewStack(ctx context.Context, opts StackOptions) (*Stack, error) {
	name := opts.Name
	if name == "" {
		name = "wp-test"
	}
	name = fmt.Sprintf("%s-%d", name, s.stacks.Add(1))
	vis := 180
	if opts.VisibilityTimeout > 0 {
		vis = int((opts.VisibilityTimeout + time.Second - 1) / time.Second)
	}
	maxReceives := 10
	if opts.MaxReceiveCount > 0 {
		maxReceives = opts.MaxReceiveCount
	}
	st := &Stack{sqs: s}
	var err error
	if st.DeadLetterURL, st.DeadLetterArn, err = s.createQueue(ctx, name+"-DeadLetterQueue", map[string]string{
		"MessageRetentionPeriod": "1209600",
	}); err != nil {
		return nil, err
	}
	redrive, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": st.DeadLetterArn,
		"maxReceiveCount":     maxReceives,
	})
	if st.QueueURL, st.QueueArn, err = s.createQueue(ctx, name+"-Queue", map[string]string{
		"VisibilityTimeout": strconv.Itoa(vis),
		"RedrivePolicy":     string(redrive),
	}); err != nil {
		return nil, err
	}
	topic, err := s.SNS.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name + "-Topic")})
	if err != nil {
		return nil, s.explain(fmt.Errorf("create topic: %w", err))
	}
	st.TopicArn = aws.ToString(topic.TopicArn)
	if _, err := s.SNS.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: topic.TopicArn,
		Protocol: aws.String("sqs"),
		Endpoint: aws.String(st.QueueArn),
	}); err != nil {
		return nil, s.explain(fmt.Errorf("subscribe the queue to the topic: %w", err))
	}
	return st, nil
}

// Tap subscribes one more queue to the stack's topic, which nobody
// consumes, and returns its URL: every message published to the topic (the
// map messages wp create sends, the reduce wp run sends) stays there for a
// test to count (Peek sees at most 10 at a time: use Counts, or TapSubjects).
func (st *Stack) Tap(ctx context.Context) (string, error) {
	name := fmt.Sprintf("wp-tap-%d", st.sqs.stacks.Add(1))
	url, arn, err := st.sqs.createQueue(ctx, name, map[string]string{"VisibilityTimeout": "0"})
	if err != nil {
		return "", err
	}
	if _, err := st.sqs.SNS.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(st.TopicArn), Protocol: aws.String("sqs"), Endpoint: aws.String(arn)}); err != nil {
		return "", st.sqs.explain(fmt.Errorf("subscribe the tap to the topic: %w", err))
	}
	return url, nil
}

// TapSubjects drains the tap queue (receiving and deleting) and counts its
// messages by subject.
func (st *Stack) TapSubjects(ctx context.Context, tap string) (map[string]int, error) {
	counts := map[string]int{}
	for {
		out, err := st.sqs.SQSClient.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(tap), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			return nil, st.sqs.explain(err)
		}
		if len(out.Messages) == 0 {
			return counts, nil
		}
		for _, m := range out.Messages {
			var env struct {
				Subject *string `json:"Subject"`
			}
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &env)
			counts[aws.ToString(env.Subject)]++
			if _, err := st.sqs.SQSClient.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(tap), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return nil, st.sqs.explain(err)
			}
		}
	}
}

// NewStackT is NewStack that fails the test on an error.
func (s *SQS) NewStackT(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	st, err := s.NewStack(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *SQS) createQueue(ctx context.Context, name string, attrs map[string]string) (url, arn string, err error) {
	out, err := s.SQSClient.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", "", s.explain(fmt.Errorf("create queue %s: %w", name, err))
	}
	url = aws.ToString(out.QueueUrl)
	got, err := s.SQSClient.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", "", s.explain(fmt.Errorf("queue %s's ARN: %w", name, err))
	}
	return url, got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
}

// explain adds why the emulator is gone, when it is, to a failed request.
func (s *SQS) explain(err error) error {
	if d := s.Died(); d != "" {
		return fmt.Errorf("%w (%s)", err, d)
	}
	return err
}

// Publish publishes message to the stack's topic with subject (none when
// ""), as wp or a watchbot client does, and returns SNS's message ID. (The
// command sees the SQS message's ID as MessageId, another ID.)
func (st *Stack) Publish(ctx context.Context, subject, message string) (string, error) {
	in := &sns.PublishInput{TopicArn: aws.String(st.TopicArn), Message: aws.String(message)}
	if subject != "" {
		in.Subject = aws.String(subject)
	}
	out, err := st.sqs.SNS.Publish(ctx, in)
	if err != nil {
		return "", st.sqs.explain(fmt.Errorf("publish to %s: %w", st.TopicArn, err))
	}
	return aws.ToString(out.MessageId), nil
}

// PublishT is Publish that fails the test on an error.
func (st *Stack) PublishT(t testing.TB, subject, message string) string {
	t.Helper()
	id, err := st.Publish(context.Background(), subject, message)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// QueueCounts are a queue's approximate message counts.
type QueueCounts struct {
	// Visible is ApproximateNumberOfMessages: waiting to be received.
	Visible int
	// NotVisible is ApproximateNumberOfMessagesNotVisible: received and
	// neither deleted nor visible again. fauxqs moves a message whose
	// visibility ran out back to Visible only when someone receives from
	// the queue, so an unwatched queue can keep it here.
	NotVisible int
	// Delayed is ApproximateNumberOfMessagesDelayed.
	Delayed int
}

// Total is every message still in the queue.
func (c QueueCounts) Total() int { return c.Visible + c.NotVisible + c.Delayed }

func (c QueueCounts) String() string {
	return fmt.Sprintf("%d visible, %d not visible, %d delayed", c.Visible, c.NotVisible, c.Delayed)
}

// Counts returns the queue's message counts (GetQueueAttributes).
func (s *SQS) Counts(ctx context.Context, queueURL string) (QueueCounts, error) {
	out, err := s.SQSClient.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		return QueueCounts{}, s.explain(fmt.Errorf("counts of %s: %w", queueURL, err))
	}
	n := func(name sqstypes.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(name)])
		return v
	}
	return QueueCounts{
		Visible:    n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
		NotVisible: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:    n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// QueueCounts are the work queue's counts; DeadLetterCounts the
// dead-letter queue's. "Nothing reached the dead-letter queue" is
// DeadLetterCounts().Total() == 0.
func (st *Stack) QueueCounts(ctx context.Context) (QueueCounts, error) {
	return st.sqs.Counts(ctx, st.QueueURL)
}

// DeadLetterCounts: see QueueCounts.
func (st *Stack) DeadLetterCounts(ctx context.Context) (QueueCounts, error) {
	return st.sqs.Counts(ctx, st.DeadLetterURL)
}

// Message is an SQS message as Peek returns it, its SNS envelope unpacked.
type Message struct {
	// MessageID is the SQS message ID (the command's MessageId).
	MessageID string
	// Body is the SQS body: the SNS envelope.
	Body string
	// Subject and Message are the envelope's (the published subject and
	// message).
	Subject, Message string
	// ReceiveCount is ApproximateReceiveCount, Peek's own receive included.
	ReceiveCount int
	Sent         time.Time
}

// Peek receives up to 10 messages that are visible in the queue now and
// leaves them visible (VisibilityTimeout 0), for a test to look at (for
// example the dead-letter queue's). Each peek counts as a receive.
func (s *SQS) Peek(ctx context.Context, queueURL string) ([]Message, error) {
	out, err := s.SQSClient.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(queueURL),
		MaxNumberOfMessages:         10,
		VisibilityTimeout:           0,
		WaitTimeSeconds:             0,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return nil, s.explain(fmt.Errorf("peek into %s: %w", queueURL, err))
	}
	var msgs []Message
	for _, m := range out.Messages {
		msg := Message{MessageID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)}
		var env struct {
			Subject *string
			Message string
		}
		if json.Unmarshal([]byte(msg.Body), &env) == nil {
			msg.Subject, msg.Message = aws.ToString(env.Subject), env.Message
		}
		msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			msg.Sent = time.UnixMilli(ms)
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// DeadLetters peeks into the stack's dead-letter queue.
func (st *Stack) DeadLetters(ctx context.Context) ([]Message, error) {
	return st.sqs.Peek(ctx, st.DeadLetterURL)
}

// WatcherOptions are the watcher's environment, as watchbot's stack sets
// it, and its command.
type WatcherOptions struct {
	// QueueURL is the queue to watch (Stack.QueueURL).
	QueueURL string
	// Command is the words after `listen`: the watcher joins them with
	// spaces and runs the result with /bin/sh -c, once per message.
	Command []string
	// MaxJobDuration (maxJobDuration) is how long the command may run
	// before the watcher sends SIGTERM to its process tree; whole seconds,
	// 0 for no limit.
	MaxJobDuration time.Duration
	// WritableFilesystem (writableFilesystem): true makes the watcher
	// exit after one message, as a task with a writable filesystem does;
	// false keeps it receiving.
	WritableFilesystem bool
	// Env is added last to the watcher's environment, which the command
	// inherits (for example WorkTopic, WP_PROGRESS). KEY=VALUE; a later
	// value wins.
	Env []string
	// Dir is the working directory; "" is the test's.
	Dir string
}

// Watcher is a running watchbot watcher (node
// node_modules/@mapbox/watchbot/bin/watchbot.js listen CMD...).
type Watcher struct {
	// Volume is the one directory in Volumes: a new temporary directory
	// the watcher empties after each message.
	Volume   string
	pid      int
	out      *lockedBuffer
	exited   chan struct{}
	waitErr  error
	oneShot  bool
	stopOnce sync.Once
	stopped  atomic.Bool
	signaled atomic.Bool
	lifeline *os.File
}

// StartWatcher starts the real watcher on opts.QueueURL, in a process group
// of its own, with the environment its stack sets (QueueUrl, Volumes,
// maxJobDuration, writableFilesystem), s.Env(), NODE_OPTIONS that load
// js/watcher-shim.js (resolves *.localhost to 127.0.0.1; kills the group
// when the test binary dies) and opts.Env. The test's own AWS_* variables
// are not passed on. Output returns what the watcher and its commands
// printed. Several watchers on one queue make a fleet.
//
// It does not wait for the watcher's first receive: a message published
// before then waits in the queue.
func (s *SQS) StartWatcher(opts WatcherOptions) (*Watcher, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New(sqsInstall + ": node not found in PATH")
	}
	if err := checkSQSInstall(); err != nil {
		return nil, err
	}
	if opts.QueueURL == "" {
		return nil, errors.New("StartWatcher: no QueueURL")
	}
	if len(opts.Command) == 0 {
		return nil, errors.New("StartWatcher: no Command")
	}
	root := RepoRoot()
	shim := filepath.Join(root, "internal", "testservers", "js", "watcher-shim.js")
	bin := filepath.Join(root, "node_modules", "@mapbox", "watchbot", "bin", "watchbot.js")
	volume, err := os.MkdirTemp("", "wp-watchbot-volume-")
	if err != nil {
		return nil, fmt.Errorf("make the watcher's volume: %w", err)
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(volume)
		return nil, fmt.Errorf("make the watcher's lifeline: %w", err)
	}

	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), k == "NODE_OPTIONS", k == "QueueUrl", k == "Volumes",
			k == "maxJobDuration", k == "writableFilesystem", k == "WorkTopic":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"QueueUrl="+opts.QueueURL,
		"Volumes="+volume,
		"maxJobDuration="+strconv.Itoa(int((opts.MaxJobDuration+time.Second-1)/time.Second)),
		"writableFilesystem="+strconv.FormatBool(opts.WritableFilesystem),
		"NODE_OPTIONS=--require "+nodeOptionQuote(shim),
		// ExtraFiles[0] is descriptor 3 in the watcher.
		"WP_TESTSERVERS_LIFELINE_FD=3",
		// aws-sdk v2's end-of-support notice on every start.
		"AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1",
	)
	env = append(env, s.Env()...)
	env = append(env, opts.Env...)

	cmd := exec.Command(node, append([]string{bin, "listen"}, opts.Command...)...)
	cmd.Dir = opts.Dir
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{lifeR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	// A command that outlives a killed watcher must not hold Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		lifeR.Close()
		lifeW.Close()
		os.RemoveAll(volume)
		return nil, fmt.Errorf("start the watcher: %w", err)
	}
	lifeR.Close()
	w := &Watcher{
		Volume:   volume,
		pid:      cmd.Process.Pid,
		out:      out,
		exited:   make(chan struct{}),
		oneShot:  opts.WritableFilesystem,
		lifeline: lifeW,
	}
	go func() {
		w.waitErr = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// nodeOptionQuote quotes a path for NODE_OPTIONS when it needs it.
func nodeOptionQuote(p string) string {
	if !strings.ContainsAny(p, " \t\"\\") {
		return p
	}
	return strconv.Quote(p)
}

// StartWatcherT starts a watcher for a test and stops it in t.Cleanup; when
// the test failed, the cleanup logs the watcher's output. It fails the test
// (never skips it) when the watcher cannot start.
func (s *SQS) StartWatcherT(t testing.TB, opts WatcherOptions) *Watcher {
	t.Helper()
	w, err := s.StartWatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d := w.Died(); d != "" {
			t.Error(d)
		}
		w.Stop()
		if t.Failed() {
			t.Logf("watcher (pid %d) output:\n%s", w.pid, w.Output())
		}
	})
	return w
}

// StartFleetT starts n watchers with the same options on one queue.
func (s *SQS) StartFleetT(t testing.TB, n int, opts WatcherOptions) []*Watcher {
	t.Helper()
	fleet := make([]*Watcher, n)
	for i := range fleet {
		fleet[i] = s.StartWatcherT(t, opts)
	}
	return fleet
}

// Pid is the watcher's process ID, which is also its process group's.
func (w *Watcher) Pid() int { return w.pid }

// Output is everything the watcher printed so far, its commands' output
// included (the watcher prefixes each line with the date, [watcher] or
// [worker], and the message ID).
func (w *Watcher) Output() string { return string(w.out.Bytes()) }

// WaitOutput waits until Output contains substr, the watcher exits, or
// timeout passes.
func (w *Watcher) WaitOutput(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if bytes.Contains(w.out.Bytes(), []byte(substr)) {
			return nil
		}
		select {
		case <-w.exited:
			if bytes.Contains(w.out.Bytes(), []byte(substr)) {
				return nil
			}
			return fmt.Errorf("the watcher exited (%v) before it printed %q", w.waitErr, substr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the watcher did not print %q within %v", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Lines returns the lines of Output that contain substr.
func (w *Watcher) Lines(substr string) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(w.out.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// Done is closed once the watcher process has exited.
func (w *Watcher) Done() <-chan struct{} { return w.exited }

// Err is the watcher's exit status once Done is closed (nil for exit 0).
func (w *Watcher) Err() error {
	select {
	case <-w.exited:
		return w.waitErr
	default:
		return nil
	}
}

// Signal sends sig to the watcher process alone (not its group), as `docker
// stop` signals a container's first process. The watcher has no handler for
// SIGTERM or SIGINT: it dies and leaves a running command behind (Stop
// still kills that command, which stays in the watcher's process group).
// After a Signal, Died no longer reports the watcher's exit.
func (w *Watcher) Signal(sig syscall.Signal) error {
	w.signaled.Store(true)
	return syscall.Kill(w.pid, sig)
}

// Died returns "" while the watcher runs as it should; once it has exited
// without Stop or Signal (for a one-message watcher: exited with an
// error), it says how, with the end of its output.
func (w *Watcher) Died() string {
	select {
	case <-w.exited:
	default:
		return ""
	}
	if w.stopped.Load() || w.signaled.Load() || (w.oneShot && w.waitErr == nil) {
		return ""
	}
	return fmt.Sprintf("the watcher (pid %d) exited (%v); the end of its output:\n%s", w.pid, w.waitErr, tail(w.out.Bytes(), 3000))
}

// Stop kills the watcher's process group (the watcher and every command
// it runs) with SIGKILL, waits for the watcher and removes its volume. A
// message it was running stays in flight until its visibility runs out.
// Safe to call twice.
func (w *Watcher) Stop() {
	w.stopOnce.Do(func() {
		w.stopped.Store(true)
		_ = syscall.Kill(-w.pid, syscall.SIGKILL)
		w.lifeline.Close()
		<-w.exited
		os.RemoveAll(w.Volume)
	})
}
