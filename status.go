package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/display"
)

// jobJSON is the --json form of a job, for wp info and wp ls.
type jobJSON struct {
	JobID      string          `json:"jobid"`
	State      string          `json:"state"`
	Total      int64           `json:"total"`
	Completed  int64           `json:"completed"`
	Remaining  int64           `json:"remaining"`
	Progress   float64         `json:"progress"`
	Failed     bool            `json:"failed"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
	ReduceSent bool            `json:"reduce_sent"`
	Reduced    bool            `json:"reduced"`
	Created    *time.Time      `json:"created"`
	FirstPart  int64           `json:"first_part"`
	GivenUp    int64           `json:"given_up"`
	Tolerance  string          `json:"tolerance"`
	// ToleratedParts is how many parts may be given up before the job
	// fails (Tolerance applied to Total).
	ToleratedParts  int64 `json:"tolerated_parts"`
	ReduceOnFailure bool  `json:"reduce_on_failure"`
	// Estimated: completed and remaining are estimates (wp ls on
	// DynamoDB); wp info is always exact.
	Estimated bool `json:"estimated"`
	// LastEnded is when a part last ended; RatePerMinute the parts ended
	// a minute lately, over RateWindowSeconds; ETASeconds the time the
	// rest takes at that rate; ElapsedSeconds since creation, or to the
	// last part's end once no part is pending.
	LastEnded         *time.Time `json:"last_ended"`
	RatePerMinute     *float64   `json:"rate_per_minute"`
	RateWindowSeconds float64    `json:"rate_window_seconds"`
	ETASeconds        *float64   `json:"eta_seconds"`
	ElapsedSeconds    *float64   `json:"elapsed_seconds"`
	Expires           *time.Time `json:"expires"`
	Batch             int        `json:"batch"`
	BatchBytes        int        `json:"batch_bytes"`
}

const jobJSONFields = `JSON FIELDS:
   jobid        the job id
   state        running, failed, complete (no part pending) or reduced (the reduce command exited 0)
   total        number of parts
   completed    parts completed (total - remaining - given_up)
   remaining    parts still pending
   progress     parts ended (completed or given up) / total, from 0 to 1
   failed       true once the job has failed
   error        the failure reason ("" unless failed)
   metadata     the job's metadata object
   reduce_sent  true once the reduce message was published
   reduced      true once the reduce command exited 0
   created      when the job was created (RFC 3339), null if unknown (jobs written by other tools)
   first_part   the first part id: 0, or 1 for jobs written by the Node watchbot-progress library
   given_up     parts given up: their command failed on the last receive (wp run --max-receives)
   tolerance    how many given-up parts the job tolerates: "N" or "P%"; past it the job fails
   tolerated_parts  the tolerance as a number of parts
   reduce_on_failure  true when the reduce is sent for a failed job too
   estimated    true when completed and remaining are estimates (wp ls on DynamoDB
                reads no shard item; wp info is exact)
   last_ended   when a part last ended (RFC 3339), null if none has or the store cannot tell
   rate_per_minute  parts ended a minute over the last rate_window_seconds (up to 10
                minutes), null if unknown
   eta_seconds  how long the pending parts take at that rate, null if unknown
   elapsed_seconds  since the job was created (to its last part's end once none is pending)
   expires      when the job is removed from the store (RFC 3339), null: never
   batch, batch_bytes  parts and bytes a map message holds at most (0: one part a message)`

func toJSON(s backends.Status) jobJSON {
	j := jobJSON{
		JobID: s.ID, State: s.State(), Total: s.Total, Completed: s.Total - s.Remaining - s.GivenUp, Remaining: s.Remaining,
		GivenUp: s.GivenUp, Tolerance: s.Tolerance.String(), ToleratedParts: s.Tolerance.Limit(s.Total), ReduceOnFailure: s.ReduceOnFailure,
		Failed: s.Failed, Error: s.Error, Metadata: s.Metadata, ReduceSent: s.ReduceSent, Reduced: s.Reduced,
		FirstPart: s.FirstPart,
	}
	if s.Total > 0 {
		j.Progress = float64(s.Total-s.Remaining) / float64(s.Total)
	}
	if len(j.Metadata) == 0 {
		j.Metadata = json.RawMessage(`{}`)
	}
	if !s.CreatedAt.IsZero() {
		t := s.CreatedAt.UTC()
		j.Created = &t
	}
	j.Estimated, j.Batch, j.BatchBytes = s.Estimated, s.Batch, s.BatchBytes
	if !s.LastEnded.IsZero() {
		t := s.LastEnded.UTC()
		j.LastEnded = &t
	}
	if !s.ExpiresAt.IsZero() {
		t := s.ExpiresAt.UTC()
		j.Expires = &t
	}
	p := progressOf(s, time.Now())
	if !math.IsNaN(p.PerMinute) {
		j.RatePerMinute, j.RateWindowSeconds = &p.PerMinute, s.RecentWindow.Seconds()
		if eta, ok := p.ETA(); ok && s.State() == backends.StateRunning {
			e := eta.Seconds()
			j.ETASeconds = &e
		}
	}
	if p.Elapsed > 0 {
		e := p.Elapsed.Seconds()
		j.ElapsedSeconds = &e
	}
	return j
}

// progressOf is job s's progress at now: ended parts, the rate the store
// counted lately, and the time since its creation (to its last part's end
// once none is pending).
func progressOf(s backends.Status, now time.Time) display.Progress {
	p := display.Progress{Ended: s.Total - s.Remaining, Total: s.Total, PerMinute: display.PerMinute(s.RecentEnded, s.RecentWindow)}
	if !s.CreatedAt.IsZero() {
		end := now
		if s.Remaining == 0 && !s.LastEnded.IsZero() {
			end = s.LastEnded
		}
		p.Elapsed = max(end.Sub(s.CreatedAt), 0)
	}
	if s.GivenUp > 0 {
		p.Extra = fmt.Sprintf("%d given up", s.GivenUp)
	}
	return p
}

// ago says how long ago t was, for people ("4m12s ago").
func ago(t, now time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		return "in " + display.Round(-d).String()
	}
	return display.Round(d).String() + " ago"
}

func jobIDArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageError("%s needs exactly one JOBID argument", c.Command.Name)
	}
	id := c.Args().First()
	if err := backends.ValidateJobID(id); err != nil {
		return "", withCode(exitError, err)
	}
	return id, nil
}

// notFound turns ErrNotFound into "no such job: ID".
func notFound(id string, err error) error {
	if errors.Is(err, backends.ErrNotFound) {
		return fmt.Errorf("no such job: %s", id)
	}
	return err
}

func infoCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show a job's progress and state",
		ArgsUsage: "JOBID",
		Description: `Shows total, completed and remaining parts, progress, state, failure reason,
metadata, whether the reduce was sent, when the job was created, when a part
last ended, the rate parts ended at lately (up to the last 10 minutes) and the
time the pending parts take at that rate, and when the job expires.

--watch refreshes until the job completes (exit 0) or fails (exit 1): on a
terminal one progress line with a bar, the rate and the ETA; elsewhere one line
a refresh, every 10 s or --interval. On DynamoDB a refresh reads the job's
pending shard items: the refresh interval grows so that the reads stay under
--max-read-rate read units a second on average (the line says so), leaving
the table's capacity to the workers.

` + jobJSONFields + `

Exit codes: 0 shown (with --watch: the job completed or was reduced); 1 no such
job or store error (with --watch: also when the job failed); 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (with --watch: one a refresh)"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh until the job is complete or failed"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "refresh interval for --watch, at least (default 2s on a terminal, else 10s)"},
			&cli.Float64Flag{Name: "max-read-rate", Value: 10, Usage: "with --watch, on DynamoDB: read units a second the refreshes may take on average"},
			progressFlag(),
		},
		Action: a.infoAction,
	}
}

