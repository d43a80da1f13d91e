// Package backendtest is the conformance suite every progress store runs:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) *backends.Store { ... })
//	}
//
// newStore must return a store that holds no jobs (a fresh database, a
// flushed Redis db, a new table) and arrange its cleanup with t.Cleanup.
// Behaviour is specified here once; a store is done when this suite passes.
package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// NewStore returns an empty store for one test.
type NewStore func(t *testing.T) *backends.Store

// Run runs the whole conformance suite against the store newStore returns.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, *backends.Store)
	}{
		{"CreateAndStatus", testCreateAndStatus},
		{"Create_Exists", testCreateExists},
		{"Create_InvalidTotal", testCreateInvalidTotal},
		{"Complete_StepByStep", testCompleteStepByStep},
		{"Complete_PartRange", testPartRange},
		{"UnknownJob", testUnknownJob},
		{"InvalidJobID", testInvalidJobID},
		{"Fail", testFail},
		{"Reduce_Claim", testReduceClaim},
		{"Reduce_LeaseExpires", testReduceLeaseExpires},
		{"Reduce_ConcurrentClaim", testReduceConcurrentClaim},
		{"DuplicateStorm", testDuplicateStorm},
		{"Metadata_RoundTrip", testMetadataRoundTrip},
		{"List_Many", testListMany},
		{"Delete", testDelete},
		{"Pending_StopsOnError", testPendingStops},
		{"Large_MillionParts", testMillionParts},
	}
	// Given-up parts, tolerance and retry: every store records them.
	tests = append(tests, []struct {
		name string
		fn   func(*testing.T, *backends.Store)
	}{
		{"GiveUp_EndsPart", testGiveUpEndsPart},
		{"GiveUp_LastIsFinisher", testGiveUpLastIsFinisher},
		{"GiveUp_ConvertedByComplete", testGiveUpConverted},
		{"GiveUp_Storm", testGiveUpStorm},
		{"GiveUp_FailedJob", testGiveUpFailedJob},
		{"GiveUp_UnknownJob", testGiveUpUnknownJob},
		{"Tolerance_Parts", testToleranceParts},
		{"Tolerance_Percent", testTolerancePercent},
		{"Tolerance_Zero", testToleranceZero},
		{"GivenUp_List", testGivenUpList},
		{"GivenUp_Empty", testGivenUpEmpty},
		{"Retry", testRetry},
		{"Retry_RevivesToleranceFailed", testRetryRevives},
		{"Retry_ClearsReduce", testRetryClearsReduce},
		{"Retry_Concurrent", testRetryConcurrent},
		{"Reduce_OnFailure", testReduceOnFailure},
		{"JobFields_RoundTrip", testJobFieldsRoundTrip},
	}...)
	// Batches, progress times, newest-first listing and expiry.
	tests = append(tests, []struct {
		name string
		fn   func(*testing.T, *backends.Store)
	}{
		{"CompleteParts", testCompleteParts},
		{"CompleteParts_Shards", testCompletePartsShards},
		{"CompleteParts_Storm", testCompletePartsStorm},
		{"CompleteParts_GivenUp", testCompletePartsGivenUp},
		{"CompleteParts_Refused", testCompletePartsRefused},
		{"PartStates", testPartStates},
		{"Progress_LastEnded", testLastEnded},
		{"Progress_Recent", testRecent},
		{"GiveUp_Reason", testGiveUpReason},
		{"List_NewestFirst", testListNewestFirst},
		{"List_Since", testListSince},
		{"Expiry_Created", testExpiryCreated},
		{"Expiry_Set", testExpirySet},
		{"Expiry_Passed", testExpiryPassed},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			tc.fn(t, st)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, st *backends.Store, id string, total int64, meta string) {
	t.Helper()
	var m json.RawMessage
	if meta != "" {
		m = json.RawMessage(meta)
	}
	if err := st.CreateJob(ctx(t), backends.Job{ID: id, Total: total, Metadata: m}); err != nil {
		t.Fatalf("CreateJob(%s, %d): %v", id, total, err)
	}
}

func mustStatus(t *testing.T, st *backends.Store, id string) backends.Status {
	t.Helper()
	s, err := st.Status(ctx(t), id)
	if err != nil {
		t.Fatalf("Status(%s): %v", id, err)
	}
	return s
}

// checkPeek compares Peek with the Status just read: the same job, and a
// Remaining that is 0 exactly when Status says so and otherwise 1..Total.
func checkPeek(t *testing.T, st *backends.Store, s backends.Status) {
	t.Helper()
	p, err := st.Peek(ctx(t), s.ID)
	if err != nil {
		t.Fatalf("Peek(%s): %v", s.ID, err)
	}
	if (p.Remaining == 0) != (s.Remaining == 0) || p.Remaining < 0 || p.Remaining > p.Total {
		t.Errorf("Peek Remaining = %d with Status Remaining %d of %d: want 0 exactly when Status has 0, else 1..Total", p.Remaining, s.Remaining, s.Total)
	}
	p.Remaining = s.Remaining
	if p.ID != s.ID || p.Total != s.Total || p.Failed != s.Failed || p.Error != s.Error || p.ReduceSent != s.ReduceSent || p.Reduced != s.Reduced || !p.CreatedAt.Equal(s.CreatedAt) || p.FirstPart != s.FirstPart || string(p.Metadata) != string(s.Metadata) ||
		p.GivenUp != s.GivenUp || p.FailedByTolerance != s.FailedByTolerance || p.Tolerance != s.Tolerance || p.ReduceOnFailure != s.ReduceOnFailure || p.Digest != s.Digest ||
		!p.ExpiresAt.Equal(s.ExpiresAt) || p.Batch != s.Batch || p.BatchBytes != s.BatchBytes || p.LastEnded.After(s.LastEnded) {
		t.Errorf("Peek = %+v, want the Status %+v (Remaining aside, LastEnded no later)", p, s)
	}
}

func pending(t *testing.T, st *backends.Store, id string) []int64 {
	t.Helper()
	var got []int64
	if err := st.Pending(ctx(t), id, func(p int64) error {
		got = append(got, p)
		return nil
	}); err != nil {
		t.Fatalf("Pending(%s): %v", id, err)
	}
	return got
}

func jsonEqual(t *testing.T, got, want json.RawMessage) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("metadata %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func testCreateAndStatus(t *testing.T, st *backends.Store) {
	before := time.Now().Add(-2 * time.Second)
	mustCreate(t, st, "job-a", 5, `{"name":"a"}`)
	s := mustStatus(t, st, "job-a")
	if got, want := s.ID, "job-a"; got != want {
		t.Errorf("ID = %q, want %q", got, want)
	}
	if got, want := s.Total, int64(5); got != want {
		t.Errorf("Total = %d, want %d", got, want)
	}
	if got, want := s.Remaining, int64(5); got != want {
		t.Errorf("Remaining = %d, want %d", got, want)
	}
	if s.Failed || s.Error != "" || s.ReduceSent || s.Reduced {
		t.Errorf("new job status = %+v, want not failed, no reduce", s)
	}
	if got, want := s.State(), backends.StateRunning; got != want {
		t.Errorf("State = %q, want %q", got, want)
	}
	if got, want := s.FirstPart, int64(0); got != want {
		t.Errorf("FirstPart = %d, want %d", got, want)
	}
	if s.CreatedAt.Before(before) || s.CreatedAt.After(time.Now().Add(2*time.Second)) {
		t.Errorf("CreatedAt = %v, want about now", s.CreatedAt)
	}
	if !jsonEqual(t, s.Metadata, json.RawMessage(`{"name":"a"}`)) {
		t.Errorf("Metadata = %s, want {\"name\":\"a\"}", s.Metadata)
	}
	if got, want := pending(t, st, "job-a"), []int64{0, 1, 2, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pending = %v, want %v", got, want)
	}
}

func testCreateExists(t *testing.T, st *backends.Store) {
	mustCreate(t, st, "job-x", 3, `{"v":1}`)
	if _, err := st.Complete(ctx(t), "job-x", 1); err != nil {
		t.Fatal(err)
	}
	err := st.CreateJob(ctx(t), backends.Job{ID: "job-x", Total: 10, Metadata: json.RawMessage(`{"v":2}`)})
	if !errors.Is(err, backends.ErrExists) {
		t.Fatalf("second CreateJob error = %v, want ErrExists", err)
	}
	s := mustStatus(t, st, "job-x")
	if s.Total != 3 || s.Remaining != 2 || !jsonEqual(t, s.Metadata, json.RawMessage(`{"v":1}`)) {
		t.Errorf("existing job changed by a refused CreateJob: %+v", s)
	}
}

func testCreateInvalidTotal(t *testing.T, st *backends.Store) {
	for _, total := range []int64{0, -1} {
		err := st.CreateJob(ctx(t), backends.Job{ID: "job-bad", Total: total})
		if err == nil {
			t.Errorf("CreateJob with Total %d succeeded, want an error", total)
		}
	}
	if _, err := st.Status(ctx(t), "job-bad"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status after refused CreateJob: err = %v, want ErrNotFound", err)
	}
}

func testCompleteStepByStep(t *testing.T, st *backends.Store) {
	const total = 4
	mustCreate(t, st, "job-s", total, `{}`)
	order := []int64{2, 0, 3, 1}
	want := []int64{0, 1, 2, 3}
	for i, p := range order {
		c, err := st.Complete(ctx(t), "job-s", p)
		if err != nil {
			t.Fatalf("Complete(%d): %v", p, err)
		}
		last := i == len(order)-1
		if c.Finisher != last || c.Done != last || c.Duplicate {
			t.Errorf("Complete(%d) = %+v, want Finisher=Done=%v, Duplicate=false", p, c, last)
		}
		// Duplicate of the same part.
		d, err := st.Complete(ctx(t), "job-s", p)
		if err != nil {
			t.Fatalf("duplicate Complete(%d): %v", p, err)
		}
		if d.Finisher || !d.Duplicate || d.Done != last {
			t.Errorf("duplicate Complete(%d) = %+v, want Finisher=false Duplicate=true Done=%v", p, d, last)
		}
		for j, w := range want {
			if w == p {
				want = append(want[:j:j], want[j+1:]...)
				break
			}
		}
		s := mustStatus(t, st, "job-s")
		checkPeek(t, st, s)
		if got, w := s.Remaining, int64(total-i-1); got != w {
			t.Errorf("after %d completions Remaining = %d, want %d", i+1, got, w)
		}
		wantState := backends.StateRunning
		if last {
			wantState = backends.StateComplete
		}
		if got := s.State(); got != wantState {
			t.Errorf("after %d completions State = %q, want %q", i+1, got, wantState)
		}
		got := pending(t, st, "job-s")
		if len(want) == 0 {
			if len(got) != 0 {
				t.Errorf("Pending = %v, want none", got)
			}
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("after completing %d: Pending = %v, want %v", p, got, want)
		}
	}
}

func testPartRange(t *testing.T, st *backends.Store) {
	mustCreate(t, st, "job-r", 3, "")
	for _, p := range []int64{-1, 3, 1 << 40} {
		if _, err := st.Complete(ctx(t), "job-r", p); !errors.Is(err, backends.ErrPartRange) {
			t.Errorf("Complete(part %d) of a 3-part job: err = %v, want ErrPartRange", p, err)
		}
	}
	if got, want := mustStatus(t, st, "job-r").Remaining, int64(3); got != want {
		t.Errorf("Remaining = %d after out-of-range completions, want %d", got, want)
	}
}

func testUnknownJob(t *testing.T, st *backends.Store) {
	c := ctx(t)
	const id = "no-such-job"
	if _, err := st.Complete(c, id, 0); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Complete: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Peek(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Peek: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Status(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status after Complete of unknown job: err = %v, want ErrNotFound (Complete must not create jobs)", err)
	}
	if err := st.Fail(c, id, "x"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Fail: err = %v, want ErrNotFound", err)
	}
	if err := st.Pending(c, id, func(int64) error { return nil }); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Pending: err = %v, want ErrNotFound", err)
	}
	if _, _, err := st.ClaimReduce(c, id, time.Minute); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("ClaimReduce: err = %v, want ErrNotFound", err)
	}
	if err := st.MarkReduceSent(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("MarkReduceSent: err = %v, want ErrNotFound", err)
	}
	if err := st.MarkReduced(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("MarkReduced: err = %v, want ErrNotFound", err)
	}
	if err := st.Delete(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Status(c, id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status at end: err = %v, want ErrNotFound (no call may create a job)", err)
	}
}

// testInvalidJobID: an id that ValidateJobID refuses gets ErrInvalidJobID
// from every method, and ErrNotFound too from every method but CreateJob;
// nothing is written.
func testInvalidJobID(t *testing.T, st *backends.Store) {
	c := ctx(t)
	for _, id := range []string{"", "a{b}", "a b", "-lead", "x*", "a#s00001"} {
		err := st.CreateJob(c, backends.Job{ID: id, Total: 3})
		if !errors.Is(err, backends.ErrInvalidJobID) || errors.Is(err, backends.ErrNotFound) {
			t.Errorf("CreateJob(%q): err = %v, want ErrInvalidJobID and not ErrNotFound", id, err)
		}
		checks := map[string]error{}
		_, checks["Complete"] = st.Complete(c, id, 0)
		_, checks["Status"] = st.Status(c, id)
		_, checks["Peek"] = st.Peek(c, id)
		checks["Fail"] = st.Fail(c, id, "x")
		checks["Pending"] = st.Pending(c, id, func(int64) error { return nil })
		_, _, checks["ClaimReduce"] = st.ClaimReduce(c, id, time.Minute)
		checks["ReleaseReduce"] = st.ReleaseReduce(c, id, "tok")
		checks["MarkReduceSent"] = st.MarkReduceSent(c, id)
		checks["MarkReduced"] = st.MarkReduced(c, id)
		checks["Delete"] = st.Delete(c, id)
		for name, err := range checks {
			if !errors.Is(err, backends.ErrInvalidJobID) || !errors.Is(err, backends.ErrNotFound) {
				t.Errorf("%s(%q): err = %v, want ErrInvalidJobID and ErrNotFound", name, id, err)
			}
		}
	}
	n := 0
	if err := st.List(c, backends.ListOptions{}, func(backends.Status) error { n++; return nil }); err != nil {
		t.Fatalf("List: %v", err)
	}
	if n != 0 {
		t.Errorf("List after calls with invalid ids: %d jobs, want 0 (nothing may be written)", n)
	}
}

func testFail(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreate(t, st, "job-f", 3, `{"k":"v"}`)
	if _, err := st.Complete(c, "job-f", 0); err != nil {
		t.Fatal(err)
	}
	// A reason past MaxReason is refused and writes nothing.
	if err := st.Fail(c, "job-f", strings.Repeat("r", backends.MaxReason+1)); !errors.Is(err, backends.ErrLongReason) {
		t.Errorf("Fail with a %d-byte reason: %v, want ErrLongReason", backends.MaxReason+1, err)
	}
	if s := mustStatus(t, st, "job-f"); s.Failed {
		t.Fatalf("a refused Fail failed the job: %+v", s)
	}
	if err := st.Fail(c, "job-f", "part 1 exited 3"); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	s := mustStatus(t, st, "job-f")
	checkPeek(t, st, s)
	if !s.Failed || s.Error != "part 1 exited 3" || s.State() != backends.StateFailed {
		t.Errorf("after Fail: %+v, want Failed with reason", s)
	}
	if got, want := s.Remaining, int64(2); got != want {
		t.Errorf("Remaining = %d, want %d", got, want)
	}
	if !jsonEqual(t, s.Metadata, json.RawMessage(`{"k":"v"}`)) {
		t.Errorf("Fail changed metadata: %s", s.Metadata)
	}
	if err := st.Fail(c, "job-f", "second reason"); err != nil {
		t.Fatalf("second Fail: %v", err)
	}
	if got, want := mustStatus(t, st, "job-f").Error, "part 1 exited 3"; got != want {
		t.Errorf("after second Fail, Error = %q, want the first reason %q", got, want)
	}
	for _, p := range []int64{1, 2} {
		if _, err := st.Complete(c, "job-f", p); !errors.Is(err, backends.ErrJobFailed) {
			t.Errorf("Complete(%d) of failed job: err = %v, want ErrJobFailed", p, err)
		}
	}
	s = mustStatus(t, st, "job-f")
	if !s.Failed || s.Remaining != 2 {
		t.Errorf("failed job after completions: %+v, want still failed with 2 remaining", s)
	}
	if _, ok, err := st.ClaimReduce(c, "job-f", time.Minute); err != nil || ok {
		t.Errorf("ClaimReduce on failed job = ok %v, err %v; want false, nil", ok, err)
	}
}

func testReduceClaim(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreate(t, st, "job-c", 2, "")
	if _, ok, err := st.ClaimReduce(c, "job-c", time.Minute); err != nil || ok {
		t.Fatalf("ClaimReduce with parts pending = ok %v, err %v; want false, nil", ok, err)
	}
	for _, p := range []int64{0, 1} {
		if _, err := st.Complete(c, "job-c", p); err != nil {
			t.Fatal(err)
		}
	}
	tok, ok, err := st.ClaimReduce(c, "job-c", time.Minute)
	if err != nil || !ok || tok == "" {
		t.Fatalf("ClaimReduce on done job = %q, %v, %v; want a token", tok, ok, err)
	}
	if _, ok, err := st.ClaimReduce(c, "job-c", time.Minute); err != nil || ok {
		t.Fatalf("second ClaimReduce while claim is live = ok %v, err %v; want false", ok, err)
	}
	if err := st.ReleaseReduce(c, "job-c", "not-the-token"); err != nil {
		t.Fatalf("ReleaseReduce with a wrong token: %v", err)
	}
	if _, ok, _ := st.ClaimReduce(c, "job-c", time.Minute); ok {
		t.Fatal("ReleaseReduce with a wrong token released the claim")
	}
	if err := st.ReleaseReduce(c, "job-c", tok); err != nil {
		t.Fatalf("ReleaseReduce: %v", err)
	}
	tok2, ok, err := st.ClaimReduce(c, "job-c", time.Minute)
	if err != nil || !ok || tok2 == "" {
		t.Fatalf("ClaimReduce after release = %q, %v, %v; want a token", tok2, ok, err)
	}
	if s := mustStatus(t, st, "job-c"); s.ReduceSent {
		t.Errorf("ReduceSent before MarkReduceSent")
	}
	if err := st.MarkReduceSent(c, "job-c"); err != nil {
		t.Fatalf("MarkReduceSent: %v", err)
	}
	if err := st.MarkReduceSent(c, "job-c"); err != nil {
		t.Fatalf("MarkReduceSent again: %v", err)
	}
	s := mustStatus(t, st, "job-c")
	checkPeek(t, st, s)
	if !s.ReduceSent || s.Reduced || s.State() != backends.StateComplete {
		t.Errorf("after MarkReduceSent: %+v, want ReduceSent, state complete", s)
	}
	if _, ok, err := st.ClaimReduce(c, "job-c", time.Minute); err != nil || ok {
		t.Errorf("ClaimReduce after the reduce was sent = ok %v, err %v; want false", ok, err)
	}
	d, err := st.Complete(c, "job-c", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Duplicate || !d.Done || d.Finisher || !d.ReduceSent {
		t.Errorf("duplicate after reduce sent = %+v, want Duplicate Done ReduceSent", d)
	}
	if err := st.MarkReduced(c, "job-c"); err != nil {
		t.Fatalf("MarkReduced: %v", err)
	}
	s = mustStatus(t, st, "job-c")
	if !s.Reduced || s.State() != backends.StateReduced {
		t.Errorf("after MarkReduced: %+v, want state reduced", s)
	}
}

func testReduceLeaseExpires(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreate(t, st, "job-l", 1, "")
	if _, err := st.Complete(c, "job-l", 0); err != nil {
		t.Fatal(err)
	}
	// A finisher that claimed and then died: its claim must run out.
	if _, ok, err := st.ClaimReduce(c, "job-l", 100*time.Millisecond); err != nil || !ok {
		t.Fatalf("ClaimReduce = %v, %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := st.ClaimReduce(c, "job-l", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a claim with a 100ms lease was still live 10s later")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testReduceConcurrentClaim(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreate(t, st, "job-cc", 1, "")
	if _, err := st.Complete(c, "job-cc", 0); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := st.ClaimReduce(c, "job-cc", time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ClaimReduce: %v", err)
	}
	if got, want := wins.Load(), int64(1); got != want {
		t.Errorf("%d of 32 concurrent claims won, want %d", got, want)
	}
}

func testDuplicateStorm(t *testing.T, st *backends.Store) {
	const total = 2000
	const workers = 32
	c := ctx(t)
	mustCreate(t, st, "job-storm", total, "")
	// Every part twice, in an order that puts duplicates close together.
	work := make(chan int64, 2*total)
	for p := int64(0); p < total; p++ {
		work <- p
		work <- p
	}
	close(work)
	var finishers, dups, completions atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				c, err := st.Complete(c, "job-storm", p)
				if err != nil {
					errs <- fmt.Errorf("Complete(%d): %w", p, err)
					return
				}
				completions.Add(1)
				if c.Finisher {
					finishers.Add(1)
				}
				if c.Duplicate {
					dups.Add(1)
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
		t.Errorf("finishers = %d, want exactly %d", got, want)
	}
	if got, want := dups.Load(), int64(total); got != want {
		t.Errorf("duplicates = %d, want %d", got, want)
	}
	if got := pending(t, st, "job-storm"); len(got) != 0 {
		t.Errorf("Pending after storm = %d parts, want none", len(got))
	}
	s := mustStatus(t, st, "job-storm")
	if s.Remaining != 0 || s.State() != backends.StateComplete {
		t.Errorf("status after storm = %+v, want complete", s)
	}
}

func testMetadataRoundTrip(t *testing.T, st *backends.Store) {
	meta := `{"s":"héllo \"quoted\" 'single' ; DROP TABLE jobs; --","n":42,"f":1.5,"b":true,"z":null,"a":[1,"x",{"k":[]}],"o":{"deep":{"er":"x"}}}`
	mustCreate(t, st, "job-m", 1, meta)
	if got := mustStatus(t, st, "job-m").Metadata; !jsonEqual(t, got, json.RawMessage(meta)) {
		t.Errorf("Metadata = %s, want %s", got, meta)
	}
	mustCreate(t, st, "job-nometa", 1, "")
	if got := mustStatus(t, st, "job-nometa").Metadata; len(got) != 0 && !jsonEqual(t, got, json.RawMessage(`{}`)) {
		t.Errorf("Metadata of a job created without any = %s, want empty or {}", got)
	}
}

func testListMany(t *testing.T, st *backends.Store) {
	const n = 1200
	c := ctx(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := st.CreateJob(c, backends.Job{ID: fmt.Sprintf("list-%04d", i), Total: int64(1 + i%3)}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("CreateJob: %v", err)
	}
	if err := st.Fail(c, "list-0007", "boom"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err := st.List(c, backends.ListOptions{}, func(s backends.Status) error {
		seen[s.ID]++
		var i int
		if _, err := fmt.Sscanf(s.ID, "list-%04d", &i); err != nil {
			return fmt.Errorf("List returned unexpected job %q", s.ID)
		}
		if want := int64(1 + i%3); s.Total != want || s.Remaining < 1 || s.Remaining > want || (!s.Estimated && s.Remaining != want) {
			return fmt.Errorf("List: job %s Total %d Remaining %d (estimated %v), want %d and %d (an estimate: 1 to %d)", s.ID, s.Total, s.Remaining, s.Estimated, want, want, want)
		}
		if got, want := s.Failed, s.ID == "list-0007"; got != want {
			return fmt.Errorf("List: job %s Failed = %v, want %v", s.ID, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := len(seen), n; got != want {
		t.Errorf("List saw %d jobs, want %d", got, want)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("List returned %s %d times", id, k)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := st.List(c, backends.ListOptions{}, func(backends.Status) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with fn returning an error: err = %v after %d calls, want that error after 1", err, calls)
	}
}

func testDelete(t *testing.T, st *backends.Store) {
	c := ctx(t)
	mustCreate(t, st, "job-d", 3, "")
	mustCreate(t, st, "job-keep", 2, "")
	if _, err := st.Complete(c, "job-d", 1); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(c, "job-d"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.Status(c, "job-d"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status after Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Complete(c, "job-d", 0); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Complete after Delete: err = %v, want ErrNotFound", err)
	}
	if err := st.Delete(c, "job-d"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}
	if got, want := mustStatus(t, st, "job-keep").Remaining, int64(2); got != want {
		t.Errorf("other job's Remaining = %d after Delete, want %d", got, want)
	}
	// The id can be reused, and the new job starts fresh.
	mustCreate(t, st, "job-d", 2, "")
	if got, want := pending(t, st, "job-d"), []int64{0, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("recreated job Pending = %v, want %v", got, want)
	}
}

func testPendingStops(t *testing.T, st *backends.Store) {
	mustCreate(t, st, "job-p", 1000, "")
	stop := errors.New("stop")
	var got []int64
	err := st.Pending(ctx(t), "job-p", func(p int64) error {
		got = append(got, p)
		if len(got) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Pending err = %v, want the callback's error", err)
	}
	if want := []int64{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pending called fn with %v before stopping, want %v", got, want)
	}
}

// testMillionParts creates a 1,000,000-part job and streams its pending list,
// checking that the live heap does not grow with the job (a store that read
// every id into memory would hold at least 8 MB).
func testMillionParts(t *testing.T, st *backends.Store) {
	const total = 1_000_000
	c := ctx(t)
	start := time.Now()
	mustCreate(t, st, "job-big", total, `{"big":true}`)
	t.Logf("created %d parts in %v", total, time.Since(start).Round(time.Millisecond))
	done := []int64{0, 4095, 4096, 500_000, total - 1}
	for _, p := range done {
		if _, err := st.Complete(c, "job-big", p); err != nil {
			t.Fatalf("Complete(%d): %v", p, err)
		}
	}
	s := mustStatus(t, st, "job-big")
	checkPeek(t, st, s)
	if got, want := s.Remaining, int64(total-len(done)); got != want {
		t.Fatalf("Remaining = %d, want %d", got, want)
	}

	old := debug.SetGCPercent(10)
	defer debug.SetGCPercent(old)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	var n, prev int64 = 0, -1
	isDone := map[int64]bool{}
	for _, p := range done {
		isDone[p] = true
	}
	start = time.Now()
	err := st.Pending(c, "job-big", func(p int64) error {
		if p <= prev {
			return fmt.Errorf("Pending gave %d after %d: not ascending", p, prev)
		}
		if isDone[p] {
			return fmt.Errorf("Pending gave completed part %d", p)
		}
		prev = p
		n++
		if n%100_000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
				peak = ms.HeapAlloc - base
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	t.Logf("streamed %d pending ids in %v, live heap growth at most %d KiB", n, time.Since(start).Round(time.Millisecond), peak/1024)
	if got, want := n, int64(total-len(done)); got != want {
		t.Errorf("Pending gave %d ids, want %d", got, want)
	}
	if prev != total-2 {
		t.Errorf("last pending id = %d, want %d", prev, total-2)
	}
	const limit = 4 << 20
	if peak > limit {
		t.Errorf("live heap grew by %d KiB while streaming, want under %d KiB: Pending must not hold every id", peak/1024, limit/1024)
	}
}
