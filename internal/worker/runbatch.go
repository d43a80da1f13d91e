package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
)

// processBatch handles a batch message: the command runs once per part
// still pending, each part with the environment it would have had in a map
// message of its own, then every part that succeeded is recorded at once
// (CompleteParts: one write per store shard). A part that failed leaves the
// message to be retried, and on its last delivery is given up on its own; a
// fail-job code fails the job; a signal stops the batch.
func (r *Runner) processBatch(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, d Delivery, spec child.Spec, sigs <-chan os.Signal) Result {
	first, last := m.Batch[0].Part, m.Batch[len(m.Batch)-1].Part
	lg = lg.With("last_partid", last)
	if job.Batch == 0 {
		err := errors.New("a batch message of a job created without batches: its parts are published one a message")
		lg.Error("the message can never succeed: " + err.Error())
		return Result{Outcome: Dropped, Err: err}
	}
	if !job.HasPart(first) || !job.HasPart(last) {
		err := fmt.Errorf("parts %d to %d are not all parts of this job (parts %d to %d)", first, last, job.FirstPart, job.LastPart())
		lg.Error("the message can never succeed: " + err.Error())
		return Result{Outcome: Dropped, Err: err}
	}
	if res, done := r.beforeParts(ctx, lg, job); done {
		return res
	}
	todo := m.Batch
	if d.ReceiveCount != 1 {
		// An earlier receive may have ended some of the parts: run only
		// those still pending.
		states, err := r.store.PartStates(ctx, m.JobID, m.Parts())
		if err != nil {
			lg.Error("cannot read which parts of the batch are pending: no command was run", "error", err.Error())
			return Result{Outcome: Unavailable, Err: err}
		}
		todo = nil
		for i, b := range m.Batch {
			if states[i] == backends.PartPending {
				todo = append(todo, b)
			}
		}
		if len(todo) < len(m.Batch) {
			lg.Info("parts of the batch had ended already: running the rest", "ended", len(m.Batch)-len(todo), "pending", len(todo))
		}
	}
	results := make([]PartResult, len(m.Batch))
	for i, b := range m.Batch {
		results[i] = PartResult{Part: b.Part, Outcome: Skipped}
	}
	index := map[int64]int{}
	for i, b := range m.Batch {
		index[b.Part] = i
	}
	runs, sig := r.runParts(ctx, lg, job, m, d, todo, spec, sigs)

	var succeeded []int64
	var stop *partRun // the first run that stopped the batch: a fail-job code or a signal
	var failed []*partRun
	for _, pr := range runs {
		results[index[pr.part.Part]] = PartResult{Part: pr.part.Part, Outcome: pr.res.Outcome, Status: pr.res.Status}
		switch {
		case pr.ok:
			succeeded = append(succeeded, pr.part.Part)
		case pr.res.Outcome == 0: // not run: the batch was stopped
		case pr.res.Outcome == FailedJob || pr.res.Outcome == Interrupted || pr.res.Outcome == Unavailable:
			if stop == nil {
				stop = pr
			}
		default:
			failed = append(failed, pr)
		}
	}

	res := Result{Ran: len(todo) > 0, Parts: results}
	if stop != nil && stop.res.Outcome == FailedJob {
		// The job has failed: the store takes no completion of it.
		res.Outcome, res.Status, res.JobFailed, res.Err = FailedJob, stop.res.Status, true, stop.res.Err
		return res
	}
	if len(succeeded) > 0 {
		rec := r.completeParts(ctx, lg, job, m.JobID, succeeded)
		for _, p := range succeeded {
			results[index[p]].Outcome = rec.Outcome
		}
		if rec.Outcome != Completed && rec.Outcome != Finished {
			// Nothing recorded (or the reduce not sent): the whole
			// message goes again, whatever else happened.
			rec.Ran, rec.Parts = true, results
			return rec
		}
		res.Outcome, res.Recorded = rec.Outcome, true
	}
	switch {
	case stop != nil:
		res.Outcome, res.Status, res.Signal, res.JobFailed, res.Err = stop.res.Outcome, stop.res.Status, stop.res.Signal, stop.res.JobFailed, stop.res.Err
		return res
	case sig != nil:
		// A signal between two parts: the rest were not started.
		lg.Info("batch interrupted by "+child.SignalName(sig)+": its parts not run stay pending", "recorded", len(succeeded))
		res.Outcome, res.Signal, res.Status = Interrupted, sig, 0
		return res
	case len(failed) > 0 && d.Last:
		// Each part still failing on the last delivery is given up on
		// its own; the message exits as its first failing command did.
		res.Outcome, res.Status = GaveUp, failed[0].res.Status
		for _, pr := range failed {
			g := r.giveUp(ctx, pr.lg, job, m.partMessage(pr.part), d, pr.res, pr.tail)
			results[index[pr.part.Part]].Outcome = g.Outcome
			res.JobFailed = res.JobFailed || g.JobFailed
			if g.Outcome != GaveUp {
				res.Outcome = g.Outcome // not recorded: the message goes again
			}
			if g.JobFailed {
				break // later parts are skipped, as after any give-up past the tolerance
			}
		}
		return res
	case len(failed) > 0:
		res.Outcome, res.Status, res.NotFound, res.Err = failed[0].res.Outcome, failed[0].res.Status, failed[0].res.NotFound, failed[0].res.Err
		lg.Info("batch: parts failed, nothing recorded for them", "failed", len(failed), "recorded", len(succeeded))
		return res
	case len(todo) == 0:
		lg.Info("every part of the batch had ended already: not running the command")
		res.Outcome = Completed
	}
	return res
}

