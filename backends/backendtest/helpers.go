package backendtest

import (
	"sort"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// Helpers the tests share.

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
