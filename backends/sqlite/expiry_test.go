package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// rowsOf counts the rows the database holds for each job whose id starts
// with prefix: jobs, shards and given_up rows together.
func rowsOf(t *testing.T, path, prefix string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM jobs WHERE id LIKE ?1)
		+ (SELECT count(*) FROM shards WHERE job_id LIKE ?1)
		+ (SELECT count(*) FROM given_up WHERE job_id LIKE ?1)`, prefix+"%").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// makeExpired creates n jobs prefix0..prefix(n-1), each with a shard row
// and a given-up row, and backdates their expiry to long ago in the file
// (as if the machine had been off since), so that their rows are still
// there for a sweep to find.
func makeExpired(t *testing.T, st *backends.Store, path, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 3, Tolerance: backends.Tolerance{Parts: 3}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GiveUp(ctx, id, 1, backends.GiveUpInfo{ExitCode: 1}); err != nil {
			t.Fatal(err)
		}
	}
	rawExec(t, path, `UPDATE jobs SET expires_at = 1000 WHERE id LIKE '`+prefix+`%'`)
	if got := rowsOf(t, path, prefix); got != 3*n {
		t.Fatalf("%d rows for %d expired jobs, want %d", got, n, 3*n)
	}
}

// TestExpiry_SweepOnOpen: Open deletes the rows of expired jobs, sweepJobs
// a transaction and openSweeps transactions at most; the rest stay for
// later, invisible.
func TestExpiry_SweepOnOpen(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "live", Total: 2}); err != nil {
		t.Fatal(err)
	}
	most := sweepJobs * openSweeps
	makeExpired(t, st, path, "old-", most+5)
	if _, err := st.Status(ctx, "old-0"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status of an expired job before any sweep: err = %v, want ErrNotFound", err)
	}
	open := func() {
		t.Helper()
		st2, err := backends.Open(ctx, dbURL(path), 0)
		if err != nil {
			t.Fatal(err)
		}
		st2.Close()
	}
	open()
	if got, want := rowsOf(t, path, "old-"), 3*5; got != want {
		t.Errorf("after one Open: %d rows of expired jobs left, want %d (Open deletes %d jobs at most)", got, want, most)
	}
	open()
	if got := rowsOf(t, path, "old-"); got != 0 {
		t.Errorf("after a second Open: %d rows of expired jobs left, want 0", got)
	}
	if s, err := st.Status(ctx, "live"); err != nil || s.Remaining != 2 {
		t.Errorf("the live job after the sweeps: %+v, %v", s, err)
	}
}

// TestExpiry_SweepOnEnd: the transaction that ends a job (the finisher,
// a give-up past the tolerance, Fail) deletes up to sweepJobs expired jobs;
// one that ends only a part deletes none.
func TestExpiry_SweepOnEnd(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "a", Total: 2}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "b", Total: 2}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "c", Total: 2}); err != nil {
		t.Fatal(err)
	}
	makeExpired(t, st, path, "old-", 3*sweepJobs+2)
	left := func() int { return rowsOf(t, path, "old-") / 3 }
	steps := []struct {
		what string
		do   func() error
		left int
	}{
		{"a completion that leaves a part pending", func() error { _, err := st.Complete(ctx, "a", 0); return err }, 3*sweepJobs + 2},
		{"the finisher", func() error { _, err := st.CompleteParts(ctx, "a", []int64{0, 1}); return err }, 2*sweepJobs + 2},
		{"a duplicate of the finisher", func() error { _, err := st.Complete(ctx, "a", 1); return err }, 2*sweepJobs + 2},
		{"a give-up past the tolerance", func() error { _, err := st.GiveUp(ctx, "b", 0, backends.GiveUpInfo{}); return err }, sweepJobs + 2},
		{"Fail", func() error { return st.Fail(ctx, "c", "stop") }, 2},
		{"Fail again", func() error { return st.Fail(ctx, "c", "stop") }, 2},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if got := left(); got != s.left {
			t.Errorf("after %s: %d expired jobs left, want %d", s.what, got, s.left)
		}
	}
}

// TestExpiry_Delete: deleting an expired job says it was not found, and
// deletes its rows.
func TestExpiry_Delete(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t)
	makeExpired(t, st, path, "old-", 1)
	if err := st.Delete(ctx, "old-0"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Delete of an expired job: err = %v, want ErrNotFound", err)
	}
	if got := rowsOf(t, path, "old-"); got != 0 {
		t.Errorf("after Delete of an expired job: %d rows left, want 0", got)
	}
}

// TestExpiry_CreateOver: CreateJob of an expired job's id replaces it, its
// shards and given-up rows gone.
func TestExpiry_CreateOver(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t)
	makeExpired(t, st, path, "old-", 1)
	if err := st.CreateJob(ctx, backends.Job{ID: "old-0", Total: 5}); err != nil {
		t.Fatalf("CreateJob over an expired job: %v", err)
	}
	if got := rowsOf(t, path, "old-"); got != 1 {
		t.Errorf("after CreateJob over an expired job: %d rows, want the 1 jobs row", got)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "old-0", Total: 5}); !errors.Is(err, backends.ErrExists) {
		t.Errorf("CreateJob over the live job: err = %v, want ErrExists", err)
	}
}

// TestList_Pages: List across many pages, with Limit, Since, equal creation
// times (ids break the tie) and expired jobs left out, matches the order
// backends.SortNewestFirst gives.
func TestList_Pages(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t)
	const n = 2*maxListPage + 37
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		// Creation times in steps of 1 ms, three jobs a time; every
		// seventh job expired.
		var expires int64
		if i%7 == 0 {
			expires = 1000
		}
		if _, err := tx.Exec(`INSERT INTO jobs (id, total, remaining, created_at, expires_at) VALUES (?, 1, 1, ?, ?)`,
			fmt.Sprintf("j%05d", (i*7919)%n), int64(1764000000000000000)+int64(i/3)*1e6, expires); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var all []backends.Status
	if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error { all = append(all, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := len(all), n-(n+6)/7; got != want {
		t.Errorf("List gave %d jobs, want %d (those not expired)", got, want)
	}
	sorted := append([]backends.Status(nil), all...)
	backends.SortNewestFirst(sorted)
	ids := func(ss []backends.Status) string {
		var b strings.Builder
		for _, s := range ss {
			b.WriteString(s.ID + " ")
		}
		return b.String()
	}
	if ids(all) != ids(sorted) {
		t.Errorf("List is not newest first, then by id")
	}
	seen := map[string]bool{}
	for _, s := range all {
		if seen[s.ID] {
			t.Errorf("List gave %s twice", s.ID)
		}
		seen[s.ID] = true
	}
	since := all[len(all)/2].CreatedAt
	var got []backends.Status
	if err := st.List(ctx, backends.ListOptions{Since: since, Limit: 150}, func(s backends.Status) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	var want []backends.Status
	for _, s := range all {
		if !s.CreatedAt.Before(since) {
			want = append(want, s)
		}
	}
	if ids(got) != ids(want) {
		t.Errorf("List since %v: %d jobs, want the %d created at or after it", since, len(got), len(want))
	}
}
