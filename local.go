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
)

// wp local's own exit codes.
const (
	// exitLocalFailed: the job failed, parts still failed after --retries,
	// or the reduce failed.
	exitLocalFailed = 1
	// exitInterrupted: SIGINT or SIGTERM stopped the run; resume it with
	// --resume.
	exitInterrupted = 130
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
them, records nothing for the interrupted parts, and prints how to resume.

Exit codes:
   0    every part completed and the reduce exited 0
   1    the job failed, parts still failed after --retries, the reduce failed,
        bad input, or a store error
   2    wrong command line
   130  interrupted by SIGINT or SIGTERM (resume with --resume JOBID)`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: runtime.NumCPU(), Usage: "parts run in parallel (default: the number of CPUs)"},
			&cli.StringFlag{Name: "fail-job-on", Usage: "exit codes of CMD that fail the whole job, e.g. 3,10-20", EnvVars: []string{"WP_FAIL_JOB_ON"}},
			&cli.IntFlag{Name: "retries", Value: 2, Usage: "how many times a part (or the reduce) that exits with another non-zero code is run again"},
			&cli.StringFlag{Name: "resume", Usage: "resume an existing job: run its pending parts, then the reduce (no input is read)"},
			&cli.StringFlag{Name: "jobid", Usage: "job id (default: a new UUID)"},
			&cli.StringFlag{Name: "metadata", Value: "{}", Usage: "job metadata, a JSON object: given to the reduce as WP_METADATA"},
			&cli.DurationFlag{Name: "grace", Value: defaultGrace, Usage: "after forwarding a signal, how long a command has to exit before SIGKILL"},
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
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find a place for the parts file: %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "wp", "parts", jobID+".ndjson"), nil
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
	runner  *partRunner
	pub     *localPublisher
	jobID   string
	argv    []string
	workers int
	retries int
	prefix  bool
	out     *lockedOutput

	stop        atomic.Bool // no new parts: interrupted or the job failed
	interrupted atomic.Bool
	jobFailed   atomic.Bool
	done        atomic.Int64
	failedParts atomic.Int64
	retried     atomic.Int64
	skipped     atomic.Int64
	dropped     atomic.Int64

	mu   sync.Mutex
	sigs []chan os.Signal
}

func localAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usageError("wp local needs a command: wp local [flags] -- CMD [ARGS...] < parts.ndjson")
	}
	failOn, err := parseCodeSet(c.String("fail-job-on"))
	if err != nil {
		return usageError("--fail-job-on %v", err)
	}
	if c.Int("jobs") < 1 {
		return usageError("-j must be at least 1")
	}
	if c.Int("retries") < 0 {
		return usageError("--retries must not be negative")
	}
	resume := c.String("resume")
	if resume != "" && (c.IsSet("jobid") || c.IsSet("metadata")) {
		return usageError("--resume takes the job as it is: --jobid and --metadata cannot be given with it")
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
		c: c, log: lg, store: st, pub: pub, jobID: o.id, argv: argv,
		workers: c.Int("jobs"), retries: c.Int("retries"), prefix: !c.Bool("no-prefix"),
		runner: &partRunner{store: st, pub: pub, failJobOn: failOn, grace: c.Duration("grace"), lease: defaultReduceLease, log: partLog},
	}
	l.out = newLockedOutput(c.App.Writer, c.App.ErrWriter)
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
	sctx, cancel := storeCtx(ctx)
	st, err := l.store.Status(sctx, l.jobID)
	cancel()
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
	// Every part this run starts is pending, and a failure of the job is
	// caught by Complete: no need to read the job again before each part.
	if st.Remaining > 0 {
		known := st
		l.runner.known = &known
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

	bar := newLocalProgress(l, st.Total, st.Total-st.Remaining)
	bar.start()
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
				l.runPart(ctx, t, ch)
			}
		}()
	}
	feedErr := l.feed(pp, pending, st.FirstPart, tasks)
	close(tasks)
	wg.Wait()
	bar.stop()
	if feedErr != nil {
		return feedErr
	}

	reduceCode := -1
	if !l.stop.Load() {
		reduceCode = l.runReduce(ctx)
	}
	return l.finish(start, reduceCode)
}

// pendingSet reads the pending part ids into a bitmap (one bit a part, so
// 100,000 parts take 12.5 KB).
func (l *localRun) pendingSet(st backends.Status) ([]uint64, error) {
	bits := make([]uint64, (st.Total+63)/64)
	ctx, cancel := storeCtx(context.Background())
	defer cancel()
	err := l.store.Pending(ctx, l.jobID, func(p int64) error {
		i := p - st.FirstPart
		if i < 0 || i >= st.Total {
			return fmt.Errorf("pending part %d is outside the job", p)
		}
		bits[i/64] |= 1 << (uint(i) % 64)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pending parts of %s: %w", l.jobID, err)
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

func (l *localRun) childSpec(prefix string, m delivery, attempt int, first time.Time) childSpec {
	env := append(os.Environ(),
		"Message="+m.Message,
		"Subject="+m.Subject,
		"MessageId="+uuid.NewString(),
		"SentTimestamp="+first.UTC().Format(time.RFC3339Nano),
		"ApproximateFirstReceiveTimestamp="+first.UTC().Format(time.RFC3339Nano),
		"ApproximateReceiveCount="+strconv.Itoa(attempt),
	)
	if !l.prefix {
		prefix = ""
	}
	return childSpec{
		argv:   l.argv,
		env:    env,
		stdin:  nil,
		stdout: l.out.writer(false, prefix),
		stderr: l.out.writer(true, prefix),
		grace:  l.runner.grace,
	}
}

// runPart runs one part with wp run's semantics, retrying other failures.
func (l *localRun) runPart(ctx context.Context, t task, sigs chan os.Signal) {
	first := time.Now()
	d := delivery{Message: t.body, Subject: "map"}
	for attempt := 1; ; attempt++ {
		spec := l.childSpec(fmt.Sprintf("[part %d] ", t.part), d, attempt, first)
		o := l.runner.handle(ctx, d, spec, sigs)
		flushSpec(spec)
		switch {
		case l.interrupted.Load() && o.code != exitOK:
			return
		case o.failed:
			l.jobFailed.Store(true)
			l.stop.Store(true)
			return
		case o.code == exitOK && o.skipped:
			l.skipped.Add(1)
			if st, err := l.status(); err == nil && st.Failed {
				l.jobFailed.Store(true)
				l.stop.Store(true)
			}
			return
		case o.code == exitOK:
			l.done.Add(1)
			return
		case o.code == exitDrop && !o.ran:
			l.dropped.Add(1)
			return
		}
		if attempt > l.retries {
			l.failedParts.Add(1)
			l.log.Error("part still failing after retries", "jobid", l.jobID, "partid", t.part, "attempts", attempt, "exit_code", o.code)
			return
		}
		l.retried.Add(1)
		if l.stop.Load() {
			return
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
}

func flushSpec(s childSpec) {
	if w, ok := s.stdout.(*lineWriter); ok {
		w.Flush()
	}
	if w, ok := s.stderr.(*lineWriter); ok {
		w.Flush()
	}
}

func (l *localRun) status() (backends.Status, error) {
	ctx, cancel := storeCtx(context.Background())
	defer cancel()
	return l.store.Status(ctx, l.jobID)
}

// runReduce runs the reduce once every part is complete. It returns the
// reduce's exit code, or -1 when it did not run.
func (l *localRun) runReduce(ctx context.Context) int {
	st, err := l.status()
	if err != nil {
		l.log.Error("cannot read the job", "jobid", l.jobID, "error", err.Error())
		return -1
	}
	if st.Failed || st.Remaining > 0 || st.Reduced {
		if st.Reduced {
			l.log.Info("job already reduced", "jobid", l.jobID)
			return 0
		}
		return -1
	}
	body := l.pub.take()
	if body == "" {
		// Every part was done before this run (a resume), or a worker
		// that finished did not get to send it: claim and "send" now.
		lg := l.log.With("jobid", l.jobID, "subject", "reduce")
		if o := l.runner.ensureReduce(ctx, lg, l.jobID, st.Metadata, st.ReduceSent); o.code != exitOK {
			return -1
		}
		body = l.pub.take()
		if body == "" {
			body = reduceBody(l.jobID, st.Metadata) // sent by an interrupted run: run it again
		}
	}
	d := delivery{Message: body, Subject: "reduce"}
	first := time.Now()
	ch := make(chan os.Signal, 1)
	l.mu.Lock()
	l.sigs = append(l.sigs, ch)
	l.mu.Unlock()
	for attempt := 1; ; attempt++ {
		spec := l.childSpec("[reduce] ", d, attempt, first)
		o := l.runner.handle(ctx, d, spec, ch)
		flushSpec(spec)
		if o.failed {
			l.jobFailed.Store(true)
			return o.childRC
		}
		if o.code == exitOK || l.interrupted.Load() || attempt > l.retries {
			if o.ran {
				return o.childRC
			}
			return o.code
		}
		l.retried.Add(1)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
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
		"failed", l.failedParts.Load(),
		"retried", l.retried.Load(),
		"skipped", l.skipped.Load(),
		"remaining", st.Remaining,
		"reduce", reduce,
		"wall", took.String())
	switch {
	case l.interrupted.Load():
		fmt.Fprintf(l.c.App.ErrWriter, "wp: interrupted with %d parts pending; resume with:\n  wp local --resume %s -- %s\n", st.Remaining, l.jobID, shellJoin(l.argv))
		return exitCode(exitInterrupted)
	case l.jobFailed.Load() || st.Failed:
		l.log.Error("job failed", "jobid", l.jobID, "reason", st.Error)
		return exitCode(exitLocalFailed)
	case l.failedParts.Load() > 0 || l.dropped.Load() > 0:
		fmt.Fprintf(l.c.App.ErrWriter, "wp: %d parts failed after %d retries; run them again with:\n  wp local --resume %s -- %s\n", l.failedParts.Load()+l.dropped.Load(), l.retries, l.jobID, shellJoin(l.argv))
		return exitCode(exitLocalFailed)
	case reduceCode != 0:
		l.log.Error("reduce failed", "jobid", l.jobID, "reduce", reduce)
		return exitCode(exitLocalFailed)
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

// localProgress shows how far wp local is: a bar redrawn on a terminal,
// or a plain line every 10 seconds otherwise.
type localProgress struct {
	l     *localRun
	total int64
	base  int64
	quit  chan struct{}
	wg    sync.WaitGroup
}

func newLocalProgress(l *localRun, total, base int64) *localProgress {
	return &localProgress{l: l, total: total, base: base, quit: make(chan struct{})}
}

func (p *localProgress) line() string {
	done := p.base + p.l.done.Load()
	return fmt.Sprintf("%d/%d parts done (%.0f%%), %d failed, %d retried", done, p.total, 100*float64(done)/float64(max(p.total, 1)), p.l.failedParts.Load(), p.l.retried.Load())
}

func (p *localProgress) start() {
	term := isTerminal(p.l.c.App.ErrWriter)
	every := 10 * time.Second
	if term {
		every = 200 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				if term {
					p.l.out.setStatus("")
				}
				return
			case <-t.C:
				if term {
					p.l.out.setStatus(p.line())
				} else {
					p.l.log.Info("progress: " + p.line())
				}
			}
		}
	}()
}

func (p *localProgress) stop() {
	close(p.quit)
	p.wg.Wait()
}

// lockedOutput writes whole lines of many children to one stdout and one
// stderr, so lines never interleave mid-line, and keeps a status line (the
// progress bar) at the bottom of a terminal stderr.
type lockedOutput struct {
	mu     sync.Mutex
	stdout io.Writer
	stderr io.Writer
	status string
}

func newLockedOutput(stdout, stderr io.Writer) *lockedOutput {
	return &lockedOutput{stdout: stdout, stderr: stderr}
}

func (o *lockedOutput) writeLine(toErr bool, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.status != "" {
		io.WriteString(o.stderr, "\r\033[K")
	}
	if toErr {
		o.stderr.Write(b)
	} else {
		o.stdout.Write(b)
	}
	if o.status != "" {
		io.WriteString(o.stderr, o.status)
	}
}

func (o *lockedOutput) setStatus(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	io.WriteString(o.stderr, "\r\033[K"+s)
	o.status = s
}

func (o *lockedOutput) writer(toErr bool, prefix string) io.Writer {
	return &lineWriter{out: o, toErr: toErr, prefix: prefix}
}

// lineWriter buffers a child's output and hands it on a whole line at a
// time, each with the prefix. A line longer than 64 KiB is handed on in
// pieces.
type lineWriter struct {
	out    *lockedOutput
	toErr  bool
	prefix string
	buf    []byte
}

const maxPartialLine = 64 * 1024

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxPartialLine {
				w.emit(append(w.buf, '\n'))
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i+1]...)
		w.emit(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit(line []byte) {
	if w.prefix == "" {
		w.out.writeLine(w.toErr, line)
		return
	}
	b := make([]byte, 0, len(w.prefix)+len(line))
	b = append(append(b, w.prefix...), line...)
	w.out.writeLine(w.toErr, b)
}

// Flush hands on a last line that had no newline.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = w.buf[:0]
	}
}
