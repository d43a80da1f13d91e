package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/publish"
	"github.com/wp-tools/wp/internal/worker"
)

const (
	// reduceClaimWait is how long wp run waits for another worker that
	// holds the reduce claim to record the reduce as sent.
	reduceClaimWait = 5 * time.Second
	// defaultMaxReceives is watchbot's default deadLetterThreshold.
	defaultMaxReceives = 10
	// defaultThrottleWait bounds the retries of a throttled completion:
	// well under the 180 s of visibility that watchbot's heartbeat keeps
	// giving a message while its command runs.
	defaultThrottleWait = time.Minute
)

// runOutcome is what wp run does at the end of its one delivery: the code
// it exits with, and what watchbot then does with the message (the
// README's exit-code table), said when it is not the plain success.
type runOutcome struct {
	exit func(worker.Result) int
	next string
}

var (
	exitZero    = func(worker.Result) int { return exitOK }
	exitAsCmd   = func(res worker.Result) int { return res.Status }
	exitPoison  = func(worker.Result) int { return exitDrop }
	exitToRetry = func(worker.Result) int { return exitRetry }
)

var runOutcomes = map[worker.Outcome]runOutcome{
	worker.Completed:   {exitZero, ""},
	worker.Finished:    {exitZero, ""},
	worker.AlreadyDone: {exitZero, ""},
	worker.Skipped:     {exitZero, ""},
	worker.Reduced:     {exitZero, ""},
	// A fail-job code passes through: 3 makes watchbot delete the
	// message, another code is retried and the retry skips the part.
	worker.FailedJob:     {exitAsCmd, "the job has failed"},
	worker.CommandFailed: {exitAsCmd, "the message will be retried"},
	worker.CannotStart:   {exitAsCmd, "the message will be retried"},
	// Exit as the command did, so that the message still goes to the
	// dead-letter queue once its receives are used up.
	worker.GaveUp: {exitAsCmd, "the part is given up; the message goes back to the queue, and to its dead-letter queue once its receives are used up"},
	// Nothing was recorded: never 0, so that the message is retried.
	worker.Interrupted: {func(res worker.Result) int {
		if res.Status != 0 {
			return res.Status
		}
		if sig, ok := res.Signal.(syscall.Signal); ok {
			return exitSignalBase + int(sig)
		}
		return exitSignalBase + int(syscall.SIGTERM)
	}, "the message will be retried"},
	worker.Dropped:     {exitPoison, "watchbot deletes the message"},
	worker.Unavailable: {exitToRetry, "the message will be retried"},
	worker.ClaimHeld:   {exitToRetry, "the message will be retried"},
}

// runEnd is wp run's exit for res, and the line saying what follows (with
// receive, the receive count and --max-receives).
func runEnd(lg *slog.Logger, res worker.Result, receive ...any) error {
	o, ok := runOutcomes[res.Outcome]
	if !ok {
		o = runOutcome{exitToRetry, "the message will be retried"}
	}
	code := o.exit(res)
	if code != exitOK && o.next != "" {
		lg.Info(fmt.Sprintf("exit %d: %s", code, o.next), receive...)
	}
	return exitSilently(code)
}

func runCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a worker command for one watchbot message and record the outcome",
		ArgsUsage: "-- CMD [ARGS...]",
		Description: `Reads the message watchbot hands the worker: Message (JSON with jobid and
partid) and Subject (map or reduce). Runs CMD as a child process with stdin,
stdout and stderr passed through and the environment inherited, plus:

   WP_JOB_ID, WP_PART_ID, WP_SUBJECT
   WP_PART_<FIELD>   each top-level string, number or boolean field of the part
                     (upper-cased; characters other than A-Z, 0-9 and _ become _);
                     WP_PART_ID is always the part number: a field "id" is
                     WP_PART_FIELD_ID. Every field is in Message.
   WP_METADATA       (reduce) the job's metadata as JSON

Subject=map:
   the job has failed        CMD is not run; the part is skipped; exit 0
   CMD exits 0               the part is completed; the completion that finishes
                             the job publishes Subject=reduce {"jobid","metadata"}
   CMD exits a --fail-job-on code
                             the job is failed (later parts are skipped); exit
                             with CMD's code
   CMD exits any other code  nothing is recorded; exit with CMD's code (retry)
Subject=reduce: CMD runs with WP_SUBJECT=reduce; exit 0 records the job as reduced.

A batch message (wp create --batch) carries several consecutive parts: CMD runs
once per part still pending, in part order (--jobs N: N side by side), each
with the environment it would have had in a message of its own; the parts that
exited 0 are recorded in one write. If any part failed, wp exits with the first
failing part's code and the retry runs only the parts still pending; on the
last receive (--max-receives) each part still failing is given up.

A completion the store refuses for throughput (DynamoDB throttling, a busy
Redis) is tried again for --throttle-wait before wp gives up with exit 75.

If every part is already complete but the reduce was never sent (the finisher
crashed or could not publish), any later delivery of a part sends it.

Signals: SIGTERM, SIGINT and SIGHUP are forwarded to CMD's process group; wp
waits for it (SIGKILL after --grace), records nothing and exits with CMD's
status (128+N if CMD was killed by signal N, or if it exited 0 after the signal).

Exit codes:
   CMD's own code  as above (128+N when CMD was killed by signal N)
   0    the part was skipped (job failed) or already complete
   2    wrong command line, or a bad value in a flag's env var (WP_GRACE,
        WP_REDUCE_LEASE, WP_FAIL_JOB_ON): CMD is not run; watchbot retries
   3    the message can never succeed (no Message, not JSON, bad jobid or
        partid, no such job): watchbot drops it
   75   the store or SNS could not be reached, before CMD ran (CMD is then not
        run) or while recording its result; the store is misconfigured (bad
        URL or WP_STORE_TIMEOUT); or every part is complete and another worker
        has held the reduce claim for 5s without recording the reduce as sent
        (it may have died): watchbot retries the message
   126, 127  CMD could not be started (not executable, not found)`,
		Flags: []cli.Flag{
			failJobOnFlag(),
			graceFlag("WP_GRACE"),
			&cli.DurationFlag{Name: "reduce-lease", Value: defaultReduceLease, Usage: "how long a worker holds the right to publish the reduce before another may", EnvVars: []string{"WP_REDUCE_LEASE"}},
			&cli.IntFlag{Name: "max-receives", Value: defaultMaxReceives, Usage: "give a part up when its command fails on this receive of its message (ApproximateReceiveCount) or later: set it to the queue's deadLetterThreshold; 0: never", EnvVars: []string{"WP_MAX_RECEIVES"}},
			&cli.StringFlag{Name: "jobid-field", Value: worker.DefaultFields.JobID, Usage: "the message field that holds the job id", EnvVars: []string{"WP_JOBID_FIELD"}},
			&cli.StringFlag{Name: "partid-field", Value: worker.DefaultFields.PartID, Usage: "the message field that holds the part id", EnvVars: []string{"WP_PARTID_FIELD"}},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: 1, Usage: "for a batch message: parts run side by side (default: one after another, in part order)", EnvVars: []string{"WP_JOBS"}},
			&cli.DurationFlag{Name: "throttle-wait", Value: defaultThrottleWait, Usage: "how long a completion the store refuses for throughput (throttling) is tried again before wp gives up (exit 75): keep it under the queue's visibility timeout", EnvVars: []string{"WP_THROTTLE_WAIT"}},
			progressFlag(),
			topicFlag(),
		},
		Action: a.runAction,
	}
}

