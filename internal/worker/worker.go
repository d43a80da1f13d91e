// Package worker is wp's part engine: what handling one watchbot message
// means, shared by `wp run` (one message per process) and `wp local` (a
// whole job in one process). It parses the message, reads the job, runs the
// command (package child), and records the outcome in the progress store:
// exit 0 completes the part, and the completion that finishes the job sends
// the reduce through the exactly-once claim protocol (EnsureReduce); a
// fail-job code fails the job; anything else records nothing.
//
// The engine holds no process exit codes and no caller's words: Handle
// returns a Result whose Outcome says what happened, and its log lines say
// what it did, never what happens next. Each caller maps the Result (wp run
// to its exit code, the local runner to its retries and counters) and says
// what follows.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
)

// Publisher sends one message: wp run sends the reduce through SNS, wp
// local keeps it for itself.
type Publisher interface {
	Publish(ctx context.Context, subject, body string) error
}

// Outcome is what handling one delivery came to.
type Outcome int

const (
	// Completed: the command exited 0 and the part is recorded complete
	// (a duplicate delivery of a complete part included).
	Completed Outcome = iota + 1
	// Finished: Completed, and this completion finished the job; the
	// reduce was sent (or another worker had already sent it).
	Finished
	// AlreadyDone: every part was already complete, so the command did
	// not run; the reduce is sent if it was not.
	AlreadyDone
	// Skipped: the job has failed (or, for a reduce, was already
	// reduced): the command did not run, or ran while the job failed and
	// nothing was recorded.
	Skipped
	// FailedJob: the command exited with a fail-job code and the job is
	// now failed.
	FailedJob
	// Reduced: the reduce command exited 0 and the job is recorded as
	// reduced.
	Reduced
	// CommandFailed: the command exited non-zero (not a fail-job code):
	// nothing is recorded.
	CommandFailed
	// CannotStart: the command could not be started (Err says why;
	// Status is 127 when there is no such command, else 126, as a shell
	// reports it).
	CannotStart
	// Interrupted: a signal was forwarded to the command: nothing is
	// recorded, whatever it exited with.
	Interrupted
	// Dropped: the message can never succeed (not wp's, no such job, part
	// out of range): the command did not run.
	Dropped
	// Unavailable: the store or SNS could not be reached, before the
	// command ran (it then did not run) or after (its result may not be
	// recorded, or the reduce not sent). Err says what failed.
	Unavailable
	// ClaimHeld: every part is complete, and another worker has held the
	// reduce claim for Options.ClaimWait without recording the reduce as
	// sent (it may have died). Retrying later lets the reduce be sent once
	// its claim runs out.
	ClaimHeld
	// GaveUp: the command failed on the part's last delivery
	// (Delivery.Last): the part is recorded as given up. Status and
	// NotFound are as for CommandFailed or CannotStart.
	GaveUp
)

var outcomeNames = map[Outcome]string{
	Completed: "completed", Finished: "finished", AlreadyDone: "already done", Skipped: "skipped",
	FailedJob: "failed the job", Reduced: "reduced", CommandFailed: "command failed",
	CannotStart: "cannot start", Interrupted: "interrupted", Dropped: "dropped",
	Unavailable: "store or SNS unavailable", ClaimHeld: "reduce claim held", GaveUp: "given up",
}

func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what Handle did.
type Result struct {
	Outcome Outcome
	// Ran: the command was started.
	Ran bool
	// Status is the command's exit status when it ran (128+N when killed
	// by signal N), or 126 or 127 when it could not start.
	Status int
	// Signal is the signal forwarded to the command (Interrupted).
	Signal os.Signal
	// NotFound: CannotStart because there is no such command (rather
	// than one that cannot be executed).
	NotFound bool
	// Recorded: the part's completion is in the store (Completed,
	// Finished; also Unavailable when only the reduce could not be sent).
	Recorded bool
	// Err is what went wrong (Dropped, Unavailable, CannotStart).
	Err error
	// JobFailed: this delivery failed the job (a fail-job code, or a
	// give-up past the job's tolerance).
	JobFailed bool
	// Duplicate: GaveUp of a part that had ended already (nothing
	// changed).
	Duplicate bool
	// Parts is what became of each part of a batch message (nil for a
	// plain map message or a reduce).
	Parts []PartResult
}

