package backendtest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of GiveUp: a part given up has ended, once, under any number of
// concurrent give-ups and completions.

// testGiveUpEndsPart: a given-up part has ended: not pending, counted in
// GivenUp; giving up a complete or given-up part again is a Duplicate and
// changes nothing; the job is done when every part has ended.
func testGiveUpEndsPart(t *testing.T, st *backends.Store) {
	const id = "job-gu"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 3, Tolerance: backends.Tolerance{Parts: 5}})
	c := mustGiveUp(t, st, id, 1)
	if c != (backends.Completion{}) {
		t.Errorf("GiveUp(1) of 3 = %+v, want nothing set (not finisher, not done, not duplicate, not failed)", c)
	}
	s := checkCounts(t, st, id, 2, 1)
	if s.Failed || s.State() != backends.StateRunning {
		t.Errorf("after one give-up within tolerance: %+v, want running", s)
	}
	if got, want := pendingIDs(t, st, id), []int64{0, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pending = %v, want %v (a given-up part is not pending)", got, want)
	}
	if got, want := givenUpIDs(t, st, id), []int64{1}; !reflect.DeepEqual(got, want) {
		t.Errorf("GivenUp = %v, want %v", got, want)
	}

	// Giving up a given-up part again.
	if c := mustGiveUp(t, st, id, 1); !c.Duplicate || c.Finisher || c.Done || c.Failed {
		t.Errorf("second GiveUp(1) = %+v, want Duplicate only", c)
	}
	checkCounts(t, st, id, 2, 1)

	// Giving up a completed part.
	if c := mustComplete(t, st, id, 0); c.Duplicate || c.Finisher || c.Done {
		t.Errorf("Complete(0) = %+v, want a plain completion", c)
	}
	if c := mustGiveUp(t, st, id, 0); !c.Duplicate || c.Finisher || c.Done || c.Failed {
		t.Errorf("GiveUp(0) of a completed part = %+v, want Duplicate only", c)
	}
	checkCounts(t, st, id, 1, 1)
	if got, want := givenUpIDs(t, st, id), []int64{1}; !reflect.DeepEqual(got, want) {
		t.Errorf("GivenUp after giving up a completed part = %v, want %v", got, want)
	}

	// The last part ends the job.
	if c := mustComplete(t, st, id, 2); !c.Finisher || !c.Done || c.Duplicate {
		t.Errorf("Complete(2), the last pending part = %+v, want Finisher Done", c)
	}
	s = checkCounts(t, st, id, 0, 1)
	if s.Failed || s.State() != backends.StateComplete {
		t.Errorf("job with every part ended, 1 given up within tolerance: %+v, want complete", s)
	}
	if c := mustGiveUp(t, st, id, 2); !c.Duplicate || !c.Done || c.Finisher {
		t.Errorf("GiveUp(2) of a done job = %+v, want Duplicate Done", c)
	}
	if _, err := st.GiveUp(ctx(t), id, 3, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("GiveUp(part 3) of a 3-part job: err = %v, want ErrPartRange", err)
	}
	if _, err := st.GiveUp(ctx(t), id, -1, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("GiveUp(part -1): err = %v, want ErrPartRange", err)
	}
	checkCounts(t, st, id, 0, 1)
}

// testGiveUpLastIsFinisher: when the event that ends the job is a give-up,
// that call is the finisher, and the reduce can be claimed.
func testGiveUpLastIsFinisher(t *testing.T, st *backends.Store) {
	const id = "job-gul"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 2, Tolerance: backends.Tolerance{Parts: 1}})
	mustComplete(t, st, id, 0)
	if c := mustGiveUp(t, st, id, 1); !c.Finisher || !c.Done || c.Duplicate || c.Failed {
		t.Errorf("GiveUp of the last pending part = %+v, want Finisher Done", c)
	}
	if c := mustGiveUp(t, st, id, 1); c.Finisher || !c.Done || !c.Duplicate {
		t.Errorf("duplicate GiveUp of the last part = %+v, want Duplicate Done", c)
	}
	if s := checkCounts(t, st, id, 0, 1); s.State() != backends.StateComplete {
		t.Errorf("State = %q, want %q", s.State(), backends.StateComplete)
	}
	if _, ok, err := st.ClaimReduce(ctx(t), id, time.Minute); err != nil || !ok {
		t.Errorf("ClaimReduce of a job ended by a give-up = ok %v, err %v; want a claim", ok, err)
	}
}

