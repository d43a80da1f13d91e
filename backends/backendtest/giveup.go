package backendtest

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of given-up parts, tolerance and retry (issue 11).

func mustCreateJob(t *testing.T, st *backends.Store, job backends.Job) {
	t.Helper()
	if err := st.CreateJob(ctx(t), job); err != nil {
		t.Fatalf("CreateJob(%+v): %v", job, err)
	}
}

func mustGiveUp(t *testing.T, st *backends.Store, id string, part int64) backends.Completion {
	t.Helper()
	c, err := st.GiveUp(ctx(t), id, part, backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10})
	if err != nil {
		t.Fatalf("GiveUp(%s, %d): %v", id, part, err)
	}
	return c
}

func mustComplete(t *testing.T, st *backends.Store, id string, part int64) backends.Completion {
	t.Helper()
	c, err := st.Complete(ctx(t), id, part)
	if err != nil {
		t.Fatalf("Complete(%s, %d): %v", id, part, err)
	}
	return c
}

func mustRetry(t *testing.T, st *backends.Store, id string, parts ...int64) []int64 {
	t.Helper()
	moved, err := st.Retry(ctx(t), id, parts)
	if err != nil {
		t.Fatalf("Retry(%s, %v): %v", id, parts, err)
	}
	return moved
}

func givenUp(t *testing.T, st *backends.Store, id string) []backends.GivenUpPart {
	t.Helper()
	var got []backends.GivenUpPart
	if err := st.GivenUp(ctx(t), id, func(p backends.GivenUpPart) error {
		got = append(got, p)
		return nil
	}); err != nil {
		t.Fatalf("GivenUp(%s): %v", id, err)
	}
	return got
}

func givenUpIDs(t *testing.T, st *backends.Store, id string) []int64 {
	t.Helper()
	ids := []int64{}
	for _, p := range givenUp(t, st, id) {
		ids = append(ids, p.Part)
	}
	return ids
}

func pendingIDs(t *testing.T, st *backends.Store, id string) []int64 {
	t.Helper()
	ids := pending(t, st, id)
	if ids == nil {
		ids = []int64{}
	}
	return ids
}

// checkCounts checks Status (and Peek) against the want counts.
func checkCounts(t *testing.T, st *backends.Store, id string, remaining, gaveUp int64) backends.Status {
	t.Helper()
	s := mustStatus(t, st, id)
	checkPeek(t, st, s)
	if s.Remaining != remaining || s.GivenUp != gaveUp {
		t.Errorf("job %s: Remaining %d, GivenUp %d; want %d and %d", id, s.Remaining, s.GivenUp, remaining, gaveUp)
	}
	return s
}

func sorted(p []int64) []int64 {
	q := append([]int64{}, p...)
	sort.Slice(q, func(a, b int) bool { return q[a] < q[b] })
	return q
}

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

// testToleranceParts: a tolerance of 2 parts keeps the job running through 2
// give-ups; the 3rd fails it at once.
func testToleranceParts(t *testing.T, st *backends.Store) {
	tol := backends.Tolerance{Parts: 2}
	checkTolerance(t, st, "job-tp", 10, tol, 2)
}

// testTolerancePercent: 10% of 25 parts tolerates 2 (rounded down).
func testTolerancePercent(t *testing.T, st *backends.Store) {
	tol := backends.Tolerance{Percent: true, BasisPoints: 1000}
	checkTolerance(t, st, "job-tpc", 25, tol, 2)
}

