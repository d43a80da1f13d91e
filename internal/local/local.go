// Package local runs a whole job on one machine: the engine of wp local.
// It schedules the job's pending parts over a number of workers, runs each
// through the same part engine as wp run (package worker), runs a part
// again when it fails, up to a number of retries, then the reduce. It gives
// each command exactly the environment watchbot would give it: a part is a
// message with one MessageId, first received when it first ran, and
// received once more on each run.
//
// Redelivery is the runner's own: where watchbot puts a failed message
// back on its queue, the runner runs the part again after a short pause;
// where the queue's last receive gives a part up, the runner's last
// attempt does.
package local

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/display"
	"github.com/wp-tools/wp/internal/partset"
	"github.com/wp-tools/wp/internal/worker"
)

// Options say how to run a job.
type Options struct {
	// Argv is the command, run once per part and once as the reduce.
	Argv []string
	// Env is the environment the command inherits; the runner adds
	// watchbot's variables and the part's.
	Env []string
	// PartsFile holds the job's map messages, one a line in part order
	// (see CreateParts).
	PartsFile string
	// Jobs is how many parts run side by side (at least 1).
	Jobs int
	// Retries is how many times a part (or the reduce) whose command
	// fails runs again. A part still failing on its last attempt is given
	// up.
	Retries int
	// Backoff is the pause before attempt k+1 of a part: k times Backoff
	// (default 100ms).
	Backoff time.Duration
	// FailJobOn, Grace, ReduceLease: as in worker.Options.
	FailJobOn   worker.CodeSet
	Grace       time.Duration
	ReduceLease time.Duration
	// RetryGivenUp: first put the job's given-up parts back to pending.
	RetryGivenUp bool
	// Out is where the commands' output goes, whole lines at a time.
	Out *display.Output
	// Prefix: the commands' lines are prefixed with "[part N] " or
	// "[reduce] ".
	Prefix bool
	// Terminal: Out's stderr is a terminal, for a progress line at the
	// bottom (else a log line every 10 s).
	Terminal bool
	// Log gets the runner's own lines; EngineLog the part engine's (wp
	// local keeps those quiet unless -v). Both default to discarding.
	Log, EngineLog *slog.Logger
	// Signals, when set, are the signals that stop the run; by default the
	// runner takes SIGINT, SIGTERM and SIGHUP for as long as it runs.
	// Each is forwarded to every running command.
	Signals <-chan os.Signal
}

// Summary is how a run ended.
type Summary struct {
	// Job is the job as the run left it.
	Job backends.Status
	// Done: parts this run completed. GivenUp: parts it gave up.
	Done, GivenUp int64
	// Failed: parts still failing after every attempt whose failure could
	// not be recorded either (they stay pending). Dropped: parts whose
	// message can never succeed.
	Failed, Dropped int64
	// Retried: runs of a part or the reduce after a failed one.
	Retried int64
	// Skipped: parts not run because the job had failed, or ended already.
	Skipped int64
	// Reduce is the reduce command's exit status; -1 when it did not run.
	Reduce int
	// Interrupted is the signal that stopped the run (nil if none), and
	// Stopped the parts that were running then: nothing was recorded for
	// them, and they stay pending.
	Interrupted os.Signal
	Stopped     []int64
	// JobFailed: the job has failed (in this run, or before it).
	JobFailed bool
	// Took is the run's wall time.
	Took time.Duration
}

// Run runs job jobID of store: its pending parts, then the reduce once
// every part has ended. The job must exist. An error is returned only when
// the run could not start or its parts file could not be read; how the
// run went is in the Summary. When ctx ends, the run stops as for SIGTERM.
func Run(ctx context.Context, store *backends.Store, jobID string, opt Options) (Summary, error) {
	r := newRun(store, jobID, opt)
	return r.run(ctx)
}

type run struct {
	opt    Options
	store  *backends.Store
	jobID  string
	engine *worker.Runner
	pub    *keptReduce

	stop        atomic.Bool // no new parts: interrupted or the job failed
	interrupted atomic.Value
	jobFailed   atomic.Bool
	done        atomic.Int64
	givenUp     atomic.Int64
	failed      atomic.Int64
	dropped     atomic.Int64
	retried     atomic.Int64
	skipped     atomic.Int64

	mu      sync.Mutex
	sigs    []chan os.Signal
	stopped []int64
}

