// Package deadletter is wp's dead-letter sweep: it reads a watchbot
// dead-letter queue once and ends what the messages there left undone. A
// map message lands there when its part was never recorded on any of its
// receives: most often its worker was killed on the last one (a container
// out of memory, an ECS stop past its grace period, a Spot interruption),
// and nothing gave the part up. The sweep gives such parts up (reason
// "dead-lettered"), and the job then ends by its tolerance as after any
// give-up: it reduces, or fails, or sends its reduce for the failure. A
// reduce message there means a reduce command never finished: the sweep
// reports it and, when asked, publishes it again.
//
// Messages the sweep handled are deleted; messages of jobs the store does
// not know, or that are not wp's, are left in the queue and listed. The
// sweep is safe beside another sweep (SQS hands each message to one
// receiver at a time) and beside late workers (a give-up of a part that a
// duplicate delivery completed meanwhile changes nothing, and counts
// nothing twice).
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/worker"
)

// Queue is what the sweep needs of SQS.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Publisher re-publishes a reduce message.
type Publisher interface {
	Publish(ctx context.Context, subject, body string) error
}

// Options say how to sweep.
type Options struct {
	QueueURL string
	// DryRun: say what would be done; change nothing (messages are made
	// visible again at once).
	DryRun bool
	// RepublishReduce: publish again the reduce messages of jobs whose
	// reduce never finished, and delete them.
	RepublishReduce bool
	// Max is how many messages to read at most (0: until the queue is
	// empty).
	Max int
	// Visibility is how long a message read is hidden from other readers
	// while the sweep handles it (default 60s).
	Visibility time.Duration
	// Wait is each receive's long poll (default 2s): the sweep ends at the
	// first receive that finds nothing.
	Wait time.Duration
	// Fields are the message fields holding the job and part ids.
	Fields worker.FieldNames
}

// Action is what the sweep did (or would do) with one message.
type Action string

// The actions.
const (
	GaveUp       Action = "given up"           // a part (or parts) given up; message deleted
	AlreadyEnded Action = "already ended"      // its parts had ended (or the job): message deleted
	Republished  Action = "reduce republished" // message deleted
	ReduceDone   Action = "reduce done"        // the job was reduced: message deleted
	ReduceLeft   Action = "reduce not finished"
	UnknownJob   Action = "unknown job"      // left in the queue
	NotWP        Action = "not a wp message" // left in the queue
	Failed       Action = "error"            // left in the queue
)

// Left says whether the message stays in the queue.
func (a Action) Left() bool {
	switch a {
	case ReduceLeft, UnknownJob, NotWP, Failed:
		return true
	}
	return false
}

// Report is one message the sweep read.
type Report struct {
	MessageID    string    `json:"message_id"`
	Action       Action    `json:"action"`
	DryRun       bool      `json:"dry_run"`
	JobID        string    `json:"jobid,omitempty"`
	Subject      string    `json:"subject,omitempty"`
	Parts        []int64   `json:"parts,omitempty"`
	GivenUp      []int64   `json:"given_up,omitempty"`
	ReceiveCount int       `json:"receive_count"`
	Sent         time.Time `json:"sent"`
	Detail       string    `json:"detail,omitempty"`
	// JobFailed: a give-up of this message failed the job (past its
	// tolerance); JobEnded: one ended it (every part ended).
	JobFailed bool `json:"job_failed,omitempty"`
}

// ParseQueueURL checks that u is an SQS queue URL
// (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or a local emulator's
// http://HOST:PORT/ACCOUNT/NAME) and returns its region when the host
// tells one.
func ParseQueueURL(u string) (region string, err error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return "", fmt.Errorf("%q is not an SQS queue URL (want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", u)
	}
	segs := strings.Split(strings.Trim(p.Path, "/"), "/")
	if len(segs) != 2 || segs[0] == "" || segs[1] == "" {
		return "", fmt.Errorf("%q is not an SQS queue URL: its path must be /ACCOUNT/QUEUE (want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", u)
	}
	labels := strings.Split(p.Hostname(), ".")
	if len(labels) >= 2 && labels[0] == "sqs" {
		region = labels[1]
	}
	return region, nil
}