func (a *appState) infoAction(c *cli.Context) error {
	if c.Duration("interval") <= 0 {
		return usageError("--interval must be positive")
	}
	if c.Float64("max-read-rate") <= 0 {
		return usageError("--max-read-rate must be positive")
	}
	// Staleness of a second does not matter to what info shows.
	ctx := backends.AllowStale(c.Context)
	return a.withJob(c, func(st *backends.Store, id string) error {
		if !c.Bool("watch") {
			s, err := st.Status(ctx, id)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				b, _ := json.Marshal(toJSON(s))
				fmt.Fprintln(c.App.Writer, string(b))
			} else {
				printInfo(c.App.Writer, s)
			}
			return nil
		}
		return a.watch(c, ctx, st, id)
	})
}

// watch refreshes job id until it completes or fails.
func (a *appState) watch(c *cli.Context, ctx context.Context, st *backends.Store, id string) error {
	terminal := display.IsTerminal(c.App.Writer) && !c.Bool("json")
	interval := c.Duration("interval")
	if !terminal && !c.IsSet("interval") {
		interval = 10 * time.Second
	}
	var meter display.Meter
	said := time.Duration(0)
	for {
		s, err := st.Status(ctx, id)
		if err != nil {
			if terminal {
				fmt.Fprintln(c.App.Writer)
			}
			return err
		}
		now := time.Now()
		meter.Add(now, s.Total-s.Remaining)
		// A refresh reads what the store says it cost: keep the average
		// under --max-read-rate.
		wait := interval
		if need := time.Duration(s.ReadUnits / c.Float64("max-read-rate") * float64(time.Second)); need > wait {
			wait = need.Round(time.Second)
		}
		if wait != said && wait != interval {
			msg := fmt.Sprintf("refreshing every %s: each look at job %s reads %.0f read units, and --max-read-rate allows %g a second", wait, id, s.ReadUnits, c.Float64("max-read-rate"))
			if terminal {
				fmt.Fprintf(c.App.Writer, "\r\033[K%s\n", msg)
			} else {
				a.logger().Info(msg)
			}
		}
		said = wait
		switch {
		case c.Bool("json"):
			b, _ := json.Marshal(toJSON(s))
			fmt.Fprintln(c.App.Writer, string(b))
		default:
			p := progressOf(s, now)
			if math.IsNaN(p.PerMinute) {
				p.PerMinute = meter.PerMinute()
			}
			line := fmt.Sprintf("%s %s: %s", id, s.State(), p.Line(0))
			if terminal {
				fmt.Fprintf(c.App.Writer, "\r\033[K%s %s: %s", id, s.State(), p.Line(24))
			} else {
				fmt.Fprintln(c.App.Writer, line)
			}
		}
		switch s.State() {
		case backends.StateFailed:
			if terminal {
				fmt.Fprintln(c.App.Writer)
			}
			return fmt.Errorf("job %s has failed: %s", id, s.Error)
		case backends.StateComplete, backends.StateReduced:
			if terminal {
				fmt.Fprintln(c.App.Writer)
			}
			return nil
		}
		select {
		case <-c.Context.Done():
			if terminal {
				fmt.Fprintln(c.App.Writer)
			}
			return c.Context.Err()
		case <-time.After(wait):
		}
	}
}