// testToleranceZero: a job created without a tolerance fails on its first
// given-up part, even when that part is its last.
func testToleranceZero(t *testing.T, st *backends.Store) {
	checkTolerance(t, st, "job-t0", 4, backends.Tolerance{}, 0)
	const id = "job-t0-one"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 1})
	c := mustGiveUp(t, st, id, 0)
	if !c.Failed || !c.Done || c.Duplicate {
		t.Errorf("GiveUp of the only part of a job tolerating none = %+v, want Failed Done", c)
	}
	s := checkCounts(t, st, id, 0, 1)
	if !s.Failed || !s.FailedByTolerance || s.State() != backends.StateFailed {
		t.Errorf("status = %+v, want failed by tolerance", s)
	}
	if _, ok, err := st.ClaimReduce(ctx(t), id, time.Minute); err != nil || ok {
		t.Errorf("ClaimReduce of a job failed by tolerance, without ReduceOnFailure = ok %v, err %v; want false", ok, err)
	}
}

// checkTolerance gives up limit parts of a total-part job (it keeps
// running), then one more (it fails at once, by tolerance, with
// ToleranceReason), then checks that the failed job records nothing more.
func checkTolerance(t *testing.T, st *backends.Store, id string, total int64, tol backends.Tolerance, limit int64) {
	t.Helper()
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: tol})
	if got := tol.Limit(total); got != limit {
		t.Fatalf("test bug: %v.Limit(%d) = %d, want %d", tol, total, got, limit)
	}
	for p := int64(0); p < limit; p++ {
		if c := mustGiveUp(t, st, id, p); c.Failed {
			t.Fatalf("give-up %d of %d tolerated = %+v, want not Failed", p+1, limit, c)
		}
		if s := mustStatus(t, st, id); s.Failed {
			t.Fatalf("after %d give-ups of %d tolerated: %+v, want running", p+1, limit, s)
		}
	}
	mustComplete(t, st, id, total-1)
	c := mustGiveUp(t, st, id, limit)
	if !c.Failed || c.Duplicate {
		t.Errorf("give-up %d with %d tolerated = %+v, want Failed", limit+1, limit, c)
	}
	s := checkCounts(t, st, id, total-limit-2, limit+1)
	if !s.Failed || !s.FailedByTolerance || s.State() != backends.StateFailed {
		t.Errorf("status after give-up %d of %d tolerated = %+v, want failed by tolerance", limit+1, limit, s)
	}
	if got, want := s.Error, backends.ToleranceReason(limit+1, tol, total); got != want {
		t.Errorf("Error = %q, want %q", got, want)
	}
	if _, err := st.GiveUp(ctx(t), id, limit+1, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("GiveUp on a job failed by tolerance: err = %v, want ErrJobFailed", err)
	}
	if _, err := st.Complete(ctx(t), id, limit+1); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("Complete on a job failed by tolerance: err = %v, want ErrJobFailed", err)
	}
	// Not even a given-up part is converted once the job failed.
	if _, err := st.Complete(ctx(t), id, 0); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("Complete of a given-up part of a failed job: err = %v, want ErrJobFailed", err)
	}
	if err := st.Fail(ctx(t), id, "another reason"); err != nil {
		t.Fatal(err)
	}
	s = checkCounts(t, st, id, total-limit-2, limit+1)
	if s.Error != backends.ToleranceReason(limit+1, tol, total) || !s.FailedByTolerance {
		t.Errorf("after a later Fail: %+v, want the tolerance reason kept", s)
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

// testGivenUpList: GivenUp lists given-up parts in ascending order with what
// was recorded (At to the millisecond, Stderr cut to MaxStderrTail), and
// stops when fn returns an error.
func testGivenUpList(t *testing.T, st *backends.Store) {
	const id = "job-gul2"
	const total = 1300
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}})
	at := time.Date(2026, 11, 29, 8, 15, 42, 123_456_789, time.UTC)
	long := strings.Repeat("x", 1000) + "é the end\n"
	want := map[int64]backends.GiveUpInfo{
		7:    {ExitCode: 2, ReceiveCount: 10, At: at, Stderr: "boom\nline two: \"quoted\" ünïcode\n"},
		3:    {ExitCode: 137, Signal: "SIGKILL", ReceiveCount: 12, At: at.Add(time.Hour), Stderr: ""},
		1299: {ExitCode: 1, ReceiveCount: 1, At: at.Add(-time.Minute), Stderr: long},
	}
	// Enough parts to span pages in every store.
	for p := int64(100); p < 1200; p++ {
		want[p] = backends.GiveUpInfo{ExitCode: int(p % 200), ReceiveCount: int(p), At: at.Add(time.Duration(p) * time.Millisecond), Stderr: fmt.Sprint("part ", p)}
	}
	order := make([]int64, 0, len(want))
	for p := range want {
		order = append(order, p)
	}
	// Given up in descending order: the listing must sort.
	sort.Slice(order, func(a, b int) bool { return order[a] > order[b] })
	for _, p := range order {
		if _, err := st.GiveUp(c, id, p, want[p]); err != nil {
			t.Fatalf("GiveUp(%d): %v", p, err)
		}
	}
	// A duplicate give-up does not overwrite what was recorded.
	if r, err := st.GiveUp(c, id, 7, backends.GiveUpInfo{ExitCode: 99, Stderr: "other"}); err != nil || !r.Duplicate {
		t.Fatalf("duplicate GiveUp(7) = %+v, %v; want Duplicate", r, err)
	}
	got := givenUp(t, st, id)
	if len(got) != len(want) {
		t.Fatalf("GivenUp listed %d parts, want %d", len(got), len(want))
	}
	for i, g := range got {
		if i > 0 && g.Part <= got[i-1].Part {
			t.Fatalf("GivenUp listed part %d after %d: want ascending order", g.Part, got[i-1].Part)
		}
		w, ok := want[g.Part]
		if !ok {
			t.Fatalf("GivenUp listed part %d, which was not given up", g.Part)
		}
		w.At = w.At.Truncate(time.Millisecond)
		w.Stderr = backends.StderrTail(w.Stderr)
		if g.ExitCode != w.ExitCode || g.Signal != w.Signal || g.ReceiveCount != w.ReceiveCount || !g.At.Equal(w.At) || g.Stderr != w.Stderr {
			t.Errorf("GivenUp part %d = %+v, want %+v", g.Part, g.GiveUpInfo, w)
		}
	}
	if g := got[len(got)-1]; len(g.Stderr) > backends.MaxStderrTail || !strings.HasSuffix(g.Stderr, "é the end\n") {
		t.Errorf("part %d Stderr kept %d bytes ending %q, want at most %d, its end", g.Part, len(g.Stderr), g.Stderr[max(0, len(g.Stderr)-12):], backends.MaxStderrTail)
	}
	checkCounts(t, st, id, total-int64(len(want)), int64(len(want)))

	stop := errors.New("stop")
	var seen []int64
	err := st.GivenUp(c, id, func(p backends.GivenUpPart) error {
		seen = append(seen, p.Part)
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("GivenUp err = %v, want the callback's error", err)
	}
	if want := []int64{3, 7, 100}; !reflect.DeepEqual(seen, want) {
		t.Errorf("GivenUp called fn with %v before stopping, want %v", seen, want)
	}
	// At set by the Store when zero.
	before := time.Now().Add(-2 * time.Second)
	if _, err := st.GiveUp(c, id, 0, backends.GiveUpInfo{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if g := givenUp(t, st, id)[0]; g.Part != 0 || g.At.Before(before) || g.At.After(time.Now().Add(2*time.Second)) {
		t.Errorf("GivenUp part 0 = %+v, want At about now", g)
	}
}

// testGivenUpEmpty: a job with nothing given up lists nothing.
func testGivenUpEmpty(t *testing.T, st *backends.Store) {
	mustCreate(t, st, "job-gue", 3, "")
	if got := givenUp(t, st, "job-gue"); len(got) != 0 {
		t.Errorf("GivenUp of a fresh job = %v, want none", got)
	}
}

// testRetry: Retry moves only given-up parts back to pending and returns
// them; pending and complete parts and parts named twice are left alone.
func testRetry(t *testing.T, st *backends.Store) {
	const id = "job-rt"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 5, Tolerance: backends.Tolerance{Parts: 5}})
	mustComplete(t, st, id, 0)
	mustGiveUp(t, st, id, 1)
	mustGiveUp(t, st, id, 2)
	moved := mustRetry(t, st, id, 0, 1, 3, 1, 99)
	if want := []int64{1}; !reflect.DeepEqual(moved, want) {
		t.Errorf("Retry(0, 1, 3, 1, 99) moved %v, want %v", moved, want)
	}
	checkCounts(t, st, id, 3, 1)
	if got, want := pendingIDs(t, st, id), []int64{1, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pending after Retry = %v, want %v", got, want)
	}
	if got, want := givenUpIDs(t, st, id), []int64{2}; !reflect.DeepEqual(got, want) {
		t.Errorf("GivenUp after Retry = %v, want %v", got, want)
	}
	if moved := mustRetry(t, st, id, 1); len(moved) != 0 {
		t.Errorf("Retry of a part already retried moved %v, want nothing", moved)
	}
	if moved := mustRetry(t, st, id); len(moved) != 0 {
		t.Errorf("Retry of no parts moved %v, want nothing", moved)
	}
	// The retried part is pending again: completing it counts.
	if c := mustComplete(t, st, id, 1); c.Duplicate || c.Finisher {
		t.Errorf("Complete of a retried part = %+v, want a plain completion", c)
	}
	// And it can be given up again.
	mustRetry(t, st, id, 2)
	mustGiveUp(t, st, id, 2)
	checkCounts(t, st, id, 2, 1)
	mustComplete(t, st, id, 3)
	if c := mustComplete(t, st, id, 4); !c.Finisher {
		t.Errorf("Complete of the last part after retries = %+v, want Finisher", c)
	}
	checkCounts(t, st, id, 0, 1)
}