// beforeParts is what a map delivery checks of the job before it runs a
// command: a failed job skips (and sends its reduce if it wants one and
// nobody did), a job with no part pending sends its missing reduce.
func (r *Runner) beforeParts(ctx context.Context, lg *slog.Logger, job backends.Status) (Result, bool) {
	if job.Failed {
		lg.Info("job has failed: skipping part", "reason", job.Error)
		if job.ReduceOnFailure && !job.ReduceSent {
			// Its reduce is due; whoever failed the job may have died
			// before sending it.
			if res := r.EnsureReduce(ctx, lg, job); res.Outcome != Completed {
				return res, true
			}
		}
		return Result{Outcome: Skipped}, true
	}
	if job.Remaining == 0 {
		lg.Info("every part is already complete: not running the command")
		res := r.EnsureReduce(ctx, lg, job)
		if res.Outcome == Completed {
			res.Outcome = AlreadyDone
		}
		return res, true
	}
	return Result{}, false
}

// partRun is one part's run in a batch.
type partRun struct {
	part BatchPart
	res  Result
	ok   bool // the command exited 0: the part is to be recorded
	lg   *slog.Logger
	tail *tailWriter
}

// runParts runs the command for each part of todo, Options.Jobs at a time
// (one after another by default), and stops starting parts once one has
// failed the job, was interrupted, or could not record the job's failure.
// Signals on sigs go to every command running.
func (r *Runner) runParts(ctx context.Context, lg *slog.Logger, job backends.Status, m Message, d Delivery, todo []BatchPart, spec child.Spec, sigs <-chan os.Signal) ([]*partRun, os.Signal) {
	runs := make([]*partRun, len(todo))
	jobs := max(r.opt.Jobs, 1)
	fan := newFanout(sigs)
	defer fan.stop()
	var mu sync.Mutex
	stopped := false
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, b := range todo {
		runs[i] = &partRun{part: b}
		mu.Lock()
		halt := stopped
		mu.Unlock()
		if halt || fan.signal() != nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(pr *partRun) {
			defer wg.Done()
			defer func() { <-sem }()
			mu.Lock()
			if stopped {
				mu.Unlock()
				return
			}
			mu.Unlock()
			ch := fan.add()
			defer fan.remove(ch)
			pm := m.partMessage(pr.part)
			ps := spec
			// The part's own message, as watchbot would have handed it
			// had it been published alone (the last Message wins).
			ps.Env = append(spec.Env[:len(spec.Env):len(spec.Env)], EnvMessage+"="+pr.part.Body)
			if r.opt.PartOutput != nil {
				var done func()
				ps.Stdout, ps.Stderr, done = r.opt.PartOutput(pr.part.Part)
				defer done()
			}
			if d.Last {
				pr.tail = &tailWriter{w: ps.Stderr}
				ps.Stderr = pr.tail
			}
			res, plg, done := r.runCommand(ctx, r.log(pm), job, pm, ps, ch)
			pr.lg = plg
			if !done && res.Status != 0 {
				res.Outcome, done = CommandFailed, true
				plg.Info("command failed: nothing recorded")
			}
			pr.res, pr.ok = res, !done
			if res.Outcome == FailedJob || res.Outcome == Interrupted || res.Outcome == Unavailable {
				mu.Lock()
				stopped = true
				mu.Unlock()
			}
		}(runs[i])
		if jobs == 1 {
			wg.Wait() // in part order, one after another
		}
	}
	wg.Wait()
	return runs, fan.signal()
}