// PartResult is what became of one part of a batch message: its Outcome
// (Completed, Skipped when it had ended already or the job failed,
// CommandFailed, CannotStart, GaveUp, FailedJob, Interrupted, or not run:
// 0) and its command's Status.
type PartResult struct {
	Part    int64
	Outcome Outcome
	Status  int
}

// Options are the part semantics a caller chooses.
type Options struct {
	// FailJobOn: the command's exit codes that fail the whole job.
	FailJobOn CodeSet
	// Grace: after a forwarded signal, how long the command has to exit
	// before SIGKILL.
	Grace time.Duration
	// ReduceLease: how long a worker holds the right to publish the
	// reduce; it gives up publishing after half of it.
	ReduceLease time.Duration
	// ClaimWait: when every part is complete and another worker holds the
	// reduce claim, how long to wait for it to record the reduce as sent
	// before reporting ClaimHeld. wp run waits (its message may be the
	// last chance to send a dead finisher's reduce); 0 reports Completed
	// at once (wp local: one process, whose claims are its own).
	ClaimWait time.Duration
	// Fields: the names of the message fields holding the job and part
	// ids.
	Fields FieldNames
	// ThrottleWait: how long a completion (or give-up, or failed job)
	// that the store refuses for throughput is tried again before the
	// delivery gives up as Unavailable. 0: not retried.
	ThrottleWait time.Duration
	// Jobs: how many parts of a batch message run side by side (0 or 1:
	// one after another, in part order).
	Jobs int
	// PartOutput, when set, gives each part of a batch message its own
	// stdout and stderr (wp local prefixes each part's lines), and done is
	// called once its command has exited; otherwise every part writes to
	// the delivery's.
	PartOutput func(part int64) (stdout, stderr io.Writer, done func())
	// Log gets what the engine does (one line per delivery, and
	// warnings and errors); never what the caller does next.
	Log *slog.Logger
}

// Runner handles deliveries against one store.
type Runner struct {
	store *backends.Store
	pub   Publisher
	opt   Options
}

// New returns a Runner.
func New(store *backends.Store, pub Publisher, opt Options) *Runner {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Fields.JobID == "" {
		opt.Fields.JobID = DefaultFields.JobID
	}
	if opt.Fields.PartID == "" {
		opt.Fields.PartID = DefaultFields.PartID
	}
	return &Runner{store: store, pub: pub, opt: opt}
}

// Handle runs one delivery: it parses the message, reads the job (one small
// read: Peek), runs the command and records the outcome. spec is the
// command; its environment gets the part's variables added (PartEnv).
// Signals received on sigs are forwarded to the command.
func (r *Runner) Handle(ctx context.Context, d Delivery, spec child.Spec, sigs <-chan os.Signal) Result {
	m, err := ParseDelivery(d, r.opt.Fields)
	if err != nil {
		r.opt.Log.Error("the message can never succeed: "+err.Error(), "subject", d.Subject)
		return Result{Outcome: Dropped, Err: err}
	}
	lg := r.log(m)
	var job backends.Status
	// A read refused for throughput is harmless to try again: nothing ran.
	err = r.persist(ctx, lg, "the job's read", func() (err error) {
		job, err = r.store.Peek(ctx, m.JobID)
		return err
	})
	if errors.Is(err, backends.ErrNotFound) {
		lg.Error("the message can never succeed: no such job")
		return Result{Outcome: Dropped, Err: err}
	}
	if err != nil {
		lg.Error("cannot read the job from the progress store: the command was not run", "error", err.Error())
		return Result{Outcome: Unavailable, Err: err}
	}
	return r.process(ctx, lg, job, m, d, spec, sigs)
}

// Process is Handle for a message already parsed, of a job the caller
// already read (wp local reads its job once, not before every part). A job
// failed since job was read is still caught, by the completion.
func (r *Runner) Process(ctx context.Context, job backends.Status, m Message, d Delivery, spec child.Spec, sigs <-chan os.Signal) Result {
	return r.process(ctx, r.log(m), job, m, d, spec, sigs)
}