// tolerance says how many given-up parts the job tolerates.
func tolerance(s backends.Status) string {
	n := s.Tolerance.Limit(s.Total)
	unit := "parts"
	if n == 1 {
		unit = "part"
	}
	if s.Tolerance.Percent {
		return fmt.Sprintf("%d %s: %s", n, unit, s.Tolerance)
	}
	return fmt.Sprintf("%d %s", n, unit)
}

func printInfo(w io.Writer, s backends.Status) {
	j := toJSON(s)
	fmt.Fprintf(w, "job:        %s\n", s.ID)
	fmt.Fprintf(w, "state:      %s\n", j.State)
	fmt.Fprintf(w, "progress:   %d/%d parts complete (%.1f%% ended)\n", j.Completed, s.Total, 100*j.Progress)
	fmt.Fprintf(w, "given up:   %d (tolerates %s)\n", s.GivenUp, tolerance(s))
	fmt.Fprintf(w, "remaining:  %d\n", s.Remaining)
	if s.Failed {
		fmt.Fprintf(w, "error:      %s\n", s.Error)
	}
	reduce := "not sent"
	switch {
	case s.Reduced:
		reduce = "sent, reduce command done"
	case s.ReduceSent:
		reduce = "sent"
	}
	if s.ReduceOnFailure {
		reduce += " (sent for a failed job too)"
	}
	fmt.Fprintf(w, "reduce:     %s\n", reduce)
	fmt.Fprintf(w, "metadata:   %s\n", j.Metadata)
	now := time.Now()
	if j.Created != nil {
		fmt.Fprintf(w, "created:    %s (%s)\n", j.Created.Format(time.RFC3339), ago(*j.Created, now))
	}
	p := progressOf(s, now)
	if p.Elapsed > 0 {
		fmt.Fprintf(w, "elapsed:    %s\n", display.Round(p.Elapsed))
	}
	if j.LastEnded != nil {
		fmt.Fprintf(w, "last part:  ended %s (%s)\n", j.LastEnded.Format(time.RFC3339), ago(*j.LastEnded, now))
	} else {
		fmt.Fprintf(w, "last part:  none has ended yet\n")
	}
	if s.State() == backends.StateRunning {
		rate := display.RateWords(p.PerMinute)
		if !math.IsNaN(p.PerMinute) {
			rate += fmt.Sprintf(" over the last %s", display.Round(s.RecentWindow))
		}
		fmt.Fprintf(w, "rate:       %s\n", rate)
		if eta, ok := p.ETA(); ok {
			fmt.Fprintf(w, "eta:        %s (%s)\n", display.Round(eta), now.Add(eta).UTC().Format(time.RFC3339))
		}
	}
	if j.Expires != nil {
		fmt.Fprintf(w, "expires:    %s (%s)\n", j.Expires.Format(time.RFC3339), ago(*j.Expires, now))
	} else {
		fmt.Fprintf(w, "expires:    never\n")
	}
	if s.Batch > 0 {
		fmt.Fprintf(w, "messages:   batches of at most %d parts and %d bytes\n", s.Batch, s.BatchBytes)
	}
	if s.FirstPart != 0 {
		fmt.Fprintf(w, "parts:      numbered from %d (written by the Node watchbot-progress library)\n", s.FirstPart)
	}
}

func lsCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list jobs, newest first",
		Description: `Lists jobs newest first, one a line: id, state, completed/total (~ for an
estimate), when it was created, and when a part last ended. On a terminal it
lists a screenful (--limit all: every job). The store is read in proportion to
the jobs listed, not to their parts: on DynamoDB through wp's index of jobs
(wp table create makes it; wp table upgrade adds it to an existing table),
which gives completed counts of running jobs as estimates from their group
items. A table without the index is scanned whole, and says so.

--stalled D lists only the running jobs no part of which has ended for D or
more (since they were created, when none has), and exits 1 when there are
any: for a cron or an alarm.

` + jobJSONFields + `

Exit codes: 0 listed; 1 store error, or --stalled found stalled jobs; 2 wrong
command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array of job objects"},
			&cli.StringFlag{Name: "status", Usage: "only jobs in this state: running, failed, complete (includes reduced) or reduced"},
			&cli.StringFlag{Name: "limit", Aliases: []string{"n"}, Usage: "list at most N jobs, the newest, or all (default: a screenful on a terminal, else all)"},
			&cli.StringFlag{Name: "since", Usage: "only jobs created since: a duration back from now (2h, 7d) or a date (2026-12-01, RFC 3339)"},
			&cli.StringFlag{Name: "stalled", Usage: "only running jobs no part of which has ended for this long (30m, 2h, 1d); exit 1 when there are any"},
			&cli.BoolFlag{Name: "scan", Usage: "read every item of the store, for jobs no index lists (DynamoDB: jobs of the other tools that no wp command has read): slow"},
			progressFlag(),
		},
		Action: a.lsAction,
	}
}

// parseSince reads --since: a duration back from now, or a date.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := parseAge(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want a duration back from now (2h, 7d, 1w) or a date (2026-12-01, 2026-12-01T09:00:00Z)")
}

// errStopList ends a listing once it has what it needs.
var errStopList = errors.New("enough jobs")

func (a *appState) lsAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("ls takes no arguments, got %q", c.Args().First())
	}
	filter := c.String("status")
	switch filter {
	case "", backends.StateRunning, backends.StateFailed, backends.StateComplete, backends.StateReduced:
	default:
		return usageError("--status %q: want running, failed, complete or reduced", filter)
	}
	now := time.Now()
	limit := 0
	switch l := c.String("limit"); {
	case l == "all":
	case l != "":
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return usageError("--limit %q: want a number of jobs of at least 1, or all", l)
		}
		limit = n
	default:
		if rows := display.Rows(c.App.Writer); rows > 0 && !c.Bool("json") {
			limit = max(rows-3, 5)
		}
	}
	var opt backends.ListOptions
	if c.IsSet("since") {
		t, err := parseSince(c.String("since"), now)
		if err != nil {
			return usageError("--since %q: %v", c.String("since"), err)
		}
		opt.Since = t
	}
	var stalled time.Duration
	if c.IsSet("stalled") {
		d, err := parseAge(c.String("stalled"))
		if err != nil || d <= 0 {
			return usageError("--stalled %q: want how long no part has ended, such as 30m, 2h or 1d", c.String("stalled"))
		}
		stalled = d
		if filter != "" && filter != backends.StateRunning {
			return usageError("--stalled lists running jobs: it cannot go with --status %s", filter)
		}
	}
	opt.Limit, opt.Scan = limit, c.Bool("scan")
	lg := a.logger()
	opt.Note = func(s string) { lg.Warn(s) }
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := backends.AllowStale(c.Context)
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	asJSON := c.Bool("json")
	n := 0
	if asJSON {
		w.WriteString("[")
	}
	more := false
	err = st.List(ctx, opt, func(s backends.Status) error {
		state := s.State()
		if filter != "" && state != filter && !(filter == backends.StateComplete && state == backends.StateReduced) {
			return nil
		}
		if stalled > 0 {
			if state != backends.StateRunning {
				return nil
			}
			if !isStalled(s, stalled, now) {
				return nil
			}
			// A listing may give an older last end than the job's:
			// make sure with the job itself before calling it stalled.
			exact, err := st.Status(ctx, s.ID)
			if err != nil || exact.State() != backends.StateRunning || !isStalled(exact, stalled, now) {
				return nil
			}
			s = exact
		}
		if limit > 0 && n == limit {
			more = true
			return errStopList
		}
		if asJSON {
			if n > 0 {
				w.WriteString(",")
			}
			b, _ := json.Marshal(toJSON(s))
			w.Write(b)
		} else {
			created, last := "-", "-"
			if !s.CreatedAt.IsZero() {
				created = s.CreatedAt.UTC().Format(time.RFC3339)
			}
			if !s.LastEnded.IsZero() {
				last = "last part " + ago(s.LastEnded, now)
			}
			counts := fmt.Sprintf("%d/%d", s.Total-s.Remaining-s.GivenUp, s.Total)
			if s.Estimated {
				counts = "~" + counts
			}
			if s.GivenUp > 0 {
				counts += fmt.Sprintf(" (%d given up)", s.GivenUp)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.ID, state, counts, created, last)
		}
		n++
		return nil
	})
	if asJSON {
		w.WriteString("]\n")
	}
	if err != nil && !errors.Is(err, errStopList) {
		return fmt.Errorf("list jobs: %w", err)
	}
	w.Flush()
	if more && !asJSON {
		lg.Info(fmt.Sprintf("the newest %d jobs listed; --limit all lists every one", limit))
	}
	if stalled > 0 && n > 0 {
		lg.Error(fmt.Sprintf("%d running jobs have had no part end for %s or more", n, c.String("stalled")))
		return exitSilently(exitError)
	}
	return nil
}

// isStalled says whether running job s has had no part end for d at now
// (counting from its creation when none has).
func isStalled(s backends.Status, d time.Duration, now time.Time) bool {
	last := s.LastEnded
	if last.IsZero() {
		last = s.CreatedAt
	}
	return !last.IsZero() && now.Sub(last) >= d
}

func pendingCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "pending",
		Usage:     "print a job's pending part ids",
		ArgsUsage: "JOBID",
		Description: `Prints the ids of the parts not yet complete, ascending, one a line, as they
