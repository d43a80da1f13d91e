package backendtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of when a job last made progress, how fast it goes, the reason
// a part was given up, the newest-first listing, and expiry.

// clockSlack is how far a store's clock (the Redis server's) may be from
// the test's.
const clockSlack = 2 * time.Second

func within(t *testing.T, what string, got, from, to time.Time) {
	t.Helper()
	if got.Before(from.Add(-clockSlack)) || got.After(to.Add(clockSlack)) {
		t.Errorf("%s = %v, want between %v and %v", what, got, from, to)
	}
}

// testLastEnded: LastEnded is when a part last ended, by Complete,
// CompleteParts or GiveUp; a call that ends no part leaves it.
func testLastEnded(t *testing.T, st *backends.Store) {
	const id = "job-le"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 5, Tolerance: backends.Tolerance{Parts: 5}})
	if s := mustStatus(t, st, id); !s.LastEnded.IsZero() {
		t.Errorf("LastEnded of a new job = %v, want zero", s.LastEnded)
	}
	step := func(what string, end func()) time.Time {
		t.Helper()
		time.Sleep(20 * time.Millisecond)
		before := time.Now()
		end()
		after := time.Now()
		s := mustStatus(t, st, id)
		within(t, "LastEnded after "+what, s.LastEnded, before, after)
		return s.LastEnded
	}
	step("Complete", func() { mustComplete(t, st, id, 0) })
	step("CompleteParts", func() { mustCompleteParts(t, st, id, 1, 2) })
	last := step("GiveUp", func() { mustGiveUp(t, st, id, 3) })
	time.Sleep(20 * time.Millisecond)
	mustComplete(t, st, id, 0)         // a duplicate ends nothing
	mustGiveUp(t, st, id, 3)           // nor does a duplicate give-up
	mustCompleteParts(t, st, id, 1, 2) // nor a batch of complete parts
	mustComplete(t, st, id, 3)         // nor completing a given-up part
	if s := mustStatus(t, st, id); !s.LastEnded.Equal(last) {
		t.Errorf("LastEnded after calls that ended no part = %v, want %v still", s.LastEnded, last)
	}
	var listed time.Time
	if err := st.List(ctx(t), backends.ListOptions{}, func(s backends.Status) error {
		listed = s.LastEnded
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if listed.After(last) {
		t.Errorf("List's LastEnded %v is later than Status's %v", listed, last)
	}
}

// testRecent: RecentEnded counts the parts that ended lately, over a
// window of at most RecentMinutes minutes.
func testRecent(t *testing.T, st *backends.Store) {
	const id = "job-rec"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 40, Tolerance: backends.Tolerance{Parts: 5}})
	if s := mustStatus(t, st, id); s.RecentEnded != 0 {
		t.Errorf("RecentEnded of a new job = %d, want 0", s.RecentEnded)
	}
	for p := int64(0); p < 10; p++ {
		mustComplete(t, st, id, p)
	}
	mustCompleteParts(t, st, id, seq(10, 30)...)
	mustGiveUp(t, st, id, 30)
	mustComplete(t, st, id, 5)  // a duplicate
	mustComplete(t, st, id, 30) // a given-up part completed: it had ended
	s := mustStatus(t, st, id)
	if s.RecentEnded != 31 {
		t.Errorf("RecentEnded = %d, want 31 (10 completions, a batch of 20, a give-up; a duplicate and a conversion end nothing)", s.RecentEnded)
	}
	if s.RecentWindow <= 0 || s.RecentWindow > backends.RecentMinutes*time.Minute+clockSlack {
		t.Errorf("RecentWindow = %v, want more than 0 and at most %d minutes", s.RecentWindow, backends.RecentMinutes)
	}
}