// testGiveUpConverted: completing a given-up part turns it into a completed
// one: GivenUp drops, Remaining does not move, and the call is neither
// Duplicate nor Finisher.
func testGiveUpConverted(t *testing.T, st *backends.Store) {
	const id = "job-guc"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 3, Tolerance: backends.Tolerance{Parts: 3}})
	mustGiveUp(t, st, id, 0)
	mustGiveUp(t, st, id, 2)
	c := mustComplete(t, st, id, 0)
	if c.Duplicate || c.Finisher || c.Done {
		t.Errorf("Complete of a given-up part = %+v, want not Duplicate, not Finisher, not Done", c)
	}
	checkCounts(t, st, id, 1, 1)
	if got, want := givenUpIDs(t, st, id), []int64{2}; !reflect.DeepEqual(got, want) {
		t.Errorf("GivenUp after conversion = %v, want %v", got, want)
	}
	if c := mustComplete(t, st, id, 0); !c.Duplicate || c.Finisher {
		t.Errorf("Complete again = %+v, want Duplicate", c)
	}
	if c := mustGiveUp(t, st, id, 0); !c.Duplicate {
		t.Errorf("GiveUp of the converted part = %+v, want Duplicate", c)
	}
	if c := mustComplete(t, st, id, 1); !c.Finisher || !c.Done {
		t.Errorf("Complete of the last pending part = %+v, want Finisher Done", c)
	}
	// A conversion after the job is done: Done, still not the finisher.
	if c := mustComplete(t, st, id, 2); c.Duplicate || c.Finisher || !c.Done {
		t.Errorf("Complete of a given-up part of a done job = %+v, want Done only", c)
	}
	s := checkCounts(t, st, id, 0, 0)
	if s.State() != backends.StateComplete {
		t.Errorf("State = %q, want %q", s.State(), backends.StateComplete)
	}
	if got := givenUpIDs(t, st, id); len(got) != 0 {
		t.Errorf("GivenUp = %v, want none", got)
	}
}

// testGiveUpStorm: 2,000 parts, each event delivered twice from 32
// goroutines; a third of the parts are given up, a third completed and a
// third both given up and completed (in either order the part ends
// completed). Exactly one call, Complete or GiveUp, is the finisher.
func testGiveUpStorm(t *testing.T, st *backends.Store) {
	const total = 2000
	const workers = 32
	const id = "job-gus"
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}})
	type event struct {
		part   int64
		giveUp bool
	}
	work := make(chan event, 2*total)
	for p := int64(0); p < total; p++ {
		switch p % 3 {
		case 0:
			work <- event{p, true}
			work <- event{p, true}
		case 1:
			work <- event{p, false}
			work <- event{p, false}
		case 2:
			work <- event{p, p%2 == 0}
			work <- event{p, p%2 != 0}
		}
	}
	close(work)
	var finishers, dups, failed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				var r backends.Completion
				var err error
				if e.giveUp {
					r, err = st.GiveUp(c, id, e.part, backends.GiveUpInfo{ExitCode: 2, ReceiveCount: 10})
				} else {
					r, err = st.Complete(c, id, e.part)
				}
				if err != nil {
					errs <- fmt.Errorf("part %d (give up %v): %w", e.part, e.giveUp, err)
					return
				}
				if r.Finisher {
					finishers.Add(1)
				}
				if r.Duplicate {
					dups.Add(1)
				}
				if r.Failed {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := finishers.Load(), int64(1); got != want {
		t.Errorf("finishers = %d across Complete and GiveUp, want exactly %d", got, want)
	}
	// Parts 0 and 1 mod 3 have one duplicate each; parts 2 mod 3 have
	// one when the completion came first, none when it converted.
	var sure, most int64
	for p := int64(0); p < total; p++ {
		if p%3 != 2 {
			sure++
		}
		most++
	}
	if got := dups.Load(); got < sure || got > most {
		t.Errorf("duplicates = %d, want %d to %d", got, sure, most)
	}
	if got := failed.Load(); got != 0 {
		t.Errorf("%d calls failed a job that tolerates every part", got)
	}
	var wantGivenUp []int64
	for p := int64(0); p < total; p += 3 {
		wantGivenUp = append(wantGivenUp, p)
	}
	s := checkCounts(t, st, id, 0, int64(len(wantGivenUp)))
	if s.Failed || s.State() != backends.StateComplete {
		t.Errorf("status after storm = %+v, want complete", s)
	}
	if got := givenUpIDs(t, st, id); !reflect.DeepEqual(got, wantGivenUp) {
		t.Errorf("GivenUp after storm = %d parts, want %d (the parts given up and never completed)", len(got), len(wantGivenUp))
	}
	if got := pending(t, st, id); len(got) != 0 {
		t.Errorf("Pending after storm = %d parts, want none", len(got))
	}
}

