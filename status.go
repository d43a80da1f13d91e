package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
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
   reduce_on_failure  true when the reduce is sent for a failed job too`

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
	return j
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
metadata, whether the reduce was sent, and when the job was created.

` + jobJSONFields + `

Exit codes: 0 shown (with --watch: the job completed or was reduced); 1 no such
job or store error (with --watch: also when the job failed); 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh until the job is complete or failed"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "refresh interval for --watch"},
			progressFlag(),
		},
		Action: a.infoAction,
	}
}

func (a *appState) infoAction(c *cli.Context) error {
	if c.Duration("interval") <= 0 {
		return usageError("--interval must be positive")
	}
	return a.withJob(c, func(st *backends.Store, id string) error {
		for {
			s, err := st.Status(c.Context, id)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				b, _ := json.Marshal(toJSON(s))
				fmt.Fprintln(c.App.Writer, string(b))
			} else {
				printInfo(c.App.Writer, s)
			}
			if !c.Bool("watch") {
				return nil
			}
			switch s.State() {
			case backends.StateFailed:
				return exitSilently(exitError)
			case backends.StateComplete, backends.StateReduced:
				return nil
			}
			select {
			case <-c.Context.Done():
				return c.Context.Err()
			case <-time.After(c.Duration("interval")):
			}
			if !c.Bool("json") {
				fmt.Fprintln(c.App.Writer)
			}
		}
	})
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
	if j.Created != nil {
		fmt.Fprintf(w, "created:    %s\n", j.Created.Format(time.RFC3339))
	}
	if s.FirstPart != 0 {
		fmt.Fprintf(w, "parts:      numbered from %d (written by the Node watchbot-progress library)\n", s.FirstPart)
	}
}

func lsCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list jobs",
		Description: `Lists every job in the store, one a line (id, state, completed/total, created),
in the store's order. The store is read in pages, so any number of jobs works.

` + jobJSONFields,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array of job objects"},
			&cli.StringFlag{Name: "status", Usage: "only jobs in this state: running, failed, complete (includes reduced) or reduced"},
			progressFlag(),
		},
		Action: a.lsAction,
	}
}

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
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	asJSON := c.Bool("json")
	n := 0
	if asJSON {
		w.WriteString("[")
	}
	err = st.List(c.Context, backends.ListOptions{}, func(s backends.Status) error {
		state := s.State()
		if filter != "" && state != filter && !(filter == backends.StateComplete && state == backends.StateReduced) {
			return nil
		}
		if asJSON {
			if n > 0 {
				w.WriteString(",")
			}
			b, _ := json.Marshal(toJSON(s))
			w.Write(b)
		} else {
			created := "-"
			if !s.CreatedAt.IsZero() {
				created = s.CreatedAt.UTC().Format(time.RFC3339)
			}
			counts := fmt.Sprintf("%d/%d", s.Total-s.Remaining-s.GivenUp, s.Total)
			if s.GivenUp > 0 {
				counts += fmt.Sprintf(" (%d given up)", s.GivenUp)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.ID, state, counts, created)
		}
		n++
		return nil
	})
	if asJSON {
		w.WriteString("]\n")
	}
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	return nil
}

func pendingCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "pending",
		Usage:     "print a job's pending part ids",
		ArgsUsage: "JOBID",
		Description: `Prints the ids of the parts not yet complete, ascending, one a line, as they
are read from the store (any number of parts, in bounded memory).

With --given-up, lists the parts given up instead (their command failed on the
last receive of their message), one a line: part id, exit code (and signal),
receive count, when (RFC 3339) and the end of the command's stderr (quoted);
with --array, a JSON array of {"part", "exit_code", "signal",
"receive_count", "at", "stderr"}. A reduce command can list them this way.

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
				b, _ := json.Marshal(givenUpJSON{p.Part, p.ExitCode, p.Signal, p.ReceiveCount, p.At.UTC(), p.Stderr})
				w.Write(b)
			} else {
				code := "exit " + strconv.Itoa(p.ExitCode)
				if p.Signal != "" {
					code += " (" + p.Signal + ")"
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