func newRun(store *backends.Store, jobID string, opt Options) *run {
	if opt.Jobs < 1 {
		opt.Jobs = 1
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 100 * time.Millisecond
	}
	discard := slog.New(slog.DiscardHandler)
	if opt.Log == nil {
		opt.Log = discard
	}
	if opt.EngineLog == nil {
		opt.EngineLog = discard
	}
	if opt.Out == nil {
		opt.Out = display.NewOutput(io.Discard, io.Discard)
	}
	pub := &keptReduce{}
	r := &run{
		opt: opt, store: store, jobID: jobID, pub: pub,
	}
	r.engine = worker.New(store, pub, worker.Options{
		FailJobOn:    opt.FailJobOn,
		Grace:        opt.Grace,
		ReduceLease:  opt.ReduceLease,
		ThrottleWait: time.Minute,
		Log:          opt.EngineLog,
		PartOutput:   r.partOutput,
	})
	return r
}

// partOutput gives each part of a batch its own prefixed lines.
func (r *run) partOutput(part int64) (io.Writer, io.Writer, func()) {
	prefix := ""
	if r.opt.Prefix {
		prefix = fmt.Sprintf("[part %d] ", part)
	}
	out, errw := r.opt.Out.Writer(false, prefix), r.opt.Out.Writer(true, prefix)
	return out, errw, func() { out.Flush(); errw.Flush() }
}

// keptReduce is the runner's publisher: the reduce message is kept, for the
// runner to run, instead of sent.
type keptReduce struct {
	mu   sync.Mutex
	body string
}

func (p *keptReduce) Publish(_ context.Context, subject, body string) error {
	if subject != worker.SubjectReduce {
		return fmt.Errorf("the local runner cannot publish Subject=%s", subject)
	}
	p.mu.Lock()
	p.body = body
	p.mu.Unlock()
	return nil
}

func (p *keptReduce) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.body
	p.body = ""
	return b
}

func (r *run) run(ctx context.Context) (Summary, error) {
	start := time.Now()
	if r.opt.RetryGivenUp {
		if err := r.retryGivenUp(ctx); err != nil {
			return Summary{}, err
		}
	}
	job, err := r.store.Status(ctx, r.jobID)
	if err != nil {
		return Summary{}, err
	}
	if job.Failed {
		return Summary{Job: job, JobFailed: true, Reduce: -1}, fmt.Errorf("job %s has failed (%s): nothing to run", r.jobID, job.Error)
	}
	pending := partset.New(job.FirstPart, job.Total)
	if err := r.store.Pending(ctx, r.jobID, func(p int64) error {
		if !pending.Add(p) {
			return fmt.Errorf("pending part %d is outside job %s (parts %d to %d)", p, r.jobID, job.FirstPart, job.LastPart())
		}
		return nil
	}); err != nil {
		return Summary{}, err
	}
	parts, err := os.Open(r.opt.PartsFile)
	if err != nil {
		return Summary{}, fmt.Errorf("parts file: %w", err)
	}
	defer parts.Close()
	r.opt.Log.Info("running job", "jobid", r.jobID, "parts", job.Total, "pending", job.Remaining, "workers", r.opt.Jobs)

	stopSignals := r.catchSignals(ctx)
	defer stopSignals()

	base := job.Total - job.Remaining
	var meter display.Meter
	bar := display.NewTicker(r.opt.Out, r.opt.Terminal, func() string {
		ended := base + r.done.Load() + r.givenUp.Load()
		now := time.Now()
		meter.Add(now, ended)
		p := display.Progress{Ended: ended, Total: job.Total, PerMinute: meter.PerMinute(), Elapsed: now.Sub(start),
			Extra: fmt.Sprintf("%d given up, %d retried", r.givenUp.Load(), r.retried.Load())}
		if r.opt.Terminal {
			return p.Line(24)
		}
		return p.Line(0)
	}, func(line string) { r.opt.Log.Info("progress: " + line) })
	bar.Start()
	tasks := make(chan task)
	var wg sync.WaitGroup
	for i := 0; i < r.opt.Jobs; i++ {
		sigs := r.subscribe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				switch {
				case r.stop.Load():
				case t.parts != nil:
					r.runBatch(ctx, job, t, sigs)
				default:
					r.runPart(ctx, job, t, sigs)
				}
			}
		}()
	}
	feedErr := r.feed(ctx, parts, job, pending, tasks)
	close(tasks)
	wg.Wait()
	bar.Stop()
	if feedErr != nil {
		return Summary{}, feedErr
	}

	reduce := -1
	if r.interrupted.Load() == nil {
		reduce = r.runReduce(ctx)
	}
	return r.summary(ctx, start, reduce), nil
}

