package backendtest

import (
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of Retry: given-up parts put back to pending.

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
