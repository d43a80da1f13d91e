package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/display"
	"github.com/wp-tools/wp/internal/statedir"
	"github.com/wp-tools/wp/internal/worker"
)

func localCommand() *cli.Command {
	return &cli.Command{
		Name:      "local",
		Usage:     "run a whole map-reduce job on this machine",
		ArgsUsage: "-- CMD [ARGS...] < parts.ndjson",
		Description: `Creates the job from the parts on stdin (validated like wp create: bad input is
reported with its line number and nothing is stored), runs CMD once per part
with -j parallel workers, then, when every part is complete, runs CMD once more
as the reduce (Subject=reduce). No SNS is involved.

Each run of CMD sees the environment watchbot would give it (Message, Subject,
MessageId, SentTimestamp, ApproximateFirstReceiveTimestamp,
ApproximateReceiveCount) plus wp run's WP_* variables, and the part semantics
are wp run's: exit 0 completes the part, a --fail-job-on code fails the job and
stops scheduling new parts, other codes are retried up to --retries times (the
receive count increasing) and then reported. CMD's output lines are prefixed
with [part N] or [reduce] and never interleave mid-line.

The parts are kept in a file beside the SQLite database (for other stores, in
$XDG_STATE_HOME/wp/parts), so an interrupted run resumes with no input:
   wp local --resume JOBID -- CMD
runs only the pending parts, then the reduce.

Ctrl-C or SIGTERM forwards the signal to the running commands, waits for
them, records nothing for the interrupted parts, and prints how to resume: a
command that works as printed (the flags given, and the store when it is not
the default; a store password is read from WP_PROGRESS, never printed).

Exit codes:
   0    every part completed and the reduce exited 0
   1    the job failed, parts still failed after --retries, the reduce failed,
        bad input, or a store error
   2    wrong command line
   130  interrupted by SIGINT or SIGTERM (resume with --resume JOBID)`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: runtime.NumCPU(), Usage: "parts run in parallel (default: the number of CPUs)"},
			failJobOnFlag(),
			&cli.IntFlag{Name: "retries", Value: 2, Usage: "how many times a part (or the reduce) that exits with another non-zero code is run again"},
			&cli.StringFlag{Name: "resume", Usage: "resume an existing job: run its pending parts, then the reduce (no input is read)"},
			jobIDFlag(),
			metadataFlag(),
			tolerateFlag(),
			reduceOnFailureFlag(),
			&cli.BoolFlag{Name: "retry-given-up", Usage: "with --resume: put the job's given-up parts back to pending and run them again"},
			graceFlag(),
			&cli.BoolFlag{Name: "no-prefix", Usage: "pass the commands' output through without the [part N] prefix (lines still never interleave)"},
			progressFlag(),
		},
		Action: localAction,
	}
}

// partsPath is where wp local keeps a job's map messages, one a line in part
// order: beside the SQLite database, or in the state directory for other
// stores.
func partsPath(storeURL, jobID string) (string, error) {
	if u, err := url.Parse(storeURL); err == nil && u.Scheme == "sqlite" {
		p := u.Path
		if u.Host != "" {
			p = filepath.Join(u.Host, u.Path)
		}
		return filepath.Join(p+".parts", jobID+".ndjson"), nil
	}
	dir, err := statedir.Dir()
	if err != nil {
		return "", fmt.Errorf("find a place for the parts file: %w", err)
	}
	return filepath.Join(dir, "parts", jobID+".ndjson"), nil
}

// localPublisher keeps the reduce message for wp local instead of sending it.
type localPublisher struct {
	mu     sync.Mutex
	reduce string
}

func (p *localPublisher) Publish(_ context.Context, subject, body string) error {
	if subject != "reduce" {
		return fmt.Errorf("wp local cannot publish Subject=%s", subject)
	}
	p.mu.Lock()
	p.reduce = body
	p.mu.Unlock()
	return nil
}

func (p *localPublisher) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.reduce
	p.reduce = ""
	return b
}

