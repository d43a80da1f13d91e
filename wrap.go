package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/publish"
)

const (
	defaultGrace = 10 * time.Second
	// defaultReduceLease is how long a finisher holds the right to publish
	// the reduce. If it dies in that time, a later delivery of any part of
	// the job sends the reduce once the lease has run out.
	defaultReduceLease = 2 * time.Minute
	// reduceClaimWait is how long wp run waits for another worker that
	// holds the reduce claim to record the reduce as sent.
	reduceClaimWait = 5 * time.Second
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a worker command for one watchbot message and record the outcome",
		ArgsUsage: "-- CMD [ARGS...]",
		Description: `Reads the message watchbot hands the worker: Message (JSON with jobid and
partid) and Subject (map or reduce). Runs CMD as a child process with stdin,
stdout and stderr passed through and the environment inherited, plus:

   WP_JOB_ID, WP_PART_ID, WP_SUBJECT
   WP_PART_<FIELD>   each top-level string, number or boolean field of the part
                     (upper-cased; characters other than A-Z, 0-9 and _ become _)
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

If every part is already complete but the reduce was never sent (the finisher
crashed or could not publish), any later delivery of a part sends it.

Signals: SIGTERM, SIGINT and SIGHUP are forwarded to CMD's process group; wp
waits for it (SIGKILL after --grace), records nothing and exits with CMD's
status (128+N if CMD was killed by signal N, or if it exited 0 after the signal).

Exit codes:
   CMD's own code  as above (128+N when CMD was killed by signal N)
   0    the part was skipped (job failed) or already complete
   3    the message can never succeed (no Message, not JSON, bad jobid or
        partid, no such job): watchbot drops it
   75   the store or SNS could not be reached, before CMD ran (CMD is then not
        run) or while recording its result; or every part is complete and
        another worker has held the reduce claim for 5s without recording
        the reduce as sent (it may have died): watchbot retries the message
   126, 127  CMD could not be started (not executable, not found)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "fail-job-on", Usage: "exit codes of CMD that fail the whole job, e.g. 3,10-20", EnvVars: []string{"WP_FAIL_JOB_ON"}},
			&cli.DurationFlag{Name: "grace", Value: defaultGrace, Usage: "after forwarding a signal, how long CMD has to exit before SIGKILL", EnvVars: []string{"WP_GRACE"}},
			&cli.DurationFlag{Name: "reduce-lease", Value: defaultReduceLease, Usage: "how long a worker holds the right to publish the reduce before another may", EnvVars: []string{"WP_REDUCE_LEASE"}},
			progressFlag(),
			topicFlag(),
		},
		Action: runAction,
	}
}

// codeSet is a set of exit codes such as "3,10-20".
type codeSet map[int]bool

// parseCodeSet parses a comma-separated list of exit codes and ranges
// (1 to 255). Its errors name the bad item.
func parseCodeSet(s string) (codeSet, error) {
	set := codeSet{}
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("%q: empty item (want codes and ranges such as 3,10-20)", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := parseCode(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %q: %v", s, item, err)
		}
		b := a
		if isRange {
			if b, err = parseCode(hi); err != nil {
				return nil, fmt.Errorf("%q: %q: %v", s, item, err)
			}
			if b < a {
				return nil, fmt.Errorf("%q: %q: range runs backwards", s, item)
			}
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	return set, nil
}

func parseCode(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not an exit code", s)
	}
	if n < 1 || n > 255 {
		return 0, fmt.Errorf("%d is not an exit code from 1 to 255", n)
	}
	return n, nil
}

func (s codeSet) String() string {
	codes := make([]int, 0, len(s))
	for c := range s {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

// delivery is one message as watchbot hands it to a worker.
type delivery struct {
	Message string
	Subject string
}

// message is a parsed map or reduce message.
type message struct {
	subject  string // "map" or "reduce"
	jobID    string
	part     int64
	fields   map[string]json.RawMessage
	metadata json.RawMessage
}

// poisonError is a message that can never succeed: watchbot should drop it.
type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

func poison(format string, a ...any) error { return &poisonError{fmt.Errorf(format, a...)} }

// parseDelivery checks a message before anything else happens.
func parseDelivery(d delivery) (message, error) {
	var m message
	if d.Message == "" {
		return m, poison("no Message: wp run expects the watchbot message in the Message environment variable")
	}
	body := bytes.TrimSpace([]byte(d.Message))
	if len(body) == 0 || body[0] != '{' {
		return m, poison("Message is not a JSON object")
	}
	if err := json.Unmarshal(body, &m.fields); err != nil {
		return m, poison("Message is not valid JSON: %v", err)
	}
	raw, ok := m.fields["jobid"]
	if !ok {
		return m, poison("Message has no jobid")
	}
	if err := json.Unmarshal(raw, &m.jobID); err != nil {
		return m, poison("Message jobid is not a string: %s", truncateBytes(raw, 40))
	}
	if err := backends.ValidateJobID(m.jobID); err != nil {
		return m, poison("Message %v", err)
	}
	_, hasPart := m.fields["partid"]
	switch d.Subject {
	case "map":
	case "reduce":
	case "":
		if !hasPart {
			return m, poison("no Subject and no partid: cannot tell a map message from a reduce")
		}
	default:
		return m, poison("unknown Subject %q: want map or reduce", d.Subject)
	}
	m.subject = d.Subject
	if m.subject == "" {
		m.subject = "map"
	}
	if m.subject == "reduce" {
		m.metadata = m.fields["metadata"]
		return m, nil
	}
	if !hasPart {
		return m, poison("map message has no partid")
	}
	p, err := parsePartID(m.fields["partid"])
	if err != nil {
		return m, poison("Message partid %v", err)
	}
	m.part = p
	return m, nil
}

// parsePartID accepts a non-negative JSON integer.
func parsePartID(raw json.RawMessage) (int64, error) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s[0] == '"' {
		return 0, fmt.Errorf("%s is not a number", truncateBytes(raw, 40))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%s is too large", truncateBytes(raw, 40))
		}
		return 0, fmt.Errorf("%s is not a whole number", truncateBytes(raw, 40))
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

// partEnv is the environment a part's command gets on top of base: WP_JOB_ID,
// WP_PART_ID, WP_SUBJECT and WP_PART_<FIELD> for each top-level scalar field.
// Inherited WP_PART_* variables are dropped so none is stale.
func partEnv(base []string, m message, lg *slog.Logger) []string {
	env := make([]string, 0, len(base)+len(m.fields)+4)
	for _, kv := range base {
		if strings.HasPrefix(kv, "WP_PART_") || strings.HasPrefix(kv, "WP_JOB_ID=") || strings.HasPrefix(kv, "WP_SUBJECT=") || strings.HasPrefix(kv, "WP_METADATA=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "WP_JOB_ID="+m.jobID, "WP_SUBJECT="+m.subject)
	if m.subject == "reduce" {
		meta := m.metadata
		if len(meta) == 0 {
			meta = json.RawMessage(`{}`)
		}
		return append(env, "WP_METADATA="+string(meta))
	}
	env = append(env, "WP_PART_ID="+strconv.FormatInt(m.part, 10))
	keys := make([]string, 0, len(m.fields))
	for k := range m.fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "jobid" || k == "partid" {
			continue
		}
		v, ok := scalarString(m.fields[k])
		if !ok {
			continue
		}
		if strings.IndexByte(v, 0) >= 0 {
			lg.Warn("part field holds a NUL byte: not passed in the environment", "field", k)
			continue
		}
		env = append(env, "WP_PART_"+envName(k)+"="+v)
	}
	return env
}

// envName upper-cases a field name and turns every character other than
// A-Z, 0-9 and _ into _.
func envName(k string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(k) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// scalarString renders a JSON string, number or boolean as shell text;
// numbers keep their exact JSON spelling. Objects, arrays and null are not
// scalars.
func scalarString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		return string(raw), true
	case '{', '[', 'n':
		return "", false
	default:
		return string(raw), true
	}
}

// publisher sends one message; wp run sends the reduce through SNS, wp local
// queues it for itself.
type publisher interface {
	Publish(ctx context.Context, subject, body string) error
}

// partRunner holds the part semantics, shared by wp run and wp local.
type partRunner struct {
	store     *backends.Store
	pub       publisher
	failJobOn codeSet
	grace     time.Duration
	lease     time.Duration
	log       *slog.Logger
	// awaitClaim: when another worker holds the reduce claim, wait up to
	// reduceClaimWait for it to record the reduce as sent, then exit 75
	// (retry) rather than 0, so that a dead finisher's reduce is not lost
	// with this message (wp run; wp local is one process).
	awaitClaim bool
	// known, when set, is the job as the caller already read it (wp local,
	// which runs many parts of one job): map deliveries of that job use it
	// instead of reading the store before each part. A job failed
	// meanwhile is still caught, by Complete.
	known *backends.Status
}

// outcome is what handling one delivery came to.
type outcome struct {
	code     int  // wp's exit code
	ran      bool // the command ran
	childRC  int  // the command's exit code, when it ran
	finished bool // this delivery finished the job
	failed   bool // this delivery failed the job
	skipped  bool // the job failed or was done: the command did not run, or ran and nothing was recorded
}

// handle runs one delivery: it checks the message and job, runs the command,
// and records the outcome. Errors are logged here; the returned code is what
// wp exits with.
func (r *partRunner) handle(ctx context.Context, d delivery, spec childSpec, sigs <-chan os.Signal) outcome {
	m, err := parseDelivery(d)
	if err != nil {
		r.log.Error("dropping message: "+err.Error(), "subject", d.Subject)
		return outcome{code: exitDrop}
	}
	lg := r.log.With("jobid", m.jobID, "subject", m.subject)
	if m.subject == "map" {
		lg = lg.With("partid", m.part)
	}
	var st backends.Status
	if r.known != nil && r.known.ID == m.jobID && m.subject == "map" {
		st = *r.known
	} else {
		st, err = r.status(ctx, m.jobID)
	}
	if errors.Is(err, backends.ErrNotFound) {
		lg.Error("dropping message: no such job")
		return outcome{code: exitDrop}
	}
	if err != nil {
		lg.Error("cannot read the job from the progress store; the command was not run and the message will be retried", "error", err.Error())
		return outcome{code: exitRetry}
	}
	if m.subject == "reduce" {
		return r.reduce(ctx, lg, m, st, spec, sigs)
	}
	if m.part < st.FirstPart || m.part >= st.FirstPart+st.Total {
		lg.Error(fmt.Sprintf("dropping message: part %d is not a part of this job (parts %d to %d)", m.part, st.FirstPart, st.FirstPart+st.Total-1))
		return outcome{code: exitDrop}
	}
	if st.Failed {
		lg.Info("job has failed: skipping part", "reason", st.Error)
		return outcome{code: exitOK, skipped: true}
	}
	if st.Remaining == 0 {
		lg.Info("every part is already complete: not running the command")
		o := r.ensureReduce(ctx, lg, m.jobID, st.Metadata, st.ReduceSent)
		o.skipped = true
		return o
	}

	o, lg, handled := r.runCommand(ctx, lg, m, spec, sigs)
	switch {
	case handled:
		return o
	case o.childRC == 0:
		return r.complete(ctx, lg, m, st, o)
	default:
		lg.Warn("command failed: nothing recorded; the message will be retried")
		return o
	}
}

// runCommand runs the command for one message and deals with what map and
// reduce share: a command that was interrupted, and a fail-job code. It
// returns handled == false when the caller still has to act on the exit
// code (0, or another code), with a logger that carries the exit code and
// duration.
func (r *partRunner) runCommand(ctx context.Context, lg *slog.Logger, m message, spec childSpec, sigs <-chan os.Signal) (outcome, *slog.Logger, bool) {
	spec.env = partEnv(spec.env, m, lg)
	res, err := runChild(ctx, spec, sigs, lg)
	if err != nil {
		lg.Error("command could not start", "error", err.Error(), "exit_code", res.code)
	}
	o := outcome{ran: err == nil, childRC: res.code, code: res.code}
	lg = lg.With("exit_code", res.code, "duration_ms", res.took.Milliseconds())
	what := fmt.Sprintf("part %d", m.part)
	if m.subject == "reduce" {
		what = "reduce"
	}
	switch {
	case res.signal != nil:
		// Nothing is recorded, even if the command exited 0 after the
		// signal: it may have stopped half way. Exit non-zero so the
		// message is retried.
		if o.code == 0 {
			o.code = 128 + int(res.signal.(syscall.Signal))
		}
		lg.Warn("interrupted: nothing recorded for the "+what+"; the message will be retried", "signal", res.signal.String())
		return o, lg, true
	case res.code != 0 && r.failJobOn[res.code]:
		reason := fmt.Sprintf("%s exited with code %d", what, res.code)
		if err := r.fail(ctx, m.jobID, reason); err != nil {
			lg.Error("command asked to fail the job, but the progress store could not record it; the message will be retried", "error", err.Error())
			o.code = exitRetry
			return o, lg, true
		}
		lg.Warn("job failed: later parts will be skipped", "reason", reason)
		o.failed = true
		return o, lg, true
	}
	return o, lg, false
}

// status reads the job the cheap way (Peek): Remaining is only known to be
// zero or not, which is all a delivery needs.
func (r *partRunner) status(ctx context.Context, id string) (backends.Status, error) {
	c, cancel := storeCtx(ctx)
	defer cancel()
	return r.store.Peek(c, id)
}

func (r *partRunner) fail(ctx context.Context, id, reason string) error {
	c, cancel := storeCtx(ctx)
	defer cancel()
	return r.store.Fail(c, id, reason)
}

func (r *partRunner) complete(ctx context.Context, lg *slog.Logger, m message, st backends.Status, o outcome) outcome {
	c, cancel := storeCtx(ctx)
	comp, err := r.store.Complete(c, m.jobID, m.part)
	cancel()
	switch {
	case errors.Is(err, backends.ErrJobFailed):
		lg.Warn("the job failed while this part ran: nothing recorded")
		o.code = exitOK
		o.skipped = true
		return o
	case errors.Is(err, backends.ErrNotFound), errors.Is(err, backends.ErrPartRange):
		lg.Error("dropping message: cannot complete the part", "error", err.Error())
		o.code = exitDrop
		return o
	case err != nil:
		lg.Error("the command succeeded but its completion could not be recorded; the message will be retried", "error", err.Error())
		o.code = exitRetry
		return o
	}
	o.code = exitOK
	switch {
	case comp.Finisher:
		lg.Info("part complete: this completion finished the job")
		o.finished = true
	case comp.Duplicate:
		lg.Info("part was already complete (duplicate delivery)")
	default:
		lg.Info("part complete")
	}
	if comp.Done && !comp.ReduceSent {
		r2 := r.ensureReduce(ctx, lg, m.jobID, st.Metadata, false)
		r2.ran, r2.childRC, r2.finished = o.ran, o.childRC, o.finished
		return r2
	}
	return o
}

// reduceBody is the reduce message: {"jobid": ..., "metadata": {...}}.
func reduceBody(jobID string, meta json.RawMessage) string {
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	b, _ := json.Marshal(struct {
		JobID    string          `json:"jobid"`
		Metadata json.RawMessage `json:"metadata"`
	}{jobID, meta})
	return string(b)
}

// ensureReduce sends the reduce unless it was sent or another worker holds
// the claim: claim, publish, record. A failed publish releases the claim and
// exits 75 so the message (and so the reduce) is retried.
func (r *partRunner) ensureReduce(ctx context.Context, lg *slog.Logger, jobID string, meta json.RawMessage, sent bool) outcome {
	if sent {
		return outcome{code: exitOK}
	}
	deadline := time.Now().Add(reduceClaimWait)
	var token string
	for {
		var ok bool
		var err error
		cc, ccancel := storeCtx(ctx)
		token, ok, err = r.store.ClaimReduce(cc, jobID, r.lease)
		ccancel()
		if err != nil {
			lg.Error("cannot claim the reduce; the message will be retried", "error", err.Error())
			return outcome{code: exitRetry}
		}
		if ok {
			break
		}
		if !r.awaitClaim {
			lg.Info("reduce already sent or being sent by another worker")
			return outcome{code: exitOK}
		}
		// Another worker holds the claim. If it is alive it records the
		// reduce as sent within moments; if it died, exiting 0 here would
		// delete this message, and the reduce would be lost whenever no
		// other delivery comes after the claim runs out.
		st, err := r.status(ctx, jobID)
		if err != nil {
			lg.Error("cannot read the job to learn whether the reduce was sent; the message will be retried", "error", err.Error())
			return outcome{code: exitRetry}
		}
		if st.ReduceSent || st.Failed {
			lg.Info("reduce already sent by another worker")
			return outcome{code: exitOK}
		}
		if time.Now().After(deadline) {
			lg.Warn("another worker holds the reduce claim but has not recorded the reduce as sent (it may have died; its claim runs out after the reduce lease): the message will be retried so that the reduce is not lost", "lease", r.lease.String())
			return outcome{code: exitRetry}
		}
		select {
		case <-ctx.Done():
			return outcome{code: exitRetry}
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Give up publishing well before the claim runs out, so that no other
	// worker can claim and publish while this one still might.
	pctx, pcancel := context.WithTimeout(ctx, r.lease/2)
	err := r.pub.Publish(pctx, "reduce", reduceBody(jobID, meta))
	pcancel()
	// The publish may have taken its retries' time: bound the store calls
	// that follow on their own.
	c, cancel := storeCtx(ctx)
	defer cancel()
	if err != nil {
		if rerr := r.store.ReleaseReduce(c, jobID, token); rerr != nil {
			lg.Warn("cannot release the reduce claim; it expires by itself", "lease", r.lease.String(), "error", rerr.Error())
		}
		lg.Error("cannot publish the reduce message; the message will be retried and the retry sends it", "error", err.Error())
		return outcome{code: exitRetry}
	}
	if err := r.store.MarkReduceSent(c, jobID); err != nil {
		// Published but not recorded: exiting 0 keeps the claim until its
		// lease runs out; only a later duplicate delivery after that could
		// send a second reduce (the documented window).
		lg.Warn("reduce published but not recorded as sent", "error", err.Error())
		return outcome{code: exitOK}
	}
	lg.Info("reduce message published")
	return outcome{code: exitOK}
}

func (r *partRunner) reduce(ctx context.Context, lg *slog.Logger, m message, st backends.Status, spec childSpec, sigs <-chan os.Signal) outcome {
	if st.Failed {
		lg.Info("job has failed: skipping reduce", "reason", st.Error)
		return outcome{code: exitOK, skipped: true}
	}
	if st.Reduced {
		lg.Info("job already reduced: skipping duplicate reduce message")
		return outcome{code: exitOK, skipped: true}
	}
	if len(m.metadata) == 0 {
		m.metadata = st.Metadata
	}
	o, lg, handled := r.runCommand(ctx, lg, m, spec, sigs)
	switch {
	case handled:
	case o.childRC == 0:
		c, cancel := storeCtx(ctx)
		defer cancel()
		if err := r.store.MarkReduced(c, m.jobID); err != nil {
			lg.Warn("reduce succeeded but could not be recorded", "error", err.Error())
		} else {
			lg.Info("reduce complete")
		}
	default:
		lg.Warn("reduce command failed: the message will be retried")
	}
	return o
}

func runAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usageError("wp run needs a command: wp run [flags] -- CMD [ARGS...]")
	}
	failOn, err := parseCodeSet(c.String("fail-job-on"))
	if err != nil {
		return usageError("--fail-job-on %v", err)
	}
	if c.Duration("grace") <= 0 || c.Duration("reduce-lease") <= 0 {
		return usageError("--grace and --reduce-lease must be positive")
	}
	lg := logger(c)
	d := delivery{Message: os.Getenv("Message"), Subject: os.Getenv("Subject")}
	// A poison message is dropped before touching the store.
	if _, err := parseDelivery(d); err != nil {
		lg.Error("dropping message: " + err.Error())
		return exitCode(exitDrop)
	}
	// Catch signals from now on, so none kills wp before the child runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	st, err := openStore(c)
	if err != nil {
		lg.Error("cannot open the progress store; the command was not run and the message will be retried", "error", err.Error())
		return exitCode(exitRetry)
	}
	defer st.Close()
	pub := &lazyPublisher{topic: c.String("topic")}
	r := &partRunner{
		store:      st,
		pub:        pub,
		failJobOn:  failOn,
		grace:      c.Duration("grace"),
		lease:      c.Duration("reduce-lease"),
		log:        lg,
		awaitClaim: true,
	}
	spec := childSpec{argv: argv, env: os.Environ(), stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, grace: r.grace}
	o := r.handle(c.Context, d, spec, sigs)
	return exitCode(o.code)
}

// lazyPublisher connects to SNS only when a reduce must be sent, so a map
// part that does not finish the job needs no topic and no SNS call.
type lazyPublisher struct {
	topic string
	pub   *publish.Publisher
}

func (l *lazyPublisher) Publish(ctx context.Context, subject, body string) error {
	if l.topic == "" {
		return errors.New("no SNS topic to publish the reduce to: set --topic or the WorkTopic environment variable")
	}
	if l.pub == nil {
		p, err := publish.NewFromEnv(ctx, l.topic)
		if err != nil {
			return err
		}
		l.pub = p
	}
	return l.pub.Publish(ctx, subject, body)
}
