package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/display"
	"github.com/wp-tools/wp/internal/local"
	"github.com/wp-tools/wp/internal/worker"
)

func localCommand(a *appState) *cli.Command {
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
			batchFlag(),
			batchBytesFlag(),
			expireAfterFlag(),
			&cli.BoolFlag{Name: "retry-given-up", Usage: "with --resume: put the job's given-up parts back to pending and run them again"},
			graceFlag(),
			&cli.BoolFlag{Name: "no-prefix", Usage: "pass the commands' output through without the [part N] prefix (lines still never interleave)"},
			progressFlag(),
		},
		Action: a.localAction,
	}
}

func (a *appState) localAction(c *cli.Context) error {
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
	if resume != "" && (c.IsSet("jobid") || c.IsSet("metadata") || c.IsSet("tolerate") || c.IsSet("reduce-on-failure") || c.IsSet("batch") || c.IsSet("batch-bytes") || (c.IsSet("expire-after") && os.Getenv("WP_EXPIRE_AFTER") == "")) {
		return usageError("--resume takes the job as it is: --jobid, --metadata, --tolerate, --reduce-on-failure, --batch, --batch-bytes and --expire-after cannot be given with it")
	}
	if resume == "" && c.Bool("retry-given-up") {
		return usageError("--retry-given-up goes with --resume JOBID")
	}
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
		if err := checkBatchBytes(o, sp); err != nil {
			return err
		}
	} else {
		if err := backends.ValidateJobID(resume); err != nil {
			return withCode(exitError, fmt.Errorf("--resume: %w", err))
		}
		o.id = resume
	}
	partsFile, err := local.PartsPath(storeU, o.id)
	if err != nil {
		return err
	}

	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()

	if resume == "" {
		if err := a.createLocalJob(c, st, o, sp, partsFile); err != nil {
			return err
		}
	} else {
		if _, err := st.Status(c.Context, o.id); err != nil {
			return notFound(o.id, err)
		}
		if _, err := os.Stat(partsFile); err != nil {
			return fmt.Errorf("resume %s: its parts file %s is missing (was the job created by wp local?): %w", o.id, partsFile, err)
		}
	}

	lg := a.logger()
	// One line a part would drown the commands' output: the engine's
	// lines show with -v; its warnings and errors always do.
	engineLog := lg
	if !a.verbose {
		engineLog = slog.New(minLevel{lg.Handler(), slog.LevelWarn})
	}
	sum, err := local.Run(c.Context, st, o.id, local.Options{
		Argv:         argv,
		Env:          os.Environ(),
		PartsFile:    partsFile,
		Jobs:         c.Int("jobs"),
		Retries:      c.Int("retries"),
		FailJobOn:    failOn,
		Grace:        c.Duration("grace"),
		ReduceLease:  defaultReduceLease,
		RetryGivenUp: c.Bool("retry-given-up"),
		Out:          display.NewOutput(c.App.Writer, c.App.ErrWriter),
		Prefix:       !c.Bool("no-prefix"),
		Terminal:     display.IsTerminal(c.App.ErrWriter),
		Log:          lg,
		EngineLog:    engineLog,
	})
	if err != nil {
		return notFound(o.id, err)
	}
	return a.localEnd(c, lg, o.id, argv, sum)
}

// createLocalJob writes the parts file, then creates the job: a parts file
// is only left behind for a job that exists.
func (a *appState) createLocalJob(c *cli.Context, st *backends.Store, o jobOptions, sp *spool, partsFile string) error {
	next, err := sp.reader()
	if err != nil {
		return err
	}
	pf, err := local.CreateParts(partsFile, next)
	if err != nil {
		return err
	}
	defer pf.Discard()
	resumed, err := a.storeJob(c.Context, st, o, sp.count)
	if err != nil {
		return err
	}
	// A re-run of the same job keeps the file the job was created with.
	return pf.Keep(resumed)
}

// localEnd reports how the run ended and what to do next, and is the exit
// code of wp local.
func (a *appState) localEnd(c *cli.Context, lg *slog.Logger, id string, argv []string, s local.Summary) error {
	reduce := "not run"
	if s.Reduce >= 0 {
		reduce = fmt.Sprintf("exit %d", s.Reduce)
	}
	lg.Info("summary",
		"jobid", id,
		"parts", s.Job.Total,
		"done", s.Done,
		"given_up", s.Job.GivenUp,
		"failed", s.Failed,
		"retried", s.Retried,
		"skipped", s.Skipped,
		"remaining", s.Job.Remaining,
		"reduce", reduce,
		"wall", s.Took.Round(1e6).String())
	switch {
	case s.Interrupted != nil:
		a.tellHow(lg, interruptedHow(s), localResume(c, id, argv))
		return exitSilently(exitInterrupted)
	case s.JobFailed:
		lg.Error("job failed", "jobid", id, "reason", s.Job.Error)
		if s.Job.FailedByTolerance {
			a.tellHow(lg, "run the given-up parts again with", localResume(c, id, argv, "--retry-given-up"))
		}
		return exitSilently(exitError)
	case s.Failed > 0 || s.Dropped > 0:
		a.tellHow(lg, fmt.Sprintf("%d parts failed after %d retries; run them again with", s.Failed+s.Dropped, c.Int("retries")), localResume(c, id, argv))
		return exitSilently(exitError)
	case s.Reduce != 0:
		lg.Error("reduce failed", "jobid", id, "reduce", reduce)
		return exitSilently(exitError)
	}
	return nil
}

// interruptedHow says what an interrupted run left: the parts it stopped,
// that nothing was recorded for them, that they stay pending (with the
// parts not run yet), and it leads to the resume command.
func interruptedHow(s local.Summary) string {
	how := "interrupted by " + child.SignalName(s.Interrupted)
	notRun := s.Job.Remaining - int64(len(s.Stopped))
	switch {
	case len(s.Stopped) == 1:
		how += ": nothing was recorded for " + partList(s.Stopped) + ", which was running and stays pending"
	case len(s.Stopped) > 1:
		how += ": nothing was recorded for " + partList(s.Stopped) + ", which were running and stay pending"
	}
	switch {
	case len(s.Stopped) > 0 && notRun == 1:
		how += ", and so does the 1 part not run yet"
	case len(s.Stopped) > 0 && notRun > 1:
		how += fmt.Sprintf(", and so do the %d parts not run yet", notRun)
	case notRun > 0:
		how += fmt.Sprintf(": %s pending", plural(notRun, "part"))
	}
	return how + "; resume with"
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// partList names parts for a sentence: "part 3", "parts 1, 4 and 9", and at
// most ten of them.
func partList(parts []int64) string {
	if len(parts) == 1 {
		return "part " + strconv.FormatInt(parts[0], 10)
	}
	const most = 10
	words := make([]string, 0, most)
	for i, p := range parts {
		if i == most {
			break
		}
		words = append(words, strconv.FormatInt(p, 10))
	}
	if len(parts) > most {
		return fmt.Sprintf("parts %s and %d more", strings.Join(words, ", "), len(parts)-most)
	}
	return "parts " + strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