func (r *Runner) log(m Message) *slog.Logger {
	return r.opt.Log.With(m.LogAttrs()...)
}

func (r *Runner) process(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, d Delivery, spec child.Spec, sigs <-chan os.Signal) Result {
	if m.Subject == SubjectReduce {
		return r.reduce(ctx, lg, job, m, spec, sigs)
	}
	if m.Batch != nil {
		return r.processBatch(ctx, lg, job, m, d, spec, sigs)
	}
	if !job.HasPart(m.Part) {
		err := fmt.Errorf("part %d is not a part of this job (parts %d to %d)", m.Part, job.FirstPart, job.LastPart())
		lg.Error("the message can never succeed: " + err.Error())
		return Result{Outcome: Dropped, Err: err}
	}
	if res, done := r.beforeParts(ctx, lg, job); done {
		return res
	}
	var tail *tailWriter
	if d.Last {
		// The last delivery: keep the end of stderr in case it fails.
		tail = &tailWriter{w: spec.Stderr}
		spec.Stderr = tail
	}
	res, lg, done := r.runCommand(ctx, lg, job, m, spec, sigs)
	if !done && res.Status != 0 {
		res.Outcome = CommandFailed
		done = true
	}
	// A command that failed by itself (a code, a signal not forwarded by
	// wp such as the kernel's SIGKILL, a command that cannot start) is
	// given up on the last delivery; an interrupted one is not: wp itself
	// was told to stop, and records nothing.
	if tail != nil && (res.Outcome == CommandFailed || res.Outcome == CannotStart) {
		return r.giveUp(ctx, lg, job, m, d, res, tail)
	}
	if done {
		if res.Outcome == CommandFailed {
			lg.Info("command failed: nothing recorded")
		}
		return res
	}
	return r.complete(ctx, lg, job, m, res)
}

// giveUp records the part as given up after its command failed on its last
// delivery, and sends the reduce when that ended the job (or failed it, for a
// job that wants its reduce then too).
func (r *Runner) giveUp(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, d Delivery, res Result, tail *tailWriter) Result {
	info := backends.GiveUpInfo{ExitCode: res.Status, ReceiveCount: d.ReceiveCount, Stderr: tail.String()}
	if res.Ran && res.Status > 128 && res.Status < 128+65 {
		info.Signal = unix.SignalName(syscall.Signal(res.Status - 128))
	}
	if res.Outcome == CannotStart && res.Err != nil && info.Stderr == "" {
		info.Stderr = res.Err.Error()
	}
	return r.recordGiveUp(ctx, lg, job, m.JobID, m.Part, info, res)
}

// GiveUpPart records part of job as given up without a command having run
// for it (the dead-letter sweep found its message: info.Reason says so),
// and ends the job as every give-up does: the reduce is sent when this ended
// the job within its tolerance, or the failed job's when it wants one. The
// Result is GaveUp (Duplicate in its log line when the part had ended
// already), or what kept it from being recorded.
func (r *Runner) GiveUpPart(ctx context.Context, job backends.Status, part int64, info backends.GiveUpInfo) Result {
	lg := r.opt.Log.With("jobid", job.ID, "subject", SubjectMap, "partid", part)
	res := r.recordGiveUp(ctx, lg, job, job.ID, part, info, Result{Outcome: Unavailable})
	if res.Outcome == Unavailable && res.Err == nil {
		res.Err = errors.New("the give-up could not be recorded")
	}
	return res
}