type localRun struct {
	c       *cli.Context
	log     *slog.Logger
	store   *backends.Store
	runner  *worker.Runner
	pub     *localPublisher
	grace   time.Duration
	jobID   string
	argv    []string
	workers int
	retries int
	prefix  bool
	out     *display.Output

	stop        atomic.Bool // no new parts: interrupted or the job failed
	interrupted atomic.Bool
	jobFailed   atomic.Bool
	done        atomic.Int64
	failedParts atomic.Int64
	retried     atomic.Int64
	skipped     atomic.Int64
	dropped     atomic.Int64
	givenUp     atomic.Int64

	mu   sync.Mutex
	sigs []chan os.Signal
}

func localAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usageError("wp local needs a command: wp local [flags] -- CMD [ARGS...] < parts.ndjson")
	}
	failOn, err := worker.ParseCodeSet(c.String("fail-job-on"))
	if err != nil {
		return usageError("--fail-job-on: %v", err)
	}
	if c.Int("jobs") < 1 {
		return usageError("-j must be at least 1")
	}
	if c.Int("retries") < 0 {
		return usageError("--retries must not be negative")
	}
	resume := c.String("resume")
	if resume != "" && (c.IsSet("jobid") || c.IsSet("metadata") || c.IsSet("tolerate") || c.IsSet("reduce-on-failure")) {
		return usageError("--resume takes the job as it is: --jobid, --metadata, --tolerate and --reduce-on-failure cannot be given with it")
	}
	if resume == "" && c.Bool("retry-given-up") {
		return usageError("--retry-given-up goes with --resume JOBID")
	}
	lg := logger(c)
	// openStore logs which store is used; the URL is needed here too, for
	// where the parts file goes.
	storeU, _, err := storeURL(c)
	if err != nil {
		return err
	}

	var o jobOptions
	var sp *spool
	if resume == "" {
		if o, err = parseJobOptions(c); err != nil {
			return err
		}
		if sp, err = newSpool(); err != nil {
			return err
		}
		defer sp.close()
		if err := readParts(c.App.Reader, o.id, sp); err != nil {
			return fmt.Errorf("invalid input, nothing was created: %w", err)
		}
		o.digest = sp.digest()
	} else {
		if err := backends.ValidateJobID(resume); err != nil {
			return withCode(exitError, fmt.Errorf("--resume: %w", err))
		}
		o.id = resume
	}
	pp, err := partsPath(storeU, o.id)
	if err != nil {
		return err
	}

	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()

	if resume == "" {
		if err := saveJob(c, st, o, sp, pp); err != nil {
			return err
		}
	} else {
		if _, err := st.Status(c.Context, o.id); err != nil {
			return notFound(o.id, err)
		}
		if _, err := os.Stat(pp); err != nil {
			return fmt.Errorf("resume %s: its parts file %s is missing (was the job created by wp local?): %w", o.id, pp, err)
		}
	}

	// One line a part would drown the commands' output: the per-part
	// lines show with -v; warnings and errors always do.
	partLog := lg
	if !c.Bool("verbose") {
		partLog = slog.New(minLevel{lg.Handler(), slog.LevelWarn})
	}
	pub := &localPublisher{}
	l := &localRun{
		c: c, log: lg, store: st, pub: pub, jobID: o.id, argv: argv, grace: c.Duration("grace"),
		workers: c.Int("jobs"), retries: c.Int("retries"), prefix: !c.Bool("no-prefix"),
		runner: worker.New(st, pub, worker.Options{
			FailJobOn:   failOn,
			Grace:       c.Duration("grace"),
			ReduceLease: defaultReduceLease,
			MaxReceives: c.Int("retries") + 1,
			Log:         partLog,
			Retry:       "wp local runs it again while --retries allows, else wp local --resume does",
			Last:        "its last attempt (--retries)",
		}),
	}
	l.out = display.NewOutput(c.App.Writer, c.App.ErrWriter)
	if c.Bool("retry-given-up") {
		if err := l.retryGivenUp(); err != nil {
			return err
		}
	}
	return l.run(pp)
}

