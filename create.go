package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/display"
	"github.com/wp-tools/wp/internal/publish"
	"github.com/wp-tools/wp/internal/worker"
)

func createCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "store a job and publish one map message per part",
		ArgsUsage: "< parts.ndjson",
		Description: `Reads parts from stdin: one JSON object a line (NDJSON), blank lines skipped.
Part ids are 0..N-1 in input order. The whole input is validated before
anything is written: a line that is not a JSON object, uses the reserved keys
jobid or partid, has two fields that become one WP_PART_ variable (my-url and
my_url), or would make a message over 256 KiB is reported with its line
number, and no job is created and nothing is published.

Each part is published to the SNS topic with Subject=map and body
{"jobid": ..., "partid": N, <the part's own fields>}. When every message is
published, the job id is printed alone on stdout.

If publishing fails part way, or Ctrl-C or SIGTERM stops it, wp says how many
parts were published and prints the command that finishes the job, to run as
printed (the same --jobid, --metadata, store and input; a store password is
read from WP_PROGRESS, never printed). The job is kept, parts are published
again, and duplicate map messages are harmless. Another input under the same
job id is refused: the job records a digest of its input.

Exit codes: 0 published; 1 bad input, store or SNS error; 2 wrong command line;
130, 143 interrupted by SIGINT, SIGTERM.`,
		Flags: []cli.Flag{
			jobIDFlag(),
			metadataFlag(),
			tolerateFlag(),
			reduceOnFailureFlag(),
			batchFlag(),
			batchBytesFlag(),
			expireAfterFlag(),
			progressFlag(),
			topicFlag(),
			&cli.IntFlag{Name: "concurrency", Value: publish.DefaultConcurrency, Usage: "PublishBatch calls in flight"},
		},
		Action: a.createAction,
	}
}

// parseMetadata checks --metadata is a JSON object and compacts it.
func parseMetadata(s string) (json.RawMessage, error) {
	b := bytes.TrimSpace([]byte(s))
	if len(b) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if b[0] != '{' || !json.Valid(b) {
		return nil, fmt.Errorf("--metadata must be a JSON object, e.g. '{\"name\": \"nightly\"}'")
	}
	// json.Valid accepts invalid UTF-8 inside strings, but SNS refuses it:
	// the reduce message could never be sent.
	if !utf8.Valid(b) {
		return nil, errors.New("--metadata is not valid UTF-8")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("--metadata: %v", err)
	}
	return buf.Bytes(), nil
}

// jobOptions are the checked job settings shared by create and local.
type jobOptions struct {
	id              string
	metadata        json.RawMessage
	given           bool // --jobid was given
	tolerance       backends.Tolerance
	reduceOnFailure bool
	digest          string // of the input, once read
	// batch and batchBytes pack parts into messages (batch 0: one a
	// message); expireAfter is how long the job is kept (0: for ever).
	batch, batchBytes int
	expireAfter       time.Duration
}

func parseJobOptions(c *cli.Context) (jobOptions, error) {
	var o jobOptions
	meta, err := parseMetadata(c.String("metadata"))
	if err != nil {
		return o, usageError("%v", err)
	}
	o.metadata = meta
	if o.tolerance, err = backends.ParseTolerance(c.String("tolerate")); err != nil {
		return o, usageError("--tolerate: %v", err)
	}
	o.reduceOnFailure = c.Bool("reduce-on-failure")
	o.id = c.String("jobid")
	o.given = o.id != ""
	if !o.given {
		o.id = uuid.NewString()
	}
	if err := backends.ValidateJobID(o.id); err != nil {
		return o, usageError("--jobid: %v", err)
	}
	if o.batch, o.batchBytes, err = parseBatch(c); err != nil {
		return o, err
	}
	if o.expireAfter, err = parseExpireAfter(c); err != nil {
		return o, err
	}
	return o, nil
}

// checkBatchBytes refuses, once the input is read, a --batch-bytes that a
// single part's message does not fit in.
func checkBatchBytes(o jobOptions, sp *spool) error {
	if o.batch == 0 {
		return nil
	}
	if one := worker.BatchSize(o.id, []string{strings.Repeat("x", sp.longest)}); one > o.batchBytes {
		return usageError("--batch-bytes %d: the largest part makes a batch message of %d bytes on its own; nothing was created", o.batchBytes, one)
	}
	return nil
}