// recordGiveUp gives part up with info; res is the Result so far (the
// command's), returned as GaveUp once the give-up is recorded.
func (r *Runner) recordGiveUp(ctx context.Context, lg *slog.Logger, job backends.Status, jobID string, part int64, info backends.GiveUpInfo, res Result) Result {
	var comp backends.Completion
	err := r.persist(ctx, lg, "the give-up", func() (err error) {
		comp, err = r.store.GiveUp(ctx, jobID, part, info)
		return err
	})
	lead := "the part failed on its last delivery"
	if info.Reason != "" {
		lead = "the part was " + info.Reason
	}
	switch {
	case errors.Is(err, backends.ErrJobFailed):
		lg.Warn(lead + ", but the job has failed meanwhile: nothing recorded")
		if !res.Ran && res.Outcome == Unavailable { // GiveUpPart: the job has ended
			res.Outcome = Skipped
		}
		return res
	case err != nil:
		lg.Error(lead+", and giving it up could not be recorded: it stays pending", "error", err.Error(), "receive_count", info.ReceiveCount)
		if res.Outcome == Unavailable {
			res.Err = err
		}
		return res
	}
	res.Outcome = GaveUp
	why := "its command failed on its last delivery"
	if info.Reason != "" {
		why = info.Reason
	}
	switch {
	case comp.Duplicate:
		res.Duplicate = true
		lg.Warn(lead+"; it was already given up or complete", "receive_count", info.ReceiveCount)
	case comp.Failed:
		res.JobFailed = true
		lg.Error("part given up, and the job has failed: more parts given up than it tolerates; later parts will be skipped", "receive_count", info.ReceiveCount)
	default:
		lg.Error("part given up: "+why, "receive_count", info.ReceiveCount)
	}
	if comp.Failed && job.ReduceOnFailure {
		// The reason is the store's: read it for the reduce message.
		if now, err := r.store.Peek(ctx, jobID); err == nil {
			job = now
		} else {
			job.Failed, job.Error = true, "parts given up past the tolerance"
		}
		job.ReduceSent = false
		r.EnsureReduce(ctx, lg, job)
	} else if comp.Done && !comp.Failed && !comp.ReduceSent {
		lg.Info("every part has ended")
		job.ReduceSent = false
		r.EnsureReduce(ctx, lg, job)
	}
	return res
}