// completeParts records the parts that succeeded, and sends the reduce when
// that ended the job.
func (r *Runner) completeParts(ctx context.Context, lg *slog.Logger, job backends.Status, jobID string, parts []int64) Result {
	var comp backends.Completion
	err := r.persist(ctx, lg, "the completions", func() (err error) {
		comp, err = r.store.CompleteParts(ctx, jobID, parts)
		return err
	})
	res := Result{Ran: true}
	switch {
	case errors.Is(err, backends.ErrJobFailed):
		lg.Warn("the job failed while the batch ran: nothing recorded")
		res.Outcome = Skipped
		return res
	case errors.Is(err, backends.ErrNotFound), errors.Is(err, backends.ErrPartRange):
		lg.Error("the message can never succeed: cannot complete the parts", "error", err.Error())
		res.Outcome, res.Err = Dropped, err
		return res
	case err != nil:
		lg.Error("the commands succeeded but their completions could not be recorded", "parts", len(parts), "error", err.Error())
		res.Outcome, res.Err = Unavailable, err
		return res
	}
	res.Recorded, res.Outcome = true, Completed
	switch {
	case comp.Finisher:
		lg.Info("parts complete: this batch finished the job", "parts", len(parts), "completed", comp.Completed)
		res.Outcome = Finished
	default:
		lg.Info("parts complete", "parts", len(parts), "completed", comp.Completed)
	}
	if comp.Done && !comp.ReduceSent {
		job.ReduceSent = false
		if rr := r.EnsureReduce(ctx, lg, job); rr.Outcome != Completed {
			res.Outcome, res.Err = rr.Outcome, rr.Err
		}
	}
	return res
}

// fanout sends every signal from in to each channel added, and remembers
// the first.
type fanout struct {
	mu    sync.Mutex
	outs  map[chan os.Signal]bool
	first os.Signal
	quit  chan struct{}
}

// signal is the first signal received (nil if none).
func (f *fanout) signal() os.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

func newFanout(in <-chan os.Signal) *fanout {
	f := &fanout{outs: map[chan os.Signal]bool{}, quit: make(chan struct{})}
	if in == nil {
		return f
	}
	go func() {
		for {
			select {
			case sig := <-in:
				f.mu.Lock()
				if f.first == nil {
					f.first = sig
				}
				for ch := range f.outs {
					select {
					case ch <- sig:
					default:
					}
				}
				f.mu.Unlock()
			case <-f.quit:
				return
			}
		}
	}()
	return f
}

func (f *fanout) add() chan os.Signal {
	ch := make(chan os.Signal, 1)
	f.mu.Lock()
	f.outs[ch] = true
	f.mu.Unlock()
	return ch
}

func (f *fanout) remove(ch chan os.Signal) {
	f.mu.Lock()
	delete(f.outs, ch)
	f.mu.Unlock()
}

func (f *fanout) stop() { close(f.quit) }