// catchSignals stops the run on a signal (or the end of ctx): no new part
// starts, and the signal goes to every running command. It returns the
// function that stops catching.
func (r *run) catchSignals(ctx context.Context) func() {
	sigc := r.opt.Signals
	var own chan os.Signal
	if sigc == nil {
		own = make(chan os.Signal, 4)
		signal.Notify(own, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		sigc = own
	}
	quit := make(chan struct{})
	go func() {
		ctxDone := ctx.Done()
		for {
			var sig os.Signal
			select {
			case sig = <-sigc:
			case <-ctxDone:
				// Each command's own child.Run sees ctx end and stops
				// it; no new part starts.
				ctxDone = nil
				r.interrupt(syscall.SIGTERM, false)
				continue
			case <-quit:
				return
			}
			r.interrupt(sig, true)
		}
	}()
	return func() {
		close(quit)
		if own != nil {
			signal.Stop(own)
		}
	}
}

func (r *run) interrupt(sig os.Signal, forward bool) {
	if r.interrupted.CompareAndSwap(nil, sigBox{sig}) {
		r.opt.Log.Warn("interrupted by " + child.SignalName(sig) + ": stopping once the running commands exit")
	}
	r.stop.Store(true)
	if !forward {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.sigs {
		select {
		case ch <- sig:
		default:
		}
	}
}

// sigBox lets atomic.Value hold signals of any type.
type sigBox struct{ os.Signal }

// subscribe is a channel that gets every signal the run is stopped with.
func (r *run) subscribe() chan os.Signal {
	ch := make(chan os.Signal, 1)
	r.mu.Lock()
	r.sigs = append(r.sigs, ch)
	r.mu.Unlock()
	return ch
}

// task is one message for the workers: one part, or a batch of them.
type task struct {
	part  int64   // the first part
	parts []int64 // every part of a batch (nil: one part)
	body  string
}

// feed reads the parts file and hands each pending part to the workers:
// packed into batches as the job's messages are (Status.Batch), or one by
// one.
func (r *run) feed(ctx context.Context, f *os.File, job backends.Status, pending *partset.Set, tasks chan<- task) error {
	br := bufio.NewReaderSize(f, 256*1024)
	part := pending.First() - 1
	next := func() (int64, string, bool, error) {
		for {
			line, err := br.ReadString('\n')
			if err == io.EOF && line == "" {
				return 0, "", false, nil
			}
			if err != nil && err != io.EOF {
				return 0, "", false, fmt.Errorf("parts file %s: %w", r.opt.PartsFile, err)
			}
			part++
			if pending.Has(part) {
				return part, strings.TrimSuffix(line, "\n"), true, nil
			}
		}
	}
	if job.Batch == 0 {
		for {
			p, body, ok, err := next()
			if !ok || err != nil || r.stop.Load() || ctx.Err() != nil {
				return err
			}
			tasks <- task{part: p, body: body}
		}
	}
	pack := worker.Packer{JobID: r.jobID, Parts: job.Batch, Bytes: job.BatchBytes, Shard: r.store.ShardSize()}.Pack(next)
	for {
		msg, parts, ok, err := pack()
		if !ok || err != nil || r.stop.Load() || ctx.Err() != nil {
			return err
		}
		t := task{part: parts[0], body: msg}
		if len(parts) > 1 {
			t.parts = parts
		}
		tasks <- t
	}
}

// message is one part's (or the reduce's) message as the runner delivers
// it: one MessageId and first receive for all its attempts, as SQS keeps
// them.
type message struct {
	delivery worker.Delivery
	envelope worker.Envelope
	prefix   string
}

func newMessage(body, subject, prefix string) *message {
	now := time.Now()
	return &message{
		delivery: worker.Delivery{Message: body, Subject: subject},
		envelope: worker.Envelope{MessageID: uuid.NewString(), Sent: now, FirstReceive: now},
		prefix:   prefix,
	}
}

// receive is the message's next delivery, as attempt of at most last.
func (m *message) receive(attempt, last int) worker.Delivery {
	d := m.delivery
	d.ReceiveCount, d.Last = attempt, attempt >= last
	return d
}

func (r *run) spec(m *message, d worker.Delivery) child.Spec {
	prefix := m.prefix
	if !r.opt.Prefix {
		prefix = ""
	}
	return child.Spec{
		Argv:   r.opt.Argv,
		Env:    worker.WatchbotEnv(r.opt.Env, d, m.envelope),
		Stdout: r.opt.Out.Writer(false, prefix),
		Stderr: r.opt.Out.Writer(true, prefix),
		Grace:  r.opt.Grace,
	}
}

// flush writes what the command left without a newline.
func flush(s child.Spec) {
	for _, w := range []io.Writer{s.Stdout, s.Stderr} {
		if lw, ok := w.(*display.LineWriter); ok {
			lw.Flush()
		}
	}
}

// runPart runs one part with wp run's semantics, running it again while it
// fails and attempts are left.
func (r *run) runPart(ctx context.Context, job backends.Status, t task, sigs chan os.Signal) {
	lg := r.opt.Log.With("jobid", r.jobID, "partid", t.part)
	parsed, err := worker.ParseDelivery(worker.Delivery{Message: t.body, Subject: worker.SubjectMap}, worker.DefaultFields)
	if err != nil { // the parts file holds only messages wp made
		lg.Error("the parts file's message for the part can never succeed: " + err.Error())
		r.dropped.Add(1)
		return
	}
	m := newMessage(t.body, worker.SubjectMap, fmt.Sprintf("[part %d] ", t.part))
	attempts := r.opt.Retries + 1
	for attempt := 1; ; attempt++ {
		d := m.receive(attempt, attempts)
		spec := r.spec(m, d)
		res := r.engine.Process(ctx, job, parsed, d, spec, sigs)
		flush(spec)
		switch res.Outcome {
		case worker.FailedJob:
			r.failJob()
			return
		case worker.Skipped:
			r.skipped.Add(1)
			if st, err := r.store.Peek(ctx, r.jobID); err == nil && st.Failed {
				r.failJob()
			}
			return
		case worker.Completed, worker.Finished:
			r.done.Add(1)
			return
		case worker.AlreadyDone:
			r.skipped.Add(1)
			return
		case worker.Dropped:
			r.dropped.Add(1)
			return
		case worker.GaveUp:
			r.givenUp.Add(1)
			if res.JobFailed {
				r.failJob()
			}
			return
		case worker.Interrupted:
			r.mu.Lock()
			r.stopped = append(r.stopped, t.part)
			r.mu.Unlock()
			return
		}
		// Failed (or could not be recorded): run it again if attempts
		// are left.
		if attempt >= attempts {
			r.failed.Add(1)
			lg.Error(fmt.Sprintf("part %d still fails after %s%s: it stays pending", t.part, plural(attempts, "attempt"), why(res)), failure(res)...)
			return
		}
		if r.stop.Load() {
			return
		}
		r.retried.Add(1)
		lg.Warn(fmt.Sprintf("part %d failed%s: running it again (attempt %d of %d)", t.part, why(res), attempt+1, attempts), failure(res)...)
		if !r.pause(ctx, attempt) {
			return
		}
		// The job as it is now: an earlier attempt may have completed
		// the part before its reduce could be sent.
		if st, err := r.store.Peek(ctx, r.jobID); err == nil {
			job = st
		}
	}
}

// runBatch runs one batch message with wp run's semantics, running it
// again (its parts still pending) while a part fails and attempts are left.
func (r *run) runBatch(ctx context.Context, job backends.Status, t task, sigs chan os.Signal) {
	lg := r.opt.Log.With("jobid", r.jobID, "partid", t.parts[0], "last_partid", t.parts[len(t.parts)-1])
	parsed, err := worker.ParseDelivery(worker.Delivery{Message: t.body, Subject: worker.SubjectMap}, worker.DefaultFields)
	if err != nil {
		lg.Error("the batch of the parts file can never succeed: " + err.Error())
		r.dropped.Add(int64(len(t.parts)))
		return
	}
	m := newMessage(t.body, worker.SubjectMap, "")
	attempts := r.opt.Retries + 1
	for attempt := 1; ; attempt++ {
		d := m.receive(attempt, attempts)
		spec := r.spec(m, d)
		res := r.engine.Process(ctx, job, parsed, d, spec, sigs)
		failing := 0
		for _, p := range res.Parts {
			switch p.Outcome {
			case worker.Completed, worker.Finished:
				r.done.Add(1)
			case worker.GaveUp:
				r.givenUp.Add(1)
			case worker.Interrupted:
				r.mu.Lock()
				r.stopped = append(r.stopped, p.Part)
				r.mu.Unlock()
			case worker.CommandFailed, worker.CannotStart:
				failing++
			}
		}
		switch res.Outcome {
		case worker.FailedJob:
			r.failJob()
			return
		case worker.Skipped:
			if st, err := r.store.Peek(ctx, r.jobID); err == nil && st.Failed {
				r.failJob()
			}
			return
		case worker.Completed, worker.Finished, worker.AlreadyDone, worker.Interrupted:
			return
		case worker.Dropped:
			r.dropped.Add(int64(len(t.parts)))
			return
		case worker.GaveUp:
			if res.JobFailed {
				r.failJob()
			}
			return
		}
		if attempt >= attempts {
			r.failed.Add(int64(max(failing, 1)))
			lg.Error(fmt.Sprintf("parts %d to %d: %d still fail after %s%s: they stay pending", t.parts[0], t.parts[len(t.parts)-1], max(failing, 1), plural(attempts, "attempt"), why(res)), failure(res)...)
			return
		}
		if r.stop.Load() {
			return
		}
		r.retried.Add(1)
		lg.Warn(fmt.Sprintf("parts %d to %d: %d failed%s: running them again (attempt %d of %d)", t.parts[0], t.parts[len(t.parts)-1], max(failing, 1), why(res), attempt+1, attempts), failure(res)...)
		if !r.pause(ctx, attempt) {
			return
		}
		if st, err := r.store.Peek(ctx, r.jobID); err == nil {
			job = st
		}
	}
}

// why is what a line says of why an attempt failed: " (exit 9)", or what
// the engine could not do.
func why(res worker.Result) string {
	switch {
	case res.Outcome == worker.CommandFailed && res.Ran:
		return fmt.Sprintf(" (exit %d)", res.Status)
	case res.Outcome == worker.CannotStart:
		return " (the command could not start)"
	case res.Outcome == worker.Unavailable && res.Ran:
		return " (its outcome could not be recorded)"
	case res.Outcome == worker.Unavailable:
		return " (the progress store could not be reached)"
	}
	return " (" + res.Outcome.String() + ")"
}

// failure is a failed attempt's attributes in a log line.
func failure(res worker.Result) []any {
	if res.Err != nil {
		return []any{"error", res.Err.Error()}
	}
	return []any{"exit_code", res.Status}
}

// pause waits before attempt+1; false when the run was stopped meanwhile.
func (r *run) pause(ctx context.Context, attempt int) bool {
	t := time.NewTimer(time.Duration(attempt) * r.opt.Backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return !r.stop.Load()
	case <-ctx.Done():
		return false
	}
}

func (r *run) failJob() {
	r.jobFailed.Store(true)
	r.stop.Store(true)
}

// runReduce runs the reduce once every part has ended (or the job failed,
// for a job that wants its reduce then too). It returns the reduce's exit
// status, or -1 when it did not run.
func (r *run) runReduce(ctx context.Context) int {
	lg := r.opt.Log.With("jobid", r.jobID, "subject", worker.SubjectReduce)
	st, err := r.store.Status(ctx, r.jobID)
	if err != nil {
		lg.Error("cannot read the job: the reduce was not run", "error", err.Error())
		return -1
	}
	if st.Reduced {
		lg.Info("job already reduced")
		return 0
	}
	if (st.Failed && !st.ReduceOnFailure) || (!st.Failed && st.Remaining > 0) {
		return -1
	}
	body := r.pub.take()
	if body == "" {
		// Every part had ended before this run (a resume), or the part
		// that ended the job could not send it: claim and "send" it now.
		if res := r.engine.EnsureReduce(ctx, r.opt.EngineLog.With("jobid", r.jobID, "subject", worker.SubjectReduce), st); res.Outcome != worker.Completed {
			lg.Error("cannot claim the reduce: it was not run", "outcome", res.Outcome.String())
			return -1
		}
		if body = r.pub.take(); body == "" {
			// An earlier run sent it, and was stopped before its
			// reduce command exited 0: run it again.
			body = worker.ReduceBody(r.jobID, st.Metadata)
			if st.Failed {
				body = worker.FailedReduceBody(r.jobID, st.Metadata, st.Error)
			}
		}
	}
	m := newMessage(body, worker.SubjectReduce, "[reduce] ")
	sigs := r.subscribe()
	attempts := r.opt.Retries + 1
	for attempt := 1; ; attempt++ {
		d := m.receive(attempt, attempts)
		spec := r.spec(m, d)
		res := r.engine.Handle(ctx, d, spec, sigs)
		flush(spec)
		switch res.Outcome {
		case worker.FailedJob:
			r.jobFailed.Store(true)
			return res.Status
		case worker.Reduced, worker.Skipped:
			return 0
		case worker.Dropped:
			return 1
		}
		if r.interrupted.Load() != nil || attempt >= attempts {
			if res.Ran {
				return res.Status
			}
			return 1
		}
		r.retried.Add(1)
		lg.Warn(fmt.Sprintf("the reduce failed%s: running it again (attempt %d of %d)", why(res), attempt+1, attempts), failure(res)...)
		if !r.pause(ctx, attempt) {
			return 1
		}
	}
}

// retryGivenUp puts every given-up part of the job back to pending.
func (r *run) retryGivenUp(ctx context.Context) error {
	var parts []int64
	if err := r.store.GivenUp(ctx, r.jobID, func(p backends.GivenUpPart) error {
		parts = append(parts, p.Part)
		return nil
	}); err != nil {
		return err
	}
	n, err := r.store.RetryAll(ctx, r.jobID, parts, nil)
	if err != nil {
		return err
	}
	r.opt.Log.Info("given-up parts put back to pending", "jobid", r.jobID, "parts", n)
	return nil
}

func (r *run) summary(ctx context.Context, start time.Time, reduce int) Summary {
	s := Summary{
		Done: r.done.Load(), GivenUp: r.givenUp.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load(),
		Retried: r.retried.Load(), Skipped: r.skipped.Load(), Reduce: reduce, JobFailed: r.jobFailed.Load(),
		Took: time.Since(start),
	}
	if b, ok := r.interrupted.Load().(sigBox); ok {
		s.Interrupted = b.Signal
	}
	r.mu.Lock()
	s.Stopped = append([]int64(nil), r.stopped...)
	r.mu.Unlock()
	slices.Sort(s.Stopped)
	// The job as the run left it; a run stopped by ctx still reads it.
	job, err := r.store.Status(context.WithoutCancel(ctx), r.jobID)
	if err == nil {
		s.Job = job
		s.JobFailed = s.JobFailed || job.Failed
	} else {
		r.opt.Log.Warn("cannot read the job at the end of the run", "jobid", r.jobID, "error", err.Error())
		s.Job = backends.Status{ID: r.jobID}
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
