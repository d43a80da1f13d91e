package backendtest

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// The tests of CompleteParts: a batch of parts recorded at once, with one
// finisher per job whatever mix of batches, single completions and
// give-ups ends it.

func mustCompleteParts(t *testing.T, st *backends.Store, id string, parts ...int64) backends.Completion {
	t.Helper()
	c, err := st.CompleteParts(ctx(t), id, parts)
	if err != nil {
		t.Fatalf("CompleteParts(%s, %v): %v", id, parts, err)
	}
	return c
}

// testCompleteParts: a batch completes each of its parts; a batch of parts
// some of which are complete completes the rest; a batch of complete parts
// is a Duplicate; the batch that ends the last pending part is the
// finisher.
func testCompleteParts(t *testing.T, st *backends.Store) {
	const id = "job-cp"
	mustCreate(t, st, id, 6, "")
	c := mustCompleteParts(t, st, id, 2, 0, 1) // any order
	if c.Completed != 3 || c.Duplicate || c.Done || c.Finisher {
		t.Errorf("CompleteParts(0,1,2) = %+v, want Completed 3 and nothing else", c)
	}
	checkCounts(t, st, id, 3, 0)
	if got, want := fmt.Sprint(pendingIDs(t, st, id)), "[3 4 5]"; got != want {
		t.Errorf("pending = %s, want %s", got, want)
	}
	mustComplete(t, st, id, 3)
	c = mustCompleteParts(t, st, id, 2, 3, 4) // a receive after a partial one
	if c.Completed != 1 || c.Duplicate || c.Done || c.Finisher {
		t.Errorf("CompleteParts(2,3,4) with 2 and 3 complete = %+v, want Completed 1", c)
	}
	c = mustCompleteParts(t, st, id, 3, 4)
	if c.Completed != 0 || !c.Duplicate || c.Done || c.Finisher {
		t.Errorf("CompleteParts of complete parts = %+v, want Duplicate", c)
	}
	c = mustCompleteParts(t, st, id, 4, 5)
	if c.Completed != 1 || c.Duplicate || !c.Done || !c.Finisher || c.ReduceSent {
		t.Errorf("the batch ending the last part = %+v, want Completed 1, Done, Finisher", c)
	}
	c = mustCompleteParts(t, st, id, 4, 5)
	if !c.Duplicate || !c.Done || c.Finisher {
		t.Errorf("the same batch again = %+v, want Duplicate, Done, not Finisher", c)
	}
	s := checkCounts(t, st, id, 0, 0)
	if s.State() != backends.StateComplete {
		t.Errorf("state %s, want complete", s.State())
	}
	// A single completion reports how many parts it completed too.
	mustCreate(t, st, "job-cp1", 2, "")
	if c := mustComplete(t, st, "job-cp1", 1); c.Completed != 1 {
		t.Errorf("Complete = %+v, want Completed 1", c)
	}
	if c := mustComplete(t, st, "job-cp1", 1); c.Completed != 0 || !c.Duplicate {
		t.Errorf("Complete again = %+v, want Completed 0, Duplicate", c)
	}
}

// shardOr is the store's shard size, or n for a store without shards, so
// that the tests of batches across shards mean something on every store.
func shardOr(st *backends.Store, n int64) int64 {
	if s := st.ShardSize(); s > 0 {
		return s
	}
	return n
}

// testCompletePartsShards: batches at shard boundaries and across them in a
// job of three shards (the last one partial): each part is recorded once,
// and the batch ending the job is its one finisher.
func testCompletePartsShards(t *testing.T, st *backends.Store) {
	const id = "job-cps"
	size := shardOr(st, 16)
	total := 2*size + 3
	mustCreate(t, st, id, total, "")
	batches := [][]int64{
		seq(0, size),               // the first shard, whole
		seq(size, size+5),          // the start of the second
		seq(size+5, 2*size),        // its rest
		seq(2*size, total-1),       // the partial last shard but its last part
		{size - 1, size, 2 * size}, // across three shards, all complete: a duplicate
	}
	for i, b := range batches {
		c := mustCompleteParts(t, st, id, b...)
		if i < 4 && (c.Completed != len(b) || c.Finisher || c.Done) {
			t.Errorf("batch %d (%d parts) = %+v, want %d completed, not done", i, len(b), c, len(b))
		}
		if i == 4 && (!c.Duplicate || c.Completed != 0) {
			t.Errorf("a batch of complete parts across shards = %+v, want Duplicate", c)
		}
	}
	checkCounts(t, st, id, 1, 0)
	c := mustCompleteParts(t, st, id, size-1, total-1) // across shards, one of them new
	if c.Completed != 1 || !c.Finisher || !c.Done {
		t.Errorf("the last batch = %+v, want Completed 1, Finisher, Done", c)
	}
	checkCounts(t, st, id, 0, 0)
}

func seq(from, to int64) []int64 {
	var s []int64
	for p := from; p < to; p++ {
		s = append(s, p)
	}
	return s
}

