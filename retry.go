package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/display"
	"github.com/wp-tools/wp/internal/partset"
	"github.com/wp-tools/wp/internal/publish"
	"github.com/wp-tools/wp/internal/worker"
)

func retryCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "retry",
		Usage:     "run a job's given-up (or pending) parts again: put them back to pending and publish their map messages",
		ArgsUsage: "JOBID < parts.ndjson",
		Description: `Puts the chosen parts back to pending and publishes their map messages again,
each part's body taken from the NDJSON the job was created from (on stdin).
--given-up (the default) chooses the parts given up; --pending the parts still
pending (their messages may have been lost, e.g. to a dead-letter queue).

The input must be the file the job was created from: wp create recorded a
digest of it, and another file (or one of another length) is refused. A job
created by an older wp, or by the Python or Node library, records no digest:
--force takes the input as given (it must still have the job's number of
parts). A job that failed only because more parts were given up than it
tolerates runs again; a job failed otherwise is refused. If the job's reduce
was already sent, it is sent again once the retried parts end.

Exit codes: 0 retried (or, with --dry-run, listed); 1 no such job, nothing to
retry, another input, a failed job, store or SNS error; 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "given-up", Usage: "retry the given-up parts (the default)"},
			&cli.BoolFlag{Name: "pending", Usage: "publish the pending parts' map messages again"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the part ids that would be retried; change nothing"},
			&cli.BoolFlag{Name: "force", Usage: "accept an input whose digest the job does not record, or that differs from it"},
			progressFlag(),
			topicFlag(),
			&cli.IntFlag{Name: "concurrency", Value: publish.DefaultConcurrency, Usage: "PublishBatch calls in flight"},
		},
		Action: a.retryAction,
	}
}

func (a *appState) retryAction(c *cli.Context) error {
	givenUp, pending := c.Bool("given-up"), c.Bool("pending")
	if !givenUp && !pending {
		givenUp = true
	}
	dry := c.Bool("dry-run")
	topic := c.String("topic")
	if topic == "" && !dry {
		return usageError("no SNS topic: set --topic or the WorkTopic environment variable")
	}
	if c.Int("concurrency") < 1 {
		return usageError("--concurrency must be at least 1")
	}
	return a.withJob(c, func(st *backends.Store, id string) error {
		lg := a.logger().With("jobid", id)
		job, err := st.Status(c.Context, id)
		if err != nil {
			return err
		}
		if job.Failed && !job.FailedByTolerance {
			return fmt.Errorf("job %s has failed (%s): wp retry runs again only a job that failed because more parts were given up than it tolerates; nothing was changed", id, job.Error)
		}
		sp, err := newSpool()
		if err != nil {
			return err
		}
		defer sp.close()
		if err := retryInput(c, job, sp); err != nil {
			return err
		}
		plan, err := chooseRetry(c.Context, st, job, givenUp, pending, lg)
		if err != nil {
			return err
		}
		if dry {
			return plan.print(c, st, lg)
		}
		return a.publishRetry(c, st, job, sp, plan, lg)
	})
}

// retryInput reads the input and checks that it is the one the job was
// created from.
func retryInput(c *cli.Context, job backends.Status, sp *spool) error {
	id := job.ID
	if err := readParts(c.App.Reader, id, sp); err != nil {
		return fmt.Errorf("invalid input, nothing was changed: %w", err)
	}
	if sp.count != job.Total {
		return fmt.Errorf("the input has %d parts, job %s has %d: give the file the job was created from; nothing was changed", sp.count, id, job.Total)
	}
	switch d := sp.digest(); {
	case c.Bool("force"):
	case job.Digest == "":
		return fmt.Errorf("job %s records no digest of its input (it was created by an older wp, or by the Python or Node library): if this is the file it was created from, pass --force; nothing was changed", id)
	case job.Digest != d:
		return fmt.Errorf("the input's digest %s is not job %s's (%s): give the file the job was created from (or --force to publish this one); nothing was changed", short(d), id, short(job.Digest))
	}
	return nil
}

// retryPlan is what wp retry chose: the given-up parts to put back to
// pending, and the parts whose messages are published (the pending parts
// so far; the given-up ones join them once Retry moved them).
type retryPlan struct {
	job      backends.Status
	gaveUp   []int64
	npending int64
	pending  bool // --pending: the pending parts are chosen
	chosen   *partset.Set
}

// chooseRetry reads which parts wp retry would retry.
func chooseRetry(ctx context.Context, st *backends.Store, job backends.Status, givenUp, pending bool, lg *slog.Logger) (*retryPlan, error) {
	p := &retryPlan{job: job, pending: pending, chosen: partset.New(job.FirstPart, job.Total)}
	if givenUp {
		if err := st.GivenUp(ctx, job.ID, func(g backends.GivenUpPart) error {
			p.gaveUp = append(p.gaveUp, g.Part)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if pending {
		if err := st.Pending(ctx, job.ID, func(part int64) error {
			p.choose(part, lg)
			p.npending++
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if len(p.gaveUp) == 0 && p.npending == 0 {
		what := "no given-up parts"
		switch {
		case givenUp && pending:
			what = "no given-up and no pending parts"
		case pending:
			what = "no pending parts"
		}
		return nil, fmt.Errorf("job %s has %s: nothing to retry", job.ID, what)
	}
	return p, nil
}

// choose adds part to the parts whose messages are published.
func (p *retryPlan) choose(part int64, lg *slog.Logger) {
	if !p.chosen.Add(part) {
		// A legacy job whose numbering is not known: its parts can
		// only be matched to input lines when it is.
		lg.Warn("part is not a line of the input: skipped", "partid", part, "first_part", p.job.FirstPart)
	}
}

// print is --dry-run: the parts, one a line, and nothing changed.
func (p *retryPlan) print(c *cli.Context, st *backends.Store, lg *slog.Logger) error {
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	for _, part := range p.gaveUp {
		fmt.Fprintf(w, "%d\tgiven up\n", part)
	}
	if p.pending {
		if err := st.Pending(c.Context, p.job.ID, func(part int64) error {
			_, err := fmt.Fprintf(w, "%d\tpending\n", part)
			return err
		}); err != nil {
			return err
		}
	}
	lg.Info("dry run: nothing changed", "given_up", len(p.gaveUp), "pending", p.npending)
	return nil
}

// publishRetry puts the plan's given-up parts back to pending, then
// publishes the chosen parts' map messages, each body the input's line.
func (a *appState) publishRetry(c *cli.Context, st *backends.Store, job backends.Status, sp *spool, p *retryPlan, lg *slog.Logger) error {
	ctx, id := c.Context, job.ID
	pub, err := publish.NewFromEnv(ctx, c.String("topic"), publish.WithConcurrency(c.Int("concurrency")))
	if err != nil {
		return fmt.Errorf("sns: %w", err)
	}
	moved, err := st.RetryAll(ctx, id, p.gaveUp, func(m []int64) {
		for _, part := range m {
			p.choose(part, lg)
		}
	})
	if err != nil {
		if moved > 0 {
			lg.Error("some given-up parts are pending again, but their messages were not published: publish them with wp retry --pending", "moved", moved)
		}
		return err
	}
	total := moved + p.npending
	if total == 0 {
		return fmt.Errorf("job %s: its given-up parts were completed or retried meanwhile: nothing to retry", id)
	}
	next, err := sp.reader()
	if err != nil {
		return err
	}
	i := int64(-1)
	chosenNext := func() (int64, string, bool, error) {
		for {
			body, ok, err := next()
			if !ok || err != nil {
				return 0, "", false, err
			}
			i++
			part := job.FirstPart + i
			if !p.chosen.Has(part) {
				continue
			}
			if job.FirstPart != 0 {
				body = renumber(body, id, i, part)
			}
			return part, body, true, nil
		}
	}
	// Batched as the job was created: consecutive chosen parts share a
	// message, as wp create packed them.
	messages := func() (string, bool, error) {
		_, body, ok, err := chosenNext()
		return body, ok, err
	}
	if job.Batch > 0 {
		pack := worker.Packer{JobID: id, Parts: job.Batch, Bytes: job.BatchBytes, Shard: st.ShardSize()}.Pack(chosenNext)
		messages = func() (string, bool, error) {
			m, _, ok, err := pack()
			return m, ok, err
		}
	}
	var bar *display.Bar
	progress := func(int) {}
	if job.Batch == 0 { // a message a part: the bar counts both
		bar = display.NewBar(c.App.ErrWriter, "publishing", total)
		progress = bar.Set
	}
	start := time.Now()
	sent, err := pub.PublishAll(ctx, "map", messages, progress)
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		done := fmt.Sprintf("%d of %d parts published", sent, total)
		if job.Batch > 0 {
			done = fmt.Sprintf("%d messages of the %d parts published", sent, total)
		}
		a.tellRerun(lg, "publishing failed part way: "+done+"; the parts are pending",
			"publish their messages (duplicate map messages are harmless) with", retryRerun(c, id),
			"published", sent, "parts", total, "error", err.Error())
		return exitSilently(exitError)
	}
	lg.Info("retried", "given_up", moved, "pending", p.npending, "published", sent, "parts", total, "seconds", time.Since(start).Seconds())
	return nil
}

// renumber gives a map message (as worker.MapBody makes it, with part id from)
// the part id to, for jobs numbered from 1 (the Node library's).
func renumber(body, jobID string, from, to int64) string {
	q, _ := jsonString(jobID)
	old := `{"jobid":` + q + `,"partid":` + strconv.FormatInt(from, 10)
	if !strings.HasPrefix(body, old) {
		return body
	}
	return `{"jobid":` + q + `,"partid":` + strconv.FormatInt(to, 10) + body[len(old):]
}

func jsonString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// short is a digest cut for a message.
func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "..."
	}
	return d
}