// DeadLetterURL is the URL of the dead-letter queue of the work queue
// queueURL, from its RedrivePolicy (what watchbot's stack sets), for a
// sweep run beside the workers with their QueueUrl.
func DeadLetterURL(ctx context.Context, client interface {
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}, queueURL string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		return "", fmt.Errorf("read the redrive policy of %s: %w", queueURL, err)
	}
	var rp struct {
		Target string `json:"deadLetterTargetArn"`
	}
	raw := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if raw == "" || json.Unmarshal([]byte(raw), &rp) != nil || rp.Target == "" {
		return "", fmt.Errorf("queue %s has no dead-letter queue (no RedrivePolicy): give --queue", queueURL)
	}
	arn := strings.Split(rp.Target, ":")
	if len(arn) != 6 || arn[2] != "sqs" {
		return "", fmt.Errorf("queue %s: its dead-letter target %q is not an SQS queue ARN", queueURL, rp.Target)
	}
	u, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(arn[5]), QueueOwnerAWSAccountId: aws.String(arn[4])})
	if err != nil {
		return "", fmt.Errorf("find the dead-letter queue %s: %w", rp.Target, err)
	}
	return aws.ToString(u.QueueUrl), nil
}

// Sweeper reads one dead-letter queue.
type Sweeper struct {
	Queue  Queue
	Store  *backends.Store
	Engine *worker.Runner
	Pub    Publisher
	Opt    Options
	// Log gets the engine's lines (a reduce sent, a claim held).
	Log *slog.Logger
}

// Run reads the queue until a receive finds nothing (or Max messages), and
// calls report with each message's Report as it is handled. The error is
// only for what stops the sweep: the queue cannot be read.
func (s *Sweeper) Run(ctx context.Context, report func(Report)) error {
	vis := s.Opt.Visibility
	if vis <= 0 {
		vis = time.Minute
	}
	wait := s.Opt.Wait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	seen := map[string]bool{}
	var keep []types.Message // left in the queue: visible again at the end
	defer func() {
		for _, m := range keep {
			// Best effort: visible again at once, for the next reader.
			s.Queue.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(s.Opt.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
		}
	}()
	n := 0
	for s.Opt.Max == 0 || n < s.Opt.Max {
		batch := int32(10)
		if s.Opt.Max > 0 {
			batch = int32(min(10, s.Opt.Max-n))
		}
		out, err := s.Queue.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(s.Opt.QueueURL),
			MaxNumberOfMessages: batch,
			WaitTimeSeconds:     int32(wait / time.Second),
			VisibilityTimeout:   int32(vis / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
				types.MessageSystemAttributeNameSentTimestamp,
			},
		})
		if err != nil {
			return fmt.Errorf("read the dead-letter queue %s: %w", s.Opt.QueueURL, err)
		}
		if len(out.Messages) == 0 {
			return nil
		}
		fresh := 0
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if seen[id] {
				keep = append(keep, m) // seen already: its visibility ran out meanwhile
				continue
			}
			seen[id] = true
			fresh++
			n++
			r := s.handle(ctx, m)
			if r.Action.Left() || s.Opt.DryRun {
				keep = append(keep, m)
			} else if _, err := s.Queue.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.Opt.QueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				r.Detail = strings.TrimPrefix(r.Detail+"; ", "; ") + "the message could not be deleted (the next sweep finds it again, harmlessly): " + err.Error()
			}
			report(r)
		}
		if fresh == 0 {
			return nil // only messages read before: the queue holds no more
		}
	}
	return nil
}

// envelope is the SNS notification that SQS holds for a topic's message.
type envelope struct {
	Type    string  `json:"Type"`
	Message *string `json:"Message"`
	Subject *string `json:"Subject"`
}