// testCompletePartsStorm: a job of batches (aligned to the store's shards)
// where every batch is delivered twice, and a few of its parts completed one
// at a time besides, from 32 goroutines: every part is recorded, and
// exactly one call is the finisher.
func testCompletePartsStorm(t *testing.T, st *backends.Store) {
	const id = "job-cpstorm"
	const k = 16
	size := shardOr(st, 64)
	total := 4*size + 7
	mustCreate(t, st, id, total, "")
	type call struct {
		parts  []int64
		single bool
	}
	var calls []call
	for shard := int64(0); shard < total; shard += size {
		end := min(shard+size, total)
		for from := shard; from < end; from += k { // batches never span shards
			b := seq(from, min(from+k, end))
			calls = append(calls, call{parts: b}, call{parts: b}, call{parts: []int64{b[len(b)/2]}, single: true})
		}
	}
	rand.New(rand.NewSource(1)).Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	work := make(chan call, len(calls))
	for _, c := range calls {
		work <- c
	}
	close(work)
	var finishers, completed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				var r backends.Completion
				var err error
				if c.single {
					r, err = st.Complete(ctx(t), id, c.parts[0])
				} else {
					r, err = st.CompleteParts(ctx(t), id, c.parts)
				}
				if err != nil {
					errs <- err
					return
				}
				completed.Add(int64(r.Completed))
				if r.Finisher {
					finishers.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := finishers.Load(); got != 1 {
		t.Errorf("finishers = %d, want exactly 1", got)
	}
	if got := completed.Load(); got != total {
		t.Errorf("the calls say they completed %d parts, want %d (each once)", got, total)
	}
	checkCounts(t, st, id, 0, 0)
}

// testCompletePartsGivenUp: a batch converts the given-up parts among its
// parts; a batch ending the last pending part of a job whose other parts
// were given up is the finisher.
func testCompletePartsGivenUp(t *testing.T, st *backends.Store) {
	const id = "job-cpgu"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 4, Tolerance: backends.Tolerance{Parts: 4}})
	mustGiveUp(t, st, id, 1)
	mustGiveUp(t, st, id, 3)
	c := mustCompleteParts(t, st, id, 0, 1)
	if c.Completed != 2 || c.Finisher || c.Done {
		t.Errorf("CompleteParts(0, given-up 1) = %+v, want Completed 2", c)
	}
	checkCounts(t, st, id, 1, 1) // 2 pending; 3 given up
	c = mustCompleteParts(t, st, id, 2)
	if !c.Finisher || !c.Done || c.Completed != 1 {
		t.Errorf("the batch ending the last pending part = %+v, want Finisher, Done", c)
	}
	c = mustCompleteParts(t, st, id, 2, 3)
	if c.Finisher || !c.Done || c.Completed != 1 || c.Duplicate {
		t.Errorf("a batch converting the last given-up part = %+v, want Completed 1, Done, not Finisher", c)
	}
	checkCounts(t, st, id, 0, 0)
}

// testCompletePartsRefused: a batch with a part outside the job, of a
// failed job, or of no job, records nothing.
func testCompletePartsRefused(t *testing.T, st *backends.Store) {
	const id = "job-cpr"
	mustCreate(t, st, id, 5, "")
	if _, err := st.CompleteParts(ctx(t), id, []int64{3, 4, 5}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("CompleteParts(3,4,5) of 5 parts: err = %v, want ErrPartRange", err)
	}
	if _, err := st.CompleteParts(ctx(t), id, []int64{-1, 0}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("CompleteParts(-1,0): err = %v, want ErrPartRange", err)
	}
	if _, err := st.CompleteParts(ctx(t), id, []int64{1, 1}); err == nil {
		t.Error("CompleteParts(1,1): no error for a part given twice")
	}
	if _, err := st.CompleteParts(ctx(t), id, nil); err == nil {
		t.Error("CompleteParts(): no error for an empty batch")
	}
	checkCounts(t, st, id, 5, 0)
	if err := st.Fail(ctx(t), id, "stop"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CompleteParts(ctx(t), id, []int64{0, 1}); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("CompleteParts of a failed job: err = %v, want ErrJobFailed", err)
	}
	checkCounts(t, st, id, 5, 0)
	if _, err := st.CompleteParts(ctx(t), "job-nosuch", []int64{0}); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("CompleteParts of no job: err = %v, want ErrNotFound", err)
	}
	if err := st.List(ctx(t), backends.ListOptions{}, func(s backends.Status) error {
		if s.ID != id {
			return fmt.Errorf("CompleteParts of an unknown job created %s", s.ID)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// testPartStates: PartStates tells pending, complete and given-up parts
// apart, across shards, in the order asked; a part outside the job is an
// error.
func testPartStates(t *testing.T, st *backends.Store) {
	const id = "job-ps"
	size := shardOr(st, 16)
	total := size + 4
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Parts: 5}})
	mustComplete(t, st, id, 1)
	mustCompleteParts(t, st, id, size, size+1)
	mustGiveUp(t, st, id, 2)
	mustGiveUp(t, st, id, size+3)
	ask := []int64{size + 3, 0, 1, 2, size, size + 2, size - 1}
	got, err := st.PartStates(ctx(t), id, ask)
	if err != nil {
		t.Fatal(err)
	}
	want := []backends.PartState{backends.PartGivenUp, backends.PartPending, backends.PartComplete, backends.PartGivenUp, backends.PartComplete, backends.PartPending, backends.PartPending}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PartStates(%v) = %v, want %v", ask, got, want)
	}
	if _, err := st.PartStates(ctx(t), id, []int64{0, total}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("PartStates of a part outside the job: err = %v, want ErrPartRange", err)
	}
	if _, err := st.PartStates(ctx(t), "job-nosuch", []int64{0}); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("PartStates of no job: err = %v, want ErrNotFound", err)
	}
}