are read from the store (any number of parts, in bounded memory).

With --given-up, lists the parts given up instead (their command failed on the
last receive of their message, or wp dead-letter found their message), one a
line: part id, exit code (and signal) or why, receive count, when (RFC 3339)
and the end of the command's stderr (quoted); with --array, a JSON array of
{"part", "exit_code", "signal", "receive_count", "at", "stderr", "reason"}. A reduce command can list them this way.

Exit codes: 0 printed; 1 no such job or store error; 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "array", Aliases: []string{"json"}, Usage: "print one JSON array instead"},
			&cli.BoolFlag{Name: "given-up", Usage: "list the given-up parts instead: part id, exit code (or signal), receive count, when, and the end of the command's stderr"},
			progressFlag(),
		},
		Action: a.pendingAction,
	}
}

func (a *appState) pendingAction(c *cli.Context) error {
	if c.Bool("given-up") {
		return a.givenUpAction(c)
	}
	return a.withJob(c, func(st *backends.Store, id string) error {
		w := bufio.NewWriterSize(c.App.Writer, 64*1024)
		array := c.Bool("array")
		n := 0
		if array {
			w.WriteByte('[')
		}
		var buf []byte
		err := st.Pending(c.Context, id, func(p int64) error {
			if array && n > 0 {
				w.WriteByte(',')
			}
			buf = strconv.AppendInt(buf[:0], p, 10)
			if !array {
				buf = append(buf, '\n')
			}
			_, err := w.Write(buf)
			n++
			return err
		})
		if err != nil {
			return err // a half-written array is never flushed
		}
		if array {
			w.WriteString("]\n")
		}
		return w.Flush()
	})
}