// handle decides what one message comes to, and does it unless DryRun.
func (s *Sweeper) handle(ctx context.Context, m types.Message) Report {
	r := Report{MessageID: aws.ToString(m.MessageId), DryRun: s.Opt.DryRun}
	r.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		r.Sent = time.UnixMilli(ms).UTC()
	}
	d := worker.Delivery{Message: aws.ToString(m.Body)}
	var env envelope
	if json.Unmarshal([]byte(d.Message), &env) == nil && env.Type == "Notification" && env.Message != nil {
		d.Message = *env.Message
		if env.Subject != nil {
			d.Subject = *env.Subject
		}
	}
	r.Subject = d.Subject
	msg, err := worker.ParseDelivery(d, s.Opt.Fields)
	if err != nil {
		r.Action, r.Detail = NotWP, err.Error()
		return r
	}
	r.JobID, r.Subject = msg.JobID, msg.Subject
	if msg.Subject == worker.SubjectMap {
		r.Parts = msg.Parts()
	}
	job, err := s.Store.Peek(ctx, msg.JobID)
	switch {
	case errors.Is(err, backends.ErrNotFound):
		r.Action, r.Detail = UnknownJob, "the progress store has no job "+msg.JobID
		return r
	case err != nil:
		r.Action, r.Detail = Failed, err.Error()
		return r
	}
	if msg.Subject == worker.SubjectReduce {
		return s.reduce(ctx, r, job, d)
	}
	for _, p := range r.Parts {
		if !job.HasPart(p) {
			r.Action, r.Detail = NotWP, fmt.Sprintf("part %d is not a part of job %s (parts %d to %d)", p, job.ID, job.FirstPart, job.LastPart())
			return r
		}
	}
	if job.Failed {
		r.Action, r.Detail = AlreadyEnded, "the job has failed: "+job.Error
		return r
	}
	states, err := s.Store.PartStates(ctx, job.ID, r.Parts)
	if err != nil {
		r.Action, r.Detail = Failed, err.Error()
		return r
	}
	var pending []int64
	for i, st := range states {
		if st == backends.PartPending {
			pending = append(pending, r.Parts[i])
		}
	}
	if len(pending) == 0 {
		r.Action, r.Detail = AlreadyEnded, "every part of the message had ended (a later delivery, or an earlier sweep)"
		if job.Remaining == 0 && !job.ReduceSent && !s.Opt.DryRun {
			// The message was its job's last chance to send a reduce
			// that a dying finisher left unsent.
			lg := s.Log
			if lg == nil {
				lg = slog.New(slog.DiscardHandler)
			}
			if res := s.Engine.EnsureReduce(ctx, lg, job); res.Outcome != worker.Completed {
				r.Action, r.Detail = Failed, fmt.Sprintf("every part has ended, and the job's reduce could not be sent (%v): the message stays for the next sweep", res.Outcome)
			} else {
				r.Detail += "; the job's missing reduce was sent"
			}
		}
		return r
	}
	r.Action, r.GivenUp = GaveUp, pending
	if s.Opt.DryRun {
		r.Detail = fmt.Sprintf("would give up %s", partWords(pending))
		return r
	}
	reason := fmt.Sprintf("dead-lettered: message %s, sent %s, was received %d times and no worker recorded the part", r.MessageID, r.Sent.Format(time.RFC3339), r.ReceiveCount)
	var given []int64
	for _, p := range pending {
		res := s.Engine.GiveUpPart(ctx, job, p, backends.GiveUpInfo{ReceiveCount: r.ReceiveCount, Reason: reason})
		switch res.Outcome {
		case worker.GaveUp:
			if !res.Duplicate {
				given = append(given, p)
			}
			r.JobFailed = r.JobFailed || res.JobFailed
		case worker.Skipped: // the job failed meanwhile: it has ended
		default:
			r.Action, r.Detail = Failed, fmt.Sprintf("giving up part %d: %v", p, res.Err)
			r.GivenUp = given
			return r
		}
		if res.JobFailed {
			break // later parts are skipped, as after any give-up past the tolerance
		}
	}
	r.GivenUp = given
	if len(given) == 0 {
		r.Action, r.Detail = AlreadyEnded, "its parts ended while the sweep ran"
	}
	if r.JobFailed {
		r.Detail = "more parts given up than the job tolerates: the job has failed"
	}
	return r
}

// reduce handles a dead-lettered reduce message: a job reduced since needs
// nothing; one whose reduce never finished is reported, and published again
// when asked.
func (s *Sweeper) reduce(ctx context.Context, r Report, job backends.Status, d worker.Delivery) Report {
	switch {
	case job.Reduced:
		r.Action, r.Detail = ReduceDone, "the job's reduce has finished since"
		return r
	case job.Failed && !job.ReduceOnFailure:
		r.Action, r.Detail = AlreadyEnded, "the job has failed: it has no reduce to run"
		return r
	case !s.Opt.RepublishReduce:
		r.Action, r.Detail = ReduceLeft, "the job's reduce command never finished: publish it again with --republish-reduce"
		return r
	}
	r.Action = Republished
	if s.Opt.DryRun {
		r.Detail = "would publish the reduce message again"
		return r
	}
	if s.Pub == nil {
		r.Action, r.Detail = Failed, "no SNS topic to publish the reduce to: set --topic or WorkTopic"
		return r
	}
	if err := s.Pub.Publish(ctx, worker.SubjectReduce, d.Message); err != nil {
		r.Action, r.Detail = Failed, "publish the reduce again: "+err.Error()
	}
	return r
}

func partWords(parts []int64) string {
	if len(parts) == 1 {
		return "part " + strconv.FormatInt(parts[0], 10)
	}
	return fmt.Sprintf("parts %d to %d (%d)", parts[0], parts[len(parts)-1], len(parts))
}