func (a *appState) runAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usageError("wp run needs a command: wp run [flags] -- CMD [ARGS...]")
	}
	failOn, err := worker.ParseCodeSet(c.String("fail-job-on"))
	if err != nil {
		return usageError("--fail-job-on: %v", err)
	}
	if c.Duration("grace") <= 0 || c.Duration("reduce-lease") <= 0 {
		return usageError("--grace and --reduce-lease must be positive")
	}
	if c.Int("jobs") < 1 {
		return usageError("--jobs %d: want at least 1", c.Int("jobs"))
	}
	if c.Duration("throttle-wait") < 0 {
		return usageError("--throttle-wait must not be negative")
	}
	if c.Int("max-receives") < 0 {
		return usageError("--max-receives %d: want 0 (never give a part up) or the number of receives after which the queue moves a message to its dead-letter queue (watchbot's deadLetterThreshold, default 10)", c.Int("max-receives"))
	}
	fields := worker.FieldNames{JobID: c.String("jobid-field"), PartID: c.String("partid-field")}
	if fields.JobID == "" || fields.PartID == "" || fields.JobID == fields.PartID {
		return usageError("--jobid-field and --partid-field must be two different, non-empty field names")
	}
	lg := a.logger()
	d, badCount := worker.DeliveryFromEnv(os.Getenv)
	if badCount != "" {
		lg.Warn(worker.EnvReceiveCount+" is not a number: the part will not be given up on this receive", "value", badCount)
	}
	// The last receive wp is told of: watchbot's queue moves the message
	// to its dead-letter queue after it.
	d.Last = c.Int("max-receives") > 0 && d.ReceiveCount >= c.Int("max-receives")
	// A poison message is dropped before touching the store.
	m, err := worker.ParseDelivery(d, fields)
	if err != nil {
		msg := "dropping message: " + err.Error()
		var pe *worker.PoisonError
		if errors.As(err, &pe) && pe.Missing != "" {
			msg += fmt.Sprintf("; --%s-field names another field", map[bool]string{true: "jobid", false: "partid"}[pe.Missing == fields.JobID])
		}
		lg.Error(msg)
		return exitSilently(exitDrop)
	}
	// Catch signals from now on, so none kills wp before the child runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	st, err := a.openStore(c)
	if err != nil {
		// A store that cannot be opened, or is misconfigured: keep the
		// message, so it runs once the store or its setting is fixed.
		lg.Error("cannot open the progress store; the command was not run and the message will be retried", "error", err.Error())
		return exitSilently(exitRetry)
	}
	defer st.Close()
	r := worker.New(st, publish.NewLazy(c.String("topic")), worker.Options{
		FailJobOn:    failOn,
		Grace:        c.Duration("grace"),
		ReduceLease:  c.Duration("reduce-lease"),
		ClaimWait:    reduceClaimWait,
		Fields:       fields,
		Jobs:         c.Int("jobs"),
		ThrottleWait: c.Duration("throttle-wait"),
		Log:          lg,
	})
	spec := child.Spec{Argv: argv, Env: os.Environ(), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	return runEnd(lg.With(m.LogAttrs()...), r.Handle(c.Context, d, spec, sigs), "receive_count", d.ReceiveCount, "max_receives", c.Int("max-receives"))
}