// persist runs write, which records what became of a part (a completion, a
// give-up, a failed job; or reads the job before anything ran), and runs it again while the store refuses it for
// throughput (backends.ErrThrottled), for up to Options.ThrottleWait with
// backoff: a command that succeeded must not be run again by the queue just
// because its completion was throttled.
func (r *Runner) persist(ctx context.Context, lg *slog.Logger, what string, write func() error) error {
	err := write()
	if !errors.Is(err, backends.ErrThrottled) || r.opt.ThrottleWait <= 0 {
		return err
	}
	start := time.Now()
	lg.Warn("the progress store is throttling: recording "+what+" again until it takes it", "for_at_most", r.opt.ThrottleWait.String(), "error", err.Error())
	delay := 50 * time.Millisecond
	for attempt := 2; ; attempt++ {
		// Full jitter, as AWS advises for a fleet of writers.
		wait := time.Duration(rand.Int64N(int64(delay))) + time.Millisecond
		if time.Since(start)+wait > r.opt.ThrottleWait {
			lg.Error("the progress store throttled "+what+" for longer than the throttle wait", "attempts", attempt-1, "waited", time.Since(start).Round(time.Millisecond).String())
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		if err = write(); !errors.Is(err, backends.ErrThrottled) {
			if err == nil {
				lg.Info(what+" recorded after throttling", "attempts", attempt, "waited", time.Since(start).Round(time.Millisecond).String())
			}
			return err
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// runCommand runs the command for one message and deals with what map and
// reduce share: a command that could not start, was interrupted, or exited
// with a fail-job code. done is false when the caller still has to act on
// the exit status (0, or another code); the logger then carries it.
func (r *Runner) runCommand(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, spec child.Spec, sigs <-chan os.Signal) (Result, *slog.Logger, bool) {
	spec.Env = PartEnv(spec.Env, m, r.opt.Fields, lg)
	if m.Subject == SubjectReduce {
		state := backends.StateComplete
		if job.Failed {
			state = backends.StateFailed
		}
		spec.Env = append(spec.Env, "WP_JOB_STATE="+state, "WP_PARTS_GIVEN_UP="+strconv.FormatInt(job.GivenUp, 10))
	}
	if spec.Grace <= 0 {
		spec.Grace = r.opt.Grace
	}
	cr, err := child.Run(ctx, spec, sigs, lg)
	if err != nil {
		var se *child.StartError
		res := Result{Outcome: CannotStart, Status: child.StatusCannotExec, Err: err}
		if errors.As(err, &se) && se.NotFound {
			res.NotFound, res.Status = true, child.StatusNotFound
		}
		lg.Error("command could not start", "error", err.Error())
		return res, lg, true
	}
	res := Result{Ran: true, Status: cr.Status, Signal: cr.Signal}
	lg = lg.With("exit_code", cr.Status, "duration_ms", cr.Took.Milliseconds())
	what := fmt.Sprintf("part %d", m.Part)
	if m.Subject == SubjectReduce {
		what = "reduce"
	}
	switch {
	case cr.Signal != nil:
		// Nothing is recorded, even if the command exited 0 after the
		// signal: it may have stopped half way.
		lg.Info(what+" interrupted by "+child.SignalName(cr.Signal)+": nothing recorded", "signal", child.SignalName(cr.Signal))
		res.Outcome = Interrupted
		return res, lg, true
	case cr.Status != 0 && r.opt.FailJobOn[cr.Status]:
		reason := fmt.Sprintf("%s exited with code %d", what, cr.Status)
		if err := r.persist(ctx, lg, "the failed job", func() error { return r.store.Fail(ctx, m.JobID, reason) }); err != nil {
			lg.Error("the command asked to fail the job, but the progress store could not record it", "error", err.Error())
			res.Outcome, res.Err = Unavailable, err
			return res, lg, true
		}
		lg.Warn("job failed: later parts will be skipped", "reason", reason)
		res.Outcome, res.JobFailed = FailedJob, true
		if job.ReduceOnFailure && m.Subject == SubjectMap {
			job.Failed, job.Error, job.ReduceSent = true, reason, false
			if rr := r.EnsureReduce(ctx, lg, job); rr.Outcome != Completed {
				res.Outcome, res.Err = rr.Outcome, rr.Err
			}
		}
		return res, lg, true
	}
	return res, lg, false
}

func (r *Runner) complete(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, res Result) Result {
	var comp backends.Completion
	err := r.persist(ctx, lg, "the completion", func() (err error) {
		comp, err = r.store.Complete(ctx, m.JobID, m.Part)
		return err
	})
	switch {
	case errors.Is(err, backends.ErrJobFailed):
		lg.Warn("the job failed while this part ran: nothing recorded")
		res.Outcome = Skipped
		return res
	case errors.Is(err, backends.ErrNotFound), errors.Is(err, backends.ErrPartRange):
		lg.Error("the message can never succeed: cannot complete the part", "error", err.Error())
		res.Outcome, res.Err = Dropped, err
		return res
	case err != nil:
		lg.Error("the command succeeded but its completion could not be recorded", "error", err.Error())
		res.Outcome, res.Err = Unavailable, err
		return res
	}
	res.Recorded = true
	res.Outcome = Completed
	switch {
	case comp.Finisher:
		lg.Info("part complete: this completion finished the job")
		res.Outcome = Finished
	case comp.Duplicate:
		lg.Info("part was already complete (duplicate delivery)")
	default:
		lg.Info("part complete")
	}
	if comp.Done && !comp.ReduceSent {
		job.ReduceSent = false
		rr := r.EnsureReduce(ctx, lg, job)
		if rr.Outcome != Completed {
			res.Outcome, res.Err = rr.Outcome, rr.Err
		}
	}
	return res
}

// EnsureReduce sends the reduce of job (as last read: its ID, Metadata,
// ReduceSent, and for a failed job Failed and Error, which the message then
// carries) unless it was sent or another worker holds the claim: claim,
// publish, record. It returns Completed when the
// reduce is sent (by this call or another worker), Unavailable when the
// store or the publish failed (a failed publish releases the claim, so that
// the retry sends it), and ClaimHeld when another worker held the claim for
// Options.ClaimWait without recording the reduce.
func (r *Runner) EnsureReduce(ctx context.Context, lg *slog.Logger, job backends.Status) Result {
	jobID := job.ID
	done := Result{Outcome: Completed}
	if job.ReduceSent {
		return done
	}
	deadline := time.Now().Add(r.opt.ClaimWait)
	var token string
	for {
		var ok bool
		var err error
		token, ok, err = r.store.ClaimReduce(ctx, jobID, r.opt.ReduceLease)
		if err != nil {
			lg.Error("cannot claim the reduce", "error", err.Error())
			return Result{Outcome: Unavailable, Err: err}
		}
		if ok {
			break
		}
		if r.opt.ClaimWait <= 0 {
			lg.Info("reduce already sent or being sent by another worker")
			return done
		}
		// Another worker holds the claim. If it is alive it records the
		// reduce as sent within moments; if it died, succeeding here
		// would delete this message, and the reduce would be lost
		// whenever no other delivery comes after the claim runs out.
		st, err := r.store.Peek(ctx, jobID)
		if err != nil {
			lg.Error("cannot read the job to learn whether the reduce was sent", "error", err.Error())
			return Result{Outcome: Unavailable, Err: err}
		}
		if st.ReduceSent || st.Failed {
			lg.Info("reduce already sent by another worker")
			return done
		}
		if time.Now().After(deadline) {
			// Only the holder knows its lease, and the store does not
			// say when the claim was taken: say no more than that.
			lg.Warn("another worker holds the reduce claim and has not recorded the reduce as sent (it may have died): the claim runs out when the holder's lease ends, and a delivery after that sends the reduce", "waited", r.opt.ClaimWait.String())
			return Result{Outcome: ClaimHeld}
		}
		select {
		case <-ctx.Done():
			return Result{Outcome: Unavailable, Err: ctx.Err()}
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Give up publishing well before the claim runs out, so that no other
	// worker can claim and publish while this one still might.
	pctx, pcancel := context.WithTimeout(ctx, r.opt.ReduceLease/2)
	body := ReduceBody(jobID, job.Metadata)
	if job.Failed {
		body = FailedReduceBody(jobID, job.Metadata, job.Error)
	}
	err := r.pub.Publish(pctx, SubjectReduce, body)
	pcancel()
	if err != nil {
		if rerr := r.store.ReleaseReduce(ctx, jobID, token); rerr != nil {
			lg.Warn("cannot release the reduce claim; it expires by itself", "lease", r.opt.ReduceLease.String(), "error", rerr.Error())
		}
		lg.Error("cannot publish the reduce message: the claim is released, so that a later delivery sends it", "error", err.Error())
		return Result{Outcome: Unavailable, Err: err}
	}
	if err := r.persist(ctx, lg, "the reduce as sent", func() error { return r.store.MarkReduceSent(ctx, jobID) }); err != nil {
		// Published but not recorded: succeeding keeps the claim until
		// its lease runs out; only a later duplicate delivery after that
		// could send a second reduce (the documented window).
		lg.Warn("reduce published but not recorded as sent", "error", err.Error())
		return done
	}
	lg.Info("reduce message published")
	return done
}

func (r *Runner) reduce(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, spec child.Spec, sigs <-chan os.Signal) Result {
	if job.Failed && !job.ReduceOnFailure {
		lg.Info("job has failed: skipping reduce", "reason", job.Error)
		return Result{Outcome: Skipped}
	}
	if job.Reduced {
		lg.Info("job already reduced: skipping duplicate reduce message")
		return Result{Outcome: Skipped}
	}
	if len(m.Metadata) == 0 {
		m.Metadata = job.Metadata
	}
	res, lg, done := r.runCommand(ctx, lg, job, m, spec, sigs)
	if done {
		return res
	}
	if res.Status != 0 {
		lg.Info("reduce command failed: nothing recorded")
		res.Outcome = CommandFailed
		return res
	}
	res.Outcome = Reduced
	if err := r.persist(ctx, lg, "the reduce as done", func() error { return r.store.MarkReduced(ctx, m.JobID) }); err != nil {
		lg.Warn("reduce succeeded but could not be recorded", "error", err.Error())
	} else {
		lg.Info("reduce complete")
	}
	return res
}