// saveJob writes the parts file, then creates the job. A parts file is only
// left behind for a job that exists.
func saveJob(c *cli.Context, st *backends.Store, o jobOptions, sp *spool, pp string) error {
	if err := os.MkdirAll(filepath.Dir(pp), 0o700); err != nil {
		return fmt.Errorf("parts file: %w", err)
	}
	next, err := sp.reader()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(pp), ".parts-*")
	if err != nil {
		return fmt.Errorf("parts file: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 256*1024)
	for {
		body, ok, err := next()
		if err != nil {
			tmp.Close()
			return err
		}
		if !ok {
			break
		}
		w.WriteString(body)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("parts file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("parts file: %w", err)
	}
	resumed, err := storeJob(c.Context, c, st, o, sp.count)
	if err != nil {
		return err
	}
	if resumed {
		if _, err := os.Stat(pp); err == nil {
			return nil // keep the file the job was created with
		}
	}
	if err := os.Rename(tmp.Name(), pp); err != nil {
		return fmt.Errorf("parts file: %w", err)
	}
	return nil
}

type task struct {
	part int64
	body string
}

func (l *localRun) run(pp string) error {
	start := time.Now()
	ctx := context.Background()
	st, err := l.store.Status(ctx, l.jobID)
	if err != nil {
		return notFound(l.jobID, err)
	}
	if st.Failed {
		return fmt.Errorf("job %s has failed (%s): nothing to run", l.jobID, st.Error)
	}
	pending, err := l.pendingSet(st)
	if err != nil {
		return err
	}
	l.log.Info("running job", "jobid", l.jobID, "parts", st.Total, "pending", st.Remaining, "workers", l.workers)

	// Signals: stop scheduling and forward to every running command.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	go func() {
		for {
			select {
			case sig := <-sigc:
				if !l.interrupted.Swap(true) {
					l.log.Warn("interrupted: stopping after the running commands exit", "signal", sig.String())
				}
				l.stop.Store(true)
				l.mu.Lock()
				for _, ch := range l.sigs {
					select {
					case ch <- sig:
					default:
					}
				}
				l.mu.Unlock()
			case <-stopSignals:
				return
			}
		}
	}()

	base := st.Total - st.Remaining
	bar := display.NewTicker(l.out, display.IsTerminal(l.c.App.ErrWriter), func() string {
		done := base + l.done.Load()
		return fmt.Sprintf("%d/%d parts done (%.0f%%), %d failed, %d retried", done, st.Total, 100*float64(done)/float64(max(st.Total, 1)), l.failedParts.Load(), l.retried.Load())
	}, func(line string) { l.log.Info("progress: " + line) })
	bar.Start()
	tasks := make(chan task)
	var wg sync.WaitGroup
	for i := 0; i < l.workers; i++ {
		ch := make(chan os.Signal, 1)
		l.mu.Lock()
		l.sigs = append(l.sigs, ch)
		l.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				if l.stop.Load() {
					continue
				}
				l.runPart(ctx, st, t, ch)
			}
		}()
	}
	feedErr := l.feed(pp, pending, st.FirstPart, tasks)
	close(tasks)
	wg.Wait()
	bar.Stop()
	if feedErr != nil {
		return feedErr
	}

	reduceCode := -1
	if !l.interrupted.Load() {
		reduceCode = l.runReduce(ctx)
	}
	return l.finish(start, reduceCode)
}