// testGiveUpReason: a give-up's Reason is kept and listed; a reason longer
// than MaxReason is refused.
func testGiveUpReason(t *testing.T, st *backends.Store) {
	const id = "job-gur"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 3, Tolerance: backends.Tolerance{Parts: 3}})
	reason := "dead-lettered: the message was sent at 2026-12-07T09:00:00Z and received 11 times; no worker recorded the part"
	if _, err := st.GiveUp(ctx(t), id, 1, backends.GiveUpInfo{ReceiveCount: 11, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	mustGiveUp(t, st, id, 2)
	g := givenUp(t, st, id)
	if len(g) != 2 || g[0].Reason != reason || g[0].ReceiveCount != 11 || g[1].Reason != "" {
		t.Errorf("given up = %+v, want part 1 with its reason and receive count, part 2 with none", g)
	}
	long := strings.Repeat("r", backends.MaxReason+1)
	if _, err := st.GiveUp(ctx(t), id, 0, backends.GiveUpInfo{Reason: long}); !errors.Is(err, backends.ErrLongReason) {
		t.Errorf("GiveUp with a %d-byte reason: err = %v, want ErrLongReason", len(long), err)
	}
	checkCounts(t, st, id, 1, 2)
}

// createSpaced creates jobs ids one after another, a few milliseconds
// apart so that their creation times differ, and returns those times.
func createSpaced(t *testing.T, st *backends.Store, ids ...string) []time.Time {
	t.Helper()
	var at []time.Time
	for _, id := range ids {
		time.Sleep(15 * time.Millisecond)
		mustCreate(t, st, id, 2, "")
		at = append(at, mustStatus(t, st, id).CreatedAt)
	}
	return at
}

func listIDs(t *testing.T, st *backends.Store, opt backends.ListOptions, most int) []string {
	t.Helper()
	stop := errors.New("enough")
	var ids []string
	err := st.List(ctx(t), opt, func(s backends.Status) error {
		ids = append(ids, s.ID)
		if most > 0 && len(ids) == most {
			return stop
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		t.Fatalf("List(%+v): %v", opt, err)
	}
	return ids
}

// testListNewestFirst: List yields the newest job first; a caller that
// stops after two gets the two newest.
func testListNewestFirst(t *testing.T, st *backends.Store) {
	createSpaced(t, st, "job-n1", "job-n2", "job-n3", "job-n4", "job-n5")
	if got, want := fmt.Sprint(listIDs(t, st, backends.ListOptions{}, 0)), "[job-n5 job-n4 job-n3 job-n2 job-n1]"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(listIDs(t, st, backends.ListOptions{Limit: 2}, 2)), "[job-n5 job-n4]"; got != want {
		t.Errorf("List, stopped after 2 = %s, want %s", got, want)
	}
}

// testListSince: Since leaves out the jobs created before it.
func testListSince(t *testing.T, st *backends.Store) {
	at := createSpaced(t, st, "job-s1", "job-s2", "job-s3", "job-s4")
	if got, want := fmt.Sprint(listIDs(t, st, backends.ListOptions{Since: at[2]}, 0)), "[job-s4 job-s3]"; got != want {
		t.Errorf("List since job-s3's creation = %s, want %s", got, want)
	}
	if got := listIDs(t, st, backends.ListOptions{Since: time.Now().Add(time.Hour)}, 0); len(got) != 0 {
		t.Errorf("List since an hour from now = %v, want none", got)
	}
}

// testExpiryCreated: a job created with ExpireAfter expires then; one
// without never does. Every read says when.
func testExpiryCreated(t *testing.T, st *backends.Store) {
	before := time.Now()
	mustCreateJob(t, st, backends.Job{ID: "job-exp", Total: 3, ExpireAfter: 48 * time.Hour})
	after := time.Now()
	mustCreate(t, st, "job-never", 3, "")
	s := mustStatus(t, st, "job-exp")
	within(t, "ExpiresAt", s.ExpiresAt, before.Add(48*time.Hour-time.Second), after.Add(48*time.Hour))
	if s.ExpiresAt.Nanosecond() != 0 {
		t.Errorf("ExpiresAt = %v, want whole seconds", s.ExpiresAt)
	}
	checkPeek(t, st, s)
	if p, _ := st.Peek(ctx(t), "job-exp"); !p.ExpiresAt.Equal(s.ExpiresAt) {
		t.Errorf("Peek's ExpiresAt = %v, want Status's %v", p.ExpiresAt, s.ExpiresAt)
	}
	if s := mustStatus(t, st, "job-never"); !s.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt of a job created without expiry = %v, want zero", s.ExpiresAt)
	}
	if err := st.List(ctx(t), backends.ListOptions{}, func(l backends.Status) error {
		if want := map[string]time.Time{"job-exp": s.ExpiresAt}[l.ID]; !l.ExpiresAt.Equal(want) {
			return fmt.Errorf("List: %s ExpiresAt = %v, want %v", l.ID, l.ExpiresAt, want)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// A job's other settings of this kind come back too.
	mustCreateJob(t, st, backends.Job{ID: "job-batch", Total: 100, Batch: 16, BatchBytes: 65536})
	if s := mustStatus(t, st, "job-batch"); s.Batch != 16 || s.BatchBytes != 65536 {
		t.Errorf("Batch, BatchBytes = %d, %d; want 16, 65536", s.Batch, s.BatchBytes)
	}
}

// testExpirySet: SetExpiry changes when a job expires, to the second
// (rounded up), or makes it never expire.
func testExpirySet(t *testing.T, st *backends.Store) {
	const id = "job-exps"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 300, ExpireAfter: time.Hour})
	mustComplete(t, st, id, 7)
	mustGiveUp(t, st, id, 8)
	at := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	if err := st.SetExpiry(ctx(t), id, at.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Rounded up: never before the time asked for.
	if s := mustStatus(t, st, id); !s.ExpiresAt.Equal(at.Add(time.Second)) {
		t.Errorf("ExpiresAt after SetExpiry(%v) = %v, want %v", at.Add(300*time.Millisecond), s.ExpiresAt, at.Add(time.Second))
	}
	if err := st.SetExpiry(ctx(t), id, time.Time{}); err != nil {
		t.Fatal(err)
	}
	s := mustStatus(t, st, id)
	if !s.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt after SetExpiry(zero) = %v, want zero", s.ExpiresAt)
	}
	if s.Remaining != 298 || s.GivenUp != 1 {
		t.Errorf("SetExpiry changed the job: Remaining %d GivenUp %d, want 298, 1", s.Remaining, s.GivenUp)
	}
	if err := st.SetExpiry(ctx(t), "job-nosuch", at); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("SetExpiry of no job: err = %v, want ErrNotFound", err)
	}
}

// testExpiryPassed: a job whose expiry has passed is gone for every
// method and for List, and its id can be taken again.
func testExpiryPassed(t *testing.T, st *backends.Store) {
	const id = "job-expp"
	mustCreateJob(t, st, backends.Job{ID: id, Total: 600, Tolerance: backends.Tolerance{Parts: 9}})
	mustCreate(t, st, "job-stays", 2, "")
	mustComplete(t, st, id, 1)
	mustGiveUp(t, st, id, 2)
	if err := st.SetExpiry(ctx(t), id, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	gone := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("%s of an expired job: err = %v, want ErrNotFound", what, err)
		}
	}
	_, err := st.Status(ctx(t), id)
	gone("Status", err)
	_, err = st.Peek(ctx(t), id)
	gone("Peek", err)
	_, err = st.Complete(ctx(t), id, 3)
	gone("Complete", err)
	gone("Pending", st.Pending(ctx(t), id, func(int64) error { return nil }))
	if got := listIDs(t, st, backends.ListOptions{}, 0); fmt.Sprint(got) != "[job-stays]" {
		t.Errorf("List = %v, want only job-stays", got)
	}
	// The id is free again: a new job, nothing of the old one.
	mustCreate(t, st, id, 3, "")
	s := mustStatus(t, st, id)
	if s.Total != 3 || s.Remaining != 3 || s.GivenUp != 0 || !s.ExpiresAt.IsZero() {
		t.Errorf("the new job under the expired id = %+v, want 3 parts pending and nothing else", s)
	}
	if g := givenUp(t, st, id); len(g) != 0 {
		t.Errorf("the new job lists the old one's given-up parts: %+v", g)
	}
	// One created to expire in a moment is gone once the moment is past.
	mustCreateJob(t, st, backends.Job{ID: "job-expsoon", Total: 2, ExpireAfter: time.Second})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := st.Status(ctx(t), "job-expsoon")
		if errors.Is(err, backends.ErrNotFound) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("a job created with ExpireAfter 1s: Status after 5s: err = %v, want ErrNotFound", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