// testRetryRevives: a job failed only by its tolerance runs again once Retry
// brings its given-up parts within it, and fails again past it.
func testRetryRevives(t *testing.T, st *backends.Store) {
	const id = "job-rr"
	tol := backends.Tolerance{Parts: 1}
	mustCreateJob(t, st, backends.Job{ID: id, Total: 4, Tolerance: tol})
	mustGiveUp(t, st, id, 0)
	mustGiveUp(t, st, id, 1)
	if _, err := st.GiveUp(ctx(t), id, 2, backends.GiveUpInfo{}); !errors.Is(err, backends.ErrJobFailed) {
		t.Fatalf("GiveUp after the job failed by tolerance: err = %v, want ErrJobFailed", err)
	}
	if s := mustStatus(t, st, id); !s.FailedByTolerance || s.GivenUp != 2 {
		t.Fatalf("status = %+v, want failed by tolerance with 2 given up", s)
	}
	// A retry that moves nothing leaves it failed.
	if moved := mustRetry(t, st, id, 3); len(moved) != 0 {
		t.Errorf("Retry(3) moved %v, want nothing", moved)
	}
	if s := mustStatus(t, st, id); !s.Failed || !s.FailedByTolerance {
		t.Errorf("after a Retry that moved nothing: %+v, want still failed by tolerance", s)
	}
	if moved := mustRetry(t, st, id, 0); !reflect.DeepEqual(moved, []int64{0}) {
		t.Errorf("Retry(0) moved %v, want [0]", moved)
	}
	s := checkCounts(t, st, id, 3, 1)
	if s.Failed || s.FailedByTolerance || s.Error != "" || s.State() != backends.StateRunning {
		t.Errorf("after Retry within tolerance: %+v, want running, no error", s)
	}
	mustComplete(t, st, id, 0)
	mustComplete(t, st, id, 3)
	c := mustGiveUp(t, st, id, 2)
	if !c.Failed || !c.Done {
		t.Errorf("GiveUp past the tolerance again = %+v, want Failed", c)
	}
	s = checkCounts(t, st, id, 0, 2)
	if !s.FailedByTolerance || s.Error != backends.ToleranceReason(2, tol, 4) {
		t.Errorf("status = %+v, want failed by tolerance again", s)
	}
	// Retrying both brings it back.
	if moved := mustRetry(t, st, id, 2, 1); !reflect.DeepEqual(sorted(moved), []int64{1, 2}) {
		t.Errorf("Retry(2, 1) moved %v, want 1 and 2", moved)
	}
	if s := checkCounts(t, st, id, 2, 0); s.Failed {
		t.Errorf("after retrying every given-up part: %+v, want running", s)
	}
}

