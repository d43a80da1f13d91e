package backendtest

import (
	"errors"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of a job's tolerance of given-up parts, its reduce on failure,
// and the fields a job is created with.

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
	if err := st.List(ctx(t), backends.ListOptions{}, func(s backends.Status) error {
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
	if err := st.List(ctx(t), backends.ListOptions{}, func(s backends.Status) error {
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
