package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/internal/awslog"
	"github.com/wp-tools/wp/internal/deadletter"
	"github.com/wp-tools/wp/internal/publish"
	"github.com/wp-tools/wp/internal/worker"
)

func deadLetterCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:  "dead-letter",
		Usage: "end what the messages in a watchbot dead-letter queue left undone (run it on a schedule)",
		Description: `Reads a watchbot dead-letter queue once, then exits (for a cron, a scheduled ECS
task or a Lambda). A map message there is one whose part no worker recorded on
any of its receives (its worker was killed on the last one: out of memory, an
ECS stop, a Spot interruption): each of its parts still pending is given up
(reason "dead-lettered", with the message's receive count and sent time), and
the job then ends by its tolerance, as after any give-up: it reduces, or
fails (and sends its reduce too with --reduce-on-failure). A reduce message
of a job whose reduce never finished is listed, and published again with
--republish-reduce. Messages it handled are deleted; messages of jobs the
store does not know, or not wp's, are left in the queue and listed.

The queue is --queue, else WP_DEAD_LETTER_QUEUE, else the dead-letter queue
of watchbot's QueueUrl (its RedrivePolicy). Safe to run beside itself and
beside workers: a part completed meanwhile stays completed.

AWS permissions: sqs:ReceiveMessage, sqs:DeleteMessage,
sqs:ChangeMessageVisibility on the dead-letter queue (and sqs:GetQueueAttributes
and sqs:GetQueueUrl when it is found from QueueUrl); the store's, as for wp
run; sns:Publish for a reduce it sends.

Output: one line a message (message id, what was done, job, parts, why);
--json: one JSON object a line.

Exit codes: 0 swept (messages left in the queue are listed, not errors); 1 the
queue or the store could not be read; 2 wrong command line (a --queue that is
not an SQS queue URL).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "queue", Usage: "the dead-letter queue's URL (default: the dead-letter queue of $QueueUrl)", EnvVars: []string{"WP_DEAD_LETTER_QUEUE"}},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "say what would be done; change nothing"},
			&cli.BoolFlag{Name: "republish-reduce", Usage: "publish again the reduce messages of jobs whose reduce never finished"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object a message"},
			&cli.IntFlag{Name: "max", Usage: "read at most this many messages (default: until the queue is empty)"},
			&cli.DurationFlag{Name: "visibility", Value: time.Minute, Usage: "how long each message read is hidden from other readers while it is handled"},
			&cli.StringFlag{Name: "jobid-field", Value: worker.DefaultFields.JobID, Usage: "the message field that holds the job id", EnvVars: []string{"WP_JOBID_FIELD"}},
			&cli.StringFlag{Name: "partid-field", Value: worker.DefaultFields.PartID, Usage: "the message field that holds the part id", EnvVars: []string{"WP_PARTID_FIELD"}},
			progressFlag(),
			topicFlag(),
		},
		Action: a.deadLetterAction,
	}
}

func (a *appState) deadLetterAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("dead-letter takes no arguments, got %q (the queue is --queue URL)", c.Args().First())
	}
	if c.Int("max") < 0 {
		return usageError("--max %d: want 0 (every message) or more", c.Int("max"))
	}
	if c.Duration("visibility") < time.Second || c.Duration("visibility") > 12*time.Hour {
		return usageError("--visibility %v: want a duration from 1s to 12h", c.Duration("visibility"))
	}
	fields := worker.FieldNames{JobID: c.String("jobid-field"), PartID: c.String("partid-field")}
	queue := c.String("queue")
	src := "--queue"
	if queue == "" {
		queue, src = os.Getenv("QueueUrl"), "QueueUrl"
		if queue == "" {
			return usageError("no dead-letter queue: give --queue URL (or WP_DEAD_LETTER_QUEUE, or run beside watchbot's QueueUrl)")
		}
	} else if !c.IsSet("queue") || os.Getenv("WP_DEAD_LETTER_QUEUE") == queue {
		src = "WP_DEAD_LETTER_QUEUE"
	}
	region, err := deadletter.ParseQueueURL(queue)
	if err != nil {
		return usageError("%s: %v", src, err)
	}
	ctx := c.Context
	client, err := sqsClient(ctx, region)
	if err != nil {
		return err
	}
	if src == "QueueUrl" {
		if queue, err = deadletter.DeadLetterURL(ctx, client, queue); err != nil {
			return err
		}
	}
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	lg := a.logger()
	var pub *publish.Lazy
	if c.String("topic") != "" {
		pub = publish.NewLazy(c.String("topic"))
	}
	engine := worker.New(st, publish.NewLazy(c.String("topic")), worker.Options{
		ReduceLease:  defaultReduceLease,
		ClaimWait:    reduceClaimWait,
		ThrottleWait: defaultThrottleWait,
		Fields:       fields,
		Log:          lg,
	})
	sw := &deadletter.Sweeper{Queue: client, Store: st, Engine: engine, Log: lg, Opt: deadletter.Options{
		QueueURL: queue, DryRun: c.Bool("dry-run"), RepublishReduce: c.Bool("republish-reduce"),
		Max: c.Int("max"), Visibility: c.Duration("visibility"), Fields: fields,
	}}
	if pub != nil {
		sw.Pub = pub
	}
	counts := map[deadletter.Action]int{}
	left := 0
	out := c.App.Writer
	err = sw.Run(ctx, func(r deadletter.Report) {
		counts[r.Action]++
		if r.Action.Left() {
			left++
		}
		if c.Bool("json") {
			b, _ := json.Marshal(r)
			fmt.Fprintln(out, string(b))
			return
		}
		action := string(r.Action)
		if r.DryRun && !r.Action.Left() {
			action = "would be: " + action
		} else if r.Action.Left() {
			action += " (left in the queue)"
		}
		fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\n", r.MessageID, action, orDash(r.JobID), partsWords(r), r.Detail)
	})
	var words []string
	for _, k := range []deadletter.Action{deadletter.GaveUp, deadletter.AlreadyEnded, deadletter.Republished, deadletter.ReduceDone, deadletter.ReduceLeft, deadletter.UnknownJob, deadletter.NotWP, deadletter.Failed} {
		if counts[k] > 0 {
			words = append(words, fmt.Sprintf("%s %d", k, counts[k]))
		}
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	summary := "dead-letter sweep"
	if c.Bool("dry-run") {
		summary = "dead-letter sweep (dry run: nothing changed)"
	}
	lg.Info(summary, "queue", queue, "messages", total, "left_in_queue", left, "outcomes", strings.Join(words, ", "))
	if err != nil {
		return err
	}
	if counts[deadletter.Failed] > 0 {
		return fmt.Errorf("%d messages could not be handled (the store could not be read or written): they stay in the queue", counts[deadletter.Failed])
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func partsWords(r deadletter.Report) string {
	switch {
	case len(r.Parts) == 0 && r.Subject == worker.SubjectReduce:
		return "reduce"
	case len(r.Parts) == 0:
		return "-"
	case len(r.Parts) == 1:
		return fmt.Sprintf("part %d", r.Parts[0])
	}
	return fmt.Sprintf("parts %d-%d", r.Parts[0], r.Parts[len(r.Parts)-1])
}

// sqsClient is an SQS client from the standard AWS configuration
// (AWS_ENDPOINT_URL_SQS included), in the queue's region when none is
// configured.
func sqsClient(ctx context.Context, region string) (*sqs.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithLogger(awslog.Logger()))
	if err != nil {
		return nil, fmt.Errorf("load aws configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = region
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.RetryMaxAttempts = 4 }), nil
}