// testGiveUpFailedJob: GiveUp and Retry on a job failed by Fail return
// ErrJobFailed and change nothing.
func testGiveUpFailedJob(t *testing.T, st *backends.Store) {
	const id = "job-guf"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 4, Tolerance: backends.Tolerance{Parts: 4}})
	mustGiveUp(t, st, id, 0)
	if err := st.Fail(ctx(t), id, "part 2 exited 3"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx(t), id, 1, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("GiveUp on a failed job: err = %v, want ErrJobFailed", err)
	}
	if _, err := st.Complete(ctx(t), id, 0); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("Complete of a given-up part of a failed job: err = %v, want ErrJobFailed", err)
	}
	moved, err := st.Retry(ctx(t), id, []int64{0, 1})
	if !errors.Is(err, backends.ErrJobFailed) || len(moved) != 0 {
		t.Errorf("Retry on a job failed by Fail = %v, %v; want nothing moved, ErrJobFailed", moved, err)
	}
	s := checkCounts(t, st, id, 3, 1)
	if !s.Failed || s.FailedByTolerance || s.Error != "part 2 exited 3" {
		t.Errorf("status = %+v, want failed by Fail, reason kept", s)
	}
	if got, want := givenUpIDs(t, st, id), []int64{0}; !reflect.DeepEqual(got, want) {
		t.Errorf("GivenUp = %v, want %v", got, want)
	}
}

// testGiveUpUnknownJob: GiveUp, GivenUp and Retry of an unknown job return
// ErrNotFound and create nothing; Delete removes given-up parts with the
// job.
func testGiveUpUnknownJob(t *testing.T, st *backends.Store) {
	c := ctx(t)
	const id = "no-such-job"
	if _, err := st.GiveUp(c, id, 0, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("GiveUp: err = %v, want ErrNotFound", err)
	}
	if err := st.GivenUp(c, id, func(backends.GivenUpPart) error { return nil }); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("GivenUp: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Retry(c, id, []int64{0}); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Retry: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Status(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status at end: err = %v, want ErrNotFound (no call may create a job)", err)
	}
	for _, bad := range []string{"", "a{b}", "x*"} {
		if _, err := st.GiveUp(c, bad, 0, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrInvalidJobID) {
			t.Errorf("GiveUp(%q): err = %v, want ErrInvalidJobID", bad, err)
		}
	}

	mustCreateJob(t, st, backends.Job{ID: "job-gud", Total: 3, Tolerance: backends.Tolerance{Parts: 3}})
	mustGiveUp(t, st, "job-gud", 1)
	mustComplete(t, st, "job-gud", 2)
	if err := st.Delete(c, "job-gud"); err != nil {
		t.Fatal(err)
	}
	mustCreateJob(t, st, backends.Job{ID: "job-gud", Total: 3})
	s := checkCounts(t, st, "job-gud", 3, 0)
	if s.Tolerance != (backends.Tolerance{}) {
		t.Errorf("recreated job Tolerance = %+v, want zero", s.Tolerance)
	}
	if got := givenUp(t, st, "job-gud"); len(got) != 0 {
		t.Errorf("recreated job GivenUp = %v, want none", got)
	}
	if got, want := pendingIDs(t, st, "job-gud"), []int64{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("recreated job Pending = %v, want %v", got, want)
	}
	if r := mustComplete(t, st, "job-gud", 1); r.Duplicate {
		t.Errorf("Complete(1) of the recreated job = %+v, want a plain completion", r)
	}
}