// pendingSet reads the pending part ids into a bitmap (one bit a part, so
// 100,000 parts take 12.5 KB).
func (l *localRun) pendingSet(st backends.Status) ([]uint64, error) {
	bits := make([]uint64, (st.Total+63)/64)
	err := l.store.Pending(context.Background(), l.jobID, func(p int64) error {
		i := p - st.FirstPart
		if i < 0 || i >= st.Total {
			return fmt.Errorf("pending part %d is outside the job", p)
		}
		bits[i/64] |= 1 << (uint(i) % 64)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bits, nil
}

// feed reads the parts file and sends each pending part to the workers.
func (l *localRun) feed(pp string, pending []uint64, first int64, tasks chan<- task) error {
	f, err := os.Open(pp)
	if err != nil {
		return fmt.Errorf("parts file: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256*1024)
	for i := int64(0); ; i++ {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("parts file %s: %w", pp, err)
		}
		if l.stop.Load() {
			return nil
		}
		if i/64 >= int64(len(pending)) {
			return fmt.Errorf("parts file %s has more parts than job %s", pp, l.jobID)
		}
		if pending[i/64]&(1<<(uint(i)%64)) == 0 {
			continue
		}
		tasks <- task{part: first + i, body: line[:len(line)-1]}
	}
}

func (l *localRun) childSpec(prefix string, d worker.Delivery, attempt int, first time.Time) child.Spec {
	env := append(os.Environ(),
		"Message="+d.Message,
		"Subject="+d.Subject,
		"MessageId="+uuid.NewString(),
		"SentTimestamp="+first.UTC().Format(time.RFC3339Nano),
		"ApproximateFirstReceiveTimestamp="+first.UTC().Format(time.RFC3339Nano),
		"ApproximateReceiveCount="+strconv.Itoa(attempt),
	)
	if !l.prefix {
		prefix = ""
	}
	return child.Spec{
		Argv:   l.argv,
		Env:    env,
		Stdout: l.out.Writer(false, prefix),
		Stderr: l.out.Writer(true, prefix),
		Grace:  l.grace,
	}
}

// runPart runs one part with wp run's semantics, retrying other failures.
func (l *localRun) runPart(ctx context.Context, job backends.Status, t task, sigs chan os.Signal) {
	first := time.Now()
	m, err := worker.ParseDelivery(worker.Delivery{Message: t.body, Subject: worker.SubjectMap}, worker.DefaultFields)
	if err != nil { // the parts file holds only messages wp made
		l.log.Error("parts file: "+err.Error(), "jobid", l.jobID, "partid", t.part)
		l.dropped.Add(1)
		return
	}
	for attempt := 1; ; attempt++ {
		d := worker.Delivery{Message: t.body, Subject: worker.SubjectMap, ReceiveCount: attempt}
		spec := l.childSpec(fmt.Sprintf("[part %d] ", t.part), d, attempt, first)
		res := l.runner.Process(ctx, job, m, d, spec, sigs)
		flushSpec(spec)
		switch res.Outcome {
		case worker.FailedJob:
			l.jobFailed.Store(true)
			l.stop.Store(true)
			return
		case worker.Skipped:
			l.skipped.Add(1)
			if st, err := l.status(); err == nil && st.Failed {
				l.jobFailed.Store(true)
				l.stop.Store(true)
			}
			return
		case worker.Completed, worker.Finished:
			l.done.Add(1)
			return
		case worker.AlreadyDone:
			l.skipped.Add(1)
			return
		case worker.Dropped:
			l.dropped.Add(1)
			return
		case worker.GaveUp:
			l.givenUp.Add(1)
			if res.JobFailed {
				l.jobFailed.Store(true)
				l.stop.Store(true)
			}
			return
		}
		if l.interrupted.Load() {
			return
		}
		if attempt > l.retries {
			l.failedParts.Add(1)
			l.log.Error("part still failing after retries", "jobid", l.jobID, "partid", t.part, "attempts", attempt, "exit_code", res.Status, "outcome", res.Outcome.String())
			return
		}
		l.retried.Add(1)
		if l.stop.Load() {
			return
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		// The job as it is now: an earlier attempt may have completed
		// the part before its reduce could be sent.
		if st, err := l.store.Peek(ctx, l.jobID); err == nil {
			job = st
		}
	}
}

func flushSpec(s child.Spec) {
	if w, ok := s.Stdout.(*display.LineWriter); ok {
		w.Flush()
	}
	if w, ok := s.Stderr.(*display.LineWriter); ok {
		w.Flush()
	}
}

func (l *localRun) status() (backends.Status, error) {
	return l.store.Status(context.Background(), l.jobID)
}

// runReduce runs the reduce once every part is complete. It returns the
// reduce's exit code, or -1 when it did not run.
func (l *localRun) runReduce(ctx context.Context) int {
	st, err := l.status()
	if err != nil {
		l.log.Error("cannot read the job", "jobid", l.jobID, "error", err.Error())
		return -1
	}
	if st.Reduced {
		l.log.Info("job already reduced", "jobid", l.jobID)
		return 0
	}
	if (st.Failed && !st.ReduceOnFailure) || (!st.Failed && st.Remaining > 0) {
		return -1
	}
	body := l.pub.take()
	if body == "" {
		// Every part was done before this run (a resume), or a worker
		// that finished did not get to send it: claim and "send" now.
		lg := l.log.With("jobid", l.jobID, "subject", worker.SubjectReduce)
		if res := l.runner.EnsureReduce(ctx, lg, st); res.Outcome != worker.Completed {
			return -1
		}
		body = l.pub.take()
		if body == "" {
			body = worker.ReduceBody(l.jobID, st.Metadata) // sent by an interrupted run: run it again
		}
	}
	d := worker.Delivery{Message: body, Subject: worker.SubjectReduce}
	first := time.Now()
	ch := make(chan os.Signal, 1)
	l.mu.Lock()
	l.sigs = append(l.sigs, ch)
	l.mu.Unlock()
	for attempt := 1; ; attempt++ {
		spec := l.childSpec("[reduce] ", d, attempt, first)
		res := l.runner.Handle(ctx, d, spec, ch)
		flushSpec(spec)
		switch res.Outcome {
		case worker.FailedJob:
			l.jobFailed.Store(true)
			return res.Status
		case worker.Reduced:
			return 0
		case worker.Skipped:
			return 0
		}
		if res.Outcome == worker.Dropped {
			return 1
		}
		if l.interrupted.Load() || attempt > l.retries {
			if res.Ran {
				return res.Status
			}
			return 1
		}
		l.retried.Add(1)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
}

// retryGivenUp puts every given-up part of the job back to pending, so
// that this run runs them again.
func (l *localRun) retryGivenUp() error {
	ctx := context.Background()
	var parts []int64
	if err := l.store.GivenUp(ctx, l.jobID, func(p backends.GivenUpPart) error {
		parts = append(parts, p.Part)
		return nil
	}); err != nil {
		return notFound(l.jobID, err)
	}
	n := 0
	for i := 0; i < len(parts); i += retryBatch {
		moved, err := l.store.Retry(ctx, l.jobID, parts[i:min(i+retryBatch, len(parts))])
		if err != nil {
			return err
		}
		n += len(moved)
	}
	l.log.Info("given-up parts put back to pending", "jobid", l.jobID, "parts", n)
	return nil
}

func (l *localRun) finish(start time.Time, reduceCode int) error {
	took := time.Since(start).Round(time.Millisecond)
	reduce := "not run"
	if reduceCode >= 0 {
		reduce = fmt.Sprintf("exit %d", reduceCode)
	}
	st, _ := l.status()
	l.log.Info("summary",
		"jobid", l.jobID,
		"parts", st.Total,
		"done", l.done.Load(),
		"given_up", st.GivenUp,
		"failed", l.failedParts.Load(),
		"retried", l.retried.Load(),
		"skipped", l.skipped.Load(),
		"remaining", st.Remaining,
		"reduce", reduce,
		"wall", took.String())
	switch {
	case l.interrupted.Load():
		tellHow(l.c, l.log, fmt.Sprintf("interrupted with %d parts pending; resume with", st.Remaining), localResume(l.c, l.jobID, l.argv))
		return exitCode(exitInterrupted)
	case l.jobFailed.Load() || st.Failed:
		l.log.Error("job failed", "jobid", l.jobID, "reason", st.Error)
		if st.FailedByTolerance {
			tellHow(l.c, l.log, "run the given-up parts again with", localResume(l.c, l.jobID, l.argv, "--retry-given-up"))
		}
		return exitCode(exitError)
	case l.failedParts.Load() > 0 || l.dropped.Load() > 0:
		tellHow(l.c, l.log, fmt.Sprintf("%d parts failed after %d retries; run them again with", l.failedParts.Load()+l.dropped.Load(), l.retries), localResume(l.c, l.jobID, l.argv))
		return exitCode(exitError)
	case reduceCode != 0:
		l.log.Error("reduce failed", "jobid", l.jobID, "reduce", reduce)
		return exitCode(exitError)
	}
	return nil
}

// shellJoin quotes argv for a command line a user can paste.
func shellJoin(argv []string) string {
	var b bytes.Buffer
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
			b.WriteString(a)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}