// testRetryClearsReduce: when parts move after the reduce was sent, the
// reduce state is cleared and the job reduces again once they end; a Retry
// that moves nothing keeps it.
func testRetryClearsReduce(t *testing.T, st *backends.Store) {
	const id = "job-rcr"
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: id, Total: 2, Tolerance: backends.Tolerance{Parts: 1}})
	mustComplete(t, st, id, 0)
	if r := mustGiveUp(t, st, id, 1); !r.Finisher {
		t.Fatalf("GiveUp of the last part = %+v, want Finisher", r)
	}
	if _, ok, err := st.ClaimReduce(c, id, time.Minute); err != nil || !ok {
		t.Fatalf("ClaimReduce = %v, %v", ok, err)
	}
	if err := st.MarkReduceSent(c, id); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkReduced(c, id); err != nil {
		t.Fatal(err)
	}
	if moved := mustRetry(t, st, id, 0); len(moved) != 0 {
		t.Fatalf("Retry(0) of a complete part moved %v", moved)
	}
	if s := mustStatus(t, st, id); !s.ReduceSent || !s.Reduced {
		t.Errorf("after a Retry that moved nothing: %+v, want the reduce state kept", s)
	}
	if moved := mustRetry(t, st, id, 1); !reflect.DeepEqual(moved, []int64{1}) {
		t.Fatalf("Retry(1) moved %v, want [1]", moved)
	}
	s := checkCounts(t, st, id, 1, 0)
	if s.ReduceSent || s.Reduced || s.State() != backends.StateRunning {
		t.Errorf("after Retry moved a part of a reduced job: %+v, want running, reduce state cleared", s)
	}
	if _, ok, err := st.ClaimReduce(c, id, time.Minute); err != nil || ok {
		t.Errorf("ClaimReduce with the retried part pending = ok %v, err %v; want false", ok, err)
	}
	if r := mustComplete(t, st, id, 1); !r.Finisher || !r.Done || r.ReduceSent {
		t.Errorf("Complete of the retried part = %+v, want Finisher Done, not ReduceSent", r)
	}
	if _, ok, err := st.ClaimReduce(c, id, time.Minute); err != nil || !ok {
		t.Errorf("ClaimReduce after the retried part ended = ok %v, err %v; want a claim", ok, err)
	}

	// A live claim is cleared too: a finisher that claimed before the
	// Retry must not block the next one.
	const id2 = "job-rcr2"
	mustCreateJob(t, st, backends.Job{ID: id2, Total: 1, Tolerance: backends.Tolerance{Parts: 1}})
	mustGiveUp(t, st, id2, 0)
	if _, ok, err := st.ClaimReduce(c, id2, time.Hour); err != nil || !ok {
		t.Fatalf("ClaimReduce = %v, %v", ok, err)
	}
	mustRetry(t, st, id2, 0)
	mustComplete(t, st, id2, 0)
	if _, ok, err := st.ClaimReduce(c, id2, time.Minute); err != nil || !ok {
		t.Errorf("ClaimReduce after Retry dropped an hour-long claim = ok %v, err %v; want a claim", ok, err)
	}
}

