package dynamodb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

func listed(t *testing.T, st *Store, opt backends.ListOptions) []backends.Status {
	t.Helper()
	var out []backends.Status
	if err := st.List(testCtx(t), opt, func(s backends.Status) error { out = append(out, s); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func idsOf(ss []backends.Status) string {
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	return strings.Join(ids, " ")
}

// TestList_Index: on a table with the wp-jobs index List queries it (no
// Scan), newest first, jobs of the same millisecond by id, the libraries'
// jobs last once a wp command has read them; Since leaves those out; an
// old wp's job without the index keys gets them from the first Peek.
func TestList_Index(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	for _, id := range []string{"a", "b", "c"} {
		time.Sleep(3 * time.Millisecond)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 600}); err != nil {
			t.Fatal(err)
		}
	}
	// Two jobs of the same millisecond, created by hand as CreateJob
	// writes them.
	created := st.nowMS() + 1000
	for _, id := range []string{"tie-b", "tie-a"} {
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 1}); err != nil {
			t.Fatal(err)
		}
		setRaw(t, st, id, "SET #created = :c, #wpListed = :c", item{":c": num(created)})
	}
	putLegacy(t, st, "py", seq(0, 4), 5, nil)
	putLegacy(t, st, "node", seq(1, 5), 5, nil)
	// An older wp's job: no index keys.
	if err := st.CreateJob(ctx, backends.Job{ID: "old", Total: 2}); err != nil {
		t.Fatal(err)
	}
	setRaw(t, st, "old", "REMOVE #wpList, #wpListed", nil)
	if _, err := st.Complete(ctx, "b", 3); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if got, want := idsOf(listed(t, st, backends.ListOptions{})), "tie-a tie-b c b a"; got != want {
		t.Errorf("List = %s, want %s (jobs nothing of wp has read are not in the index)", got, want)
	}
	if n, _, _ := opUnits(p, "Scan"); n != 0 {
		t.Errorf("List made %d Scan calls, want none", n)
	}
	for _, id := range []string{"py", "node", "old"} {
		if _, err := st.Peek(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	all := listed(t, st, backends.ListOptions{})
	if got, want := idsOf(all), "tie-a tie-b old c b a node py"; got != want {
		t.Errorf("List after Peek of the others = %s, want %s", got, want)
	}
	for _, s := range all {
		switch s.ID {
		case "b":
			// Its groups' pending shards, each counted whole: an
			// estimate, read without a shard.
			if s.Remaining != 600 || !s.Estimated {
				t.Errorf("b: Remaining %d Estimated %v, want the estimate 600", s.Remaining, s.Estimated)
			}
		case "py", "node":
			if s.Remaining != 5 || s.Estimated || !s.CreatedAt.IsZero() {
				t.Errorf("%s: %+v, want 5 remaining, exact, no creation time", s.ID, s)
			}
		}
	}
	since := listed(t, st, backends.ListOptions{Since: time.UnixMilli(1)})
	if got, want := idsOf(since), "tie-a tie-b old c b a"; got != want {
		t.Errorf("List since 1970 = %s, want %s (no job of unknown creation time)", got, want)
	}
	stopped := 0
	p.Reset()
	st.List(ctx, backends.ListOptions{Limit: 2}, func(backends.Status) error {
		stopped++
		if stopped == 2 {
			return fmt.Errorf("enough")
		}
		return nil
	})
	if q := p.CallsOf("Query"); len(q) != 1 {
		t.Errorf("List stopped after 2 with Limit 2 made %d Query calls, want 1", len(q))
	}
}

// TestList_NoIndex: on a table without the index (watchbot's) List scans,
// and says once why; ListOptions.Scan scans a table that has the index.
func TestList_NoIndex(t *testing.T) {
	st, _ := newWatchbotTable(t)
	ctx := testCtx(t)
	for _, id := range []string{"a", "b"} {
		time.Sleep(3 * time.Millisecond)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 3}); err != nil {
			t.Fatal(err)
		}
	}
	putLegacy(t, st, "py", seq(0, 4), 5, nil)
	var notes []string
	got := listed(t, st, backends.ListOptions{Note: func(s string) { notes = append(notes, s) }})
	if idsOf(got) != "b a py" {
		t.Errorf("List = %s, want b a py", idsOf(got))
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "wp table upgrade "+st.table) || !strings.Contains(notes[0], "no wp-jobs index") {
		t.Errorf("notes = %q, want one saying the table has no index and what adds it", notes)
	}
	t.Logf("note: %s", notes[0])

	st2, p := proxiedTable(t, testservers.ProxyOptions{})
	if err := st2.CreateJob(ctx, backends.Job{ID: "x", Total: 3}); err != nil {
		t.Fatal(err)
	}
	putLegacy(t, st2, "unread", seq(0, 4), 5, nil)
	p.Reset()
	notes = nil
	if got := idsOf(listed(t, st2, backends.ListOptions{Scan: true, Note: func(s string) { notes = append(notes, s) }})); got != "x unread" {
		t.Errorf("List with Scan = %s, want x unread", got)
	}
	if n, _, _ := opUnits(p, "Scan"); n == 0 || len(notes) != 0 {
		t.Errorf("List with Scan: %d Scan calls, notes %q; want a scan and no note (the caller asked for it)", n, notes)
	}
}