// storeJob creates the job, or accepts an existing job with the same id,
// total and metadata (a re-run after a failed publish).
func (a *appState) storeJob(ctx context.Context, st *backends.Store, o jobOptions, total int64) (resumed bool, err error) {
	err = st.CreateJob(ctx, backends.Job{ID: o.id, Total: total, Metadata: o.metadata, Tolerance: o.tolerance, ReduceOnFailure: o.reduceOnFailure, Digest: o.digest,
		Batch: o.batch, BatchBytes: o.batchBytes, ExpireAfter: o.expireAfter})
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, backends.ErrExists) || !o.given {
		return false, err
	}
	s, serr := st.Status(ctx, o.id)
	if serr != nil {
		return false, serr
	}
	if s.Batch != o.batch || (o.batch > 0 && s.BatchBytes != o.batchBytes) {
		return false, fmt.Errorf("job %s already exists with %s; this run asks for %s: give the same --batch and --batch-bytes, or use another --jobid", o.id, batchWords(s.Batch, s.BatchBytes), batchWords(o.batch, o.batchBytes))
	}
	if s.Total != total || !sameJSON(s.Metadata, o.metadata) {
		return false, fmt.Errorf("job %s already exists with %d parts and metadata %s; this input has %d parts and metadata %s: use another --jobid", o.id, s.Total, orEmpty(s.Metadata), total, o.metadata)
	}
	// A job created by an older wp, or another tool, has no digest: it is
	// taken on its parts and metadata alone, as before.
	if s.Digest != "" && o.digest != "" && s.Digest != o.digest {
		return false, fmt.Errorf("job %s already exists with %d parts, but from another input (digest %s; this input's is %s): give the input the job was created from, or use another --jobid", o.id, s.Total, s.Digest, o.digest)
	}
	a.logger().Info("job exists with the same parts and metadata: publishing its parts again (duplicate map messages are harmless)", "jobid", o.id, "parts", total, "remaining", s.Remaining)
	return true, nil
}

// batchWords says how a job packs its parts into messages.
func batchWords(batch, bytes int) string {
	if batch == 0 {
		return "one part a message"
	}
	return fmt.Sprintf("batches of %d parts and %d bytes", batch, bytes)
}

func orEmpty(m json.RawMessage) string {
	if len(m) == 0 {
		return "{}"
	}
	return string(m)
}

func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 {
		a = json.RawMessage(`{}`)
	}
	if len(b) == 0 {
		b = json.RawMessage(`{}`)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

func (a *appState) createAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("create takes no arguments (parts are read from stdin), got %q", c.Args().First())
	}
	o, err := parseJobOptions(c)
	if err != nil {
		return err
	}
	topic := c.String("topic")
	if topic == "" {
		return usageError("no SNS topic: set --topic or the WorkTopic environment variable")
	}
	if c.Int("concurrency") < 1 {
		return usageError("--concurrency must be at least 1")
	}
	lg := a.logger().With("jobid", o.id)

	// Validate everything before writing anything.
	sp, err := newSpool()
	if err != nil {
		return err
	}
	defer sp.close()
	if err := readParts(c.App.Reader, o.id, sp); err != nil {
		return fmt.Errorf("invalid input, nothing was created: %w", err)
	}
	o.digest = sp.digest()
	if err := checkBatchBytes(o, sp); err != nil {
		return err
	}
	total := sp.count

	ctx := c.Context
	pub, err := publish.NewFromEnv(ctx, topic, publish.WithConcurrency(c.Int("concurrency")))
	if err != nil {
		return fmt.Errorf("sns: %w", err)
	}
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	// From here on the job is (being) stored: Ctrl-C or SIGTERM stops the
	// publishing and says how far it got and how to finish.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	if _, err := a.storeJob(ctx, st, o, total); err != nil {
		return err
	}
	lg.Debug("job stored", "parts", total)
	next, messages, err := sp.messages(o, st.ShardSize())
	if err != nil {
		return err
	}
	what := "parts"
	if o.batch > 0 {
		what = "messages"
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sig atomic.Value
	go func() {
		select {
		case s := <-sigc:
			sig.Store(s)
			cancel()
		case <-pctx.Done():
		}
	}()
	bar := display.NewBar(c.App.ErrWriter, "publishing", messages)
	start := time.Now()
	sent, err := pub.PublishAll(pctx, "map", next, bar.Set)
	bar.Done()
	if s, _ := sig.Load().(os.Signal); s != nil {
		a.tellRerun(lg, fmt.Sprintf("interrupted by %s: %d of %d %s published; the job is stored", child.SignalName(s), sent, messages, what),
			finishHow, createRerun(c, o), "published", sent, what, messages)
		return exitSilently(exitSignalBase + int(s.(syscall.Signal)))
	}
	if err != nil {
		a.tellRerun(lg, fmt.Sprintf("publishing failed part way: %d of %d %s published; the job is stored", sent, messages, what),
			finishHow, createRerun(c, o), "published", sent, what, messages, "error", err.Error())
		return exitSilently(exitError)
	}
	lg.Debug("published", "parts", total, "messages", sent, "seconds", time.Since(start).Seconds())
	fmt.Fprintln(c.App.Writer, o.id)
	return nil
}

// finishHow says what the rerun a stopped wp create prints does.
const finishHow = "finish publishing (the job is kept; its parts are published again, and duplicate map messages are harmless) with"

// createRerun is the wp create command line that finishes publishing job
// o: the same job id, metadata, store and topic, and the same input.
func createRerun(c *cli.Context, o jobOptions) string {
	words := []string{"wp", "create", "--jobid", shellQuote(o.id)}
	words = append(words, rerunFlags(c, "jobid", "metadata", "topic")...)
	if !sameJSON(o.metadata, nil) {
		words = append(words, "--metadata", shellQuote(string(o.metadata)))
	}
	words = append(words, "--topic", shellQuote(c.String("topic")), "<", inputArg(c))
	return strings.Join(words, " ")
}