// testRetryConcurrent: concurrent Retry calls move each part once; a Retry
// racing late completions counts nothing twice and the job ends complete
// with at most one finisher (exactly one when the Retry moved parts).
func testRetryConcurrent(t *testing.T, st *backends.Store) {
	const total = 300
	const id = "job-rc"
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}})
	all := make([]int64, total)
	for p := range all {
		all[p] = int64(p)
	}
	giveUpAll := func() {
		for _, p := range all {
			mustGiveUp(t, st, id, p)
		}
		checkCounts(t, st, id, 0, total)
	}

	// Round 1: 8 Retry calls at once, each naming every part.
	giveUpAll()
	var mu sync.Mutex
	count := map[int64]int{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			moved, err := st.Retry(c, id, all)
			if err != nil {
				t.Errorf("Retry: %v", err)
				return
			}
			mu.Lock()
			for _, p := range moved {
				count[p]++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(count) != total {
		t.Errorf("concurrent Retry calls moved %d distinct parts, want %d", len(count), total)
	}
	for p, n := range count {
		if n != 1 {
			t.Errorf("part %d moved %d times by concurrent Retry calls, want once", p, n)
		}
	}
	checkCounts(t, st, id, total, 0)

	// Round 2: give every part up again, then retry them while late
	// deliveries complete them.
	giveUpAll()
	var finishers, dups atomic.Int64
	var moved []int64
	work := make(chan int64, total)
	for _, p := range all {
		work <- p
	}
	close(work)
	start := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for p := range work {
				r, err := st.Complete(c, id, p)
				if err != nil {
					t.Errorf("Complete(%d): %v", p, err)
					return
				}
				if r.Finisher {
					finishers.Add(1)
				}
				if r.Duplicate {
					dups.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		var err error
		if moved, err = st.Retry(c, id, all); err != nil {
			t.Errorf("Retry: %v", err)
		}
	}()
	close(start)
	wg.Wait()
	want := int64(0)
	if len(moved) > 0 {
		want = 1
	}
	if got := finishers.Load(); got != want {
		t.Errorf("finishers = %d with Retry moving %d parts, want %d", got, len(moved), want)
	}
	if got := dups.Load(); got != 0 {
		t.Errorf("%d late completions were duplicates, want 0 (each part was given up or pending)", got)
	}
	s := checkCounts(t, st, id, 0, 0)
	if s.Failed || s.State() != backends.StateComplete {
		t.Errorf("status = %+v, want complete", s)
	}
	if got := givenUp(t, st, id); len(got) != 0 {
		t.Errorf("GivenUp = %d parts, want none", len(got))
	}
	if got := pending(t, st, id); len(got) != 0 {
		t.Errorf("Pending = %d parts, want none", len(got))
	}
}

// testReduceOnFailure: ClaimReduce serves a failed job only when it was
// created with ReduceOnFailure, whatever failed it, and once.
func testReduceOnFailure(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: "job-rof", Total: 3, ReduceOnFailure: true})
	if _, ok, err := st.ClaimReduce(c, "job-rof", time.Minute); err != nil || ok {
		t.Fatalf("ClaimReduce of a running job = ok %v, err %v; want false", ok, err)
	}
	if err := st.Fail(c, "job-rof", "part 0 exited 3"); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := st.ClaimReduce(c, "job-rof", time.Minute)
	if err != nil || !ok || tok == "" {
		t.Fatalf("ClaimReduce of a failed job with ReduceOnFailure = %q, %v, %v; want a claim", tok, ok, err)
	}
	if _, ok, _ := st.ClaimReduce(c, "job-rof", time.Minute); ok {
		t.Errorf("second ClaimReduce while the claim is live succeeded")
	}
	if err := st.MarkReduceSent(c, "job-rof"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.ClaimReduce(c, "job-rof", time.Minute); ok {
		t.Errorf("ClaimReduce after the reduce was sent succeeded")
	}
	if s := mustStatus(t, st, "job-rof"); !s.Failed || !s.ReduceSent || s.State() != backends.StateFailed {
		t.Errorf("status = %+v, want failed with the reduce sent", s)
	}

	// Failed by tolerance.
	mustCreateJob(t, st, backends.Job{ID: "job-rof2", Total: 3, ReduceOnFailure: true})
	if r := mustGiveUp(t, st, "job-rof2", 1); !r.Failed {
		t.Fatalf("GiveUp = %+v, want Failed", r)
	}
	if _, ok, err := st.ClaimReduce(c, "job-rof2", time.Minute); err != nil || !ok {
		t.Errorf("ClaimReduce of a job failed by tolerance with ReduceOnFailure = ok %v, err %v; want a claim", ok, err)
	}

	// Without ReduceOnFailure, never.
	mustCreateJob(t, st, backends.Job{ID: "job-norof", Total: 1})
	if r := mustGiveUp(t, st, "job-norof", 0); !r.Failed || !r.Done {
		t.Fatalf("GiveUp = %+v, want Failed Done", r)
	}
	if _, ok, err := st.ClaimReduce(c, "job-norof", time.Minute); err != nil || ok {
		t.Errorf("ClaimReduce of a failed job without ReduceOnFailure = ok %v, err %v; want false", ok, err)
	}
}

// testJobFieldsRoundTrip: Tolerance, ReduceOnFailure and Digest come back
// from Status, Peek and List as CreateJob stored them.
func testJobFieldsRoundTrip(t *testing.T, st *backends.Store) {
	jobs := []backends.Job{
		{ID: "job-f1", Total: 40, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 250}, ReduceOnFailure: true,
			Digest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{ID: "job-f2", Total: 3, Tolerance: backends.Tolerance{Parts: 7}},
		{ID: "job-f3", Total: 1},
		{ID: "job-f4", Total: 200, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}, Digest: "sha256:00"},
	}
	for _, j := range jobs {
		mustCreateJob(t, st, j)
	}
	check := func(where string, s backends.Status, j backends.Job) {
		t.Helper()
		if s.Tolerance != j.Tolerance || s.ReduceOnFailure != j.ReduceOnFailure || s.Digest != j.Digest || s.GivenUp != 0 || s.FailedByTolerance {
			t.Errorf("%s of %s: Tolerance %+v ReduceOnFailure %v Digest %q GivenUp %d FailedByTolerance %v; want %+v %v %q 0 false",
				where, j.ID, s.Tolerance, s.ReduceOnFailure, s.Digest, s.GivenUp, s.FailedByTolerance, j.Tolerance, j.ReduceOnFailure, j.Digest)
		}
	}
	byID := map[string]backends.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
		s := mustStatus(t, st, j.ID)
		check("Status", s, j)
		checkPeek(t, st, s)
	}
	n := 0
	if err := st.List(ctx(t), func(s backends.Status) error {
		n++
		check("List", s, byID[s.ID])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(jobs) {
		t.Errorf("List saw %d jobs, want %d", n, len(jobs))
	}
	// The counts show in List too.
	mustGiveUp(t, st, "job-f4", 5)
	mustGiveUp(t, st, "job-f2", 0)
	mustGiveUp(t, st, "job-f3", 0)
	if err := st.List(ctx(t), func(s backends.Status) error {
		want := map[string]int64{"job-f1": 0, "job-f2": 1, "job-f3": 1, "job-f4": 1}[s.ID]
		if s.GivenUp != want {
			t.Errorf("List: %s GivenUp = %d, want %d", s.ID, s.GivenUp, want)
		}
		if got, want := s.FailedByTolerance, s.ID == "job-f3"; got != want || s.Failed != want {
			t.Errorf("List: %s Failed %v FailedByTolerance %v, want %v", s.ID, s.Failed, got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
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