// givenUpJSON is one given-up part in wp pending --given-up --array.
type givenUpJSON struct {
	Part         int64     `json:"part"`
	ExitCode     int       `json:"exit_code"`
	Signal       string    `json:"signal"`
	ReceiveCount int       `json:"receive_count"`
	At           time.Time `json:"at"`
	Stderr       string    `json:"stderr"`
	Reason       string    `json:"reason"`
}

func (a *appState) givenUpAction(c *cli.Context) error {
	return a.withJob(c, func(st *backends.Store, id string) error {
		w := bufio.NewWriterSize(c.App.Writer, 64*1024)
		array := c.Bool("array")
		n := 0
		if array {
			w.WriteByte('[')
		}
		err := st.GivenUp(c.Context, id, func(p backends.GivenUpPart) error {
			if array {
				if n > 0 {
					w.WriteByte(',')
				}
				b, _ := json.Marshal(givenUpJSON{p.Part, p.ExitCode, p.Signal, p.ReceiveCount, p.At.UTC(), p.Stderr, p.Reason})
				w.Write(b)
			} else {
				code := "exit " + strconv.Itoa(p.ExitCode)
				if p.Signal != "" {
					code += " (" + p.Signal + ")"
				}
				if p.Reason != "" {
					code = p.Reason
				}
				fmt.Fprintf(w, "%d\t%s\treceive %d\t%s\t%s\n", p.Part, code, p.ReceiveCount, p.At.UTC().Format(time.RFC3339), strconv.Quote(p.Stderr))
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		if array {
			w.WriteString("]\n")
		}
		return w.Flush()
	})
}
