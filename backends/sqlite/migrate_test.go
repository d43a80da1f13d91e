package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// schemaV1 is the schema wp wrote before given-up parts, frozen here as it was
// released, with one job half done: parts 1 and 4097 of 5000 complete.
const schemaV1 = `
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    total         INTEGER NOT NULL,
    remaining     INTEGER NOT NULL,
    metadata      TEXT,
    created_at    INTEGER NOT NULL,
    failed        INTEGER NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    reduce_sent   INTEGER NOT NULL DEFAULT 0,
    reduced       INTEGER NOT NULL DEFAULT 0,
    claim_token   TEXT NOT NULL DEFAULT '',
    claim_expires INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE shards (
    job_id TEXT NOT NULL,
    shard  INTEGER NOT NULL,
    bits   BLOB NOT NULL,
    PRIMARY KEY (job_id, shard)
) WITHOUT ROWID;
INSERT INTO jobs (id, total, remaining, metadata, created_at) VALUES ('old', 5000, 4998, '{"a":1}', 1764000000000000000);
INSERT INTO jobs (id, total, remaining, metadata, created_at, failed, error) VALUES ('old-failed', 2, 2, NULL, 1764000000000000000, 1, 'boom');
INSERT INTO shards (job_id, shard, bits) VALUES ('old', 0, zeroblob(512)), ('old', 1, zeroblob(512));
UPDATE shards SET bits = CAST(X'02' || zeroblob(511) AS BLOB) WHERE job_id = 'old';
PRAGMA user_version = 1;
`

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMigrate_V1: a version-1 database is migrated in place on Open; its
// jobs keep their state, read with no given-up parts and a zero tolerance,
// and take the new operations.
func TestMigrate_V1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	rawExec(t, path, schemaV1)
	st, err := backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatalf("Open of a version-1 database: %v", err)
	}
	defer st.Close()
	if got, want := userVersion(t, path), schemaVersion; got != want {
		t.Errorf("user_version after Open = %d, want %d", got, want)
	}
	s, err := st.Status(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 5000 || s.Remaining != 4998 || string(s.Metadata) != `{"a":1}` || s.GivenUp != 0 || s.Tolerance != (backends.Tolerance{}) || s.Digest != "" || s.ReduceOnFailure || s.FailedByTolerance {
		t.Errorf("migrated job = %+v, want its old state and no given-up fields", s)
	}
	for _, p := range []int64{1, 4097} {
		if c, err := st.Complete(ctx, "old", p); err != nil || !c.Duplicate {
			t.Errorf("Complete(%d), completed before the migration = %+v, %v; want Duplicate", p, c, err)
		}
	}
	c, err := st.GiveUp(ctx, "old", 2, backends.GiveUpInfo{ExitCode: 1})
	if err != nil || !c.Failed {
		t.Errorf("GiveUp on a migrated job (tolerance 0) = %+v, %v; want Failed", c, err)
	}
	if s, err := st.Status(ctx, "old"); err != nil || s.GivenUp != 1 || s.Remaining != 4997 || !s.FailedByTolerance {
		t.Errorf("after GiveUp: %+v, %v", s, err)
	}
	if s, err := st.Status(ctx, "old-failed"); err != nil || !s.Failed || s.Error != "boom" || s.FailedByTolerance {
		t.Errorf("migrated failed job = %+v, %v; want failed with its reason, not by tolerance", s, err)
	}
	if _, err := st.Retry(ctx, "old-failed", []int64{0}); err == nil {
		t.Errorf("Retry of a job failed before the migration succeeded, want ErrJobFailed")
	}
	// Through to version 3: no expiry, no batch settings, the listing.
	if s, err := st.Status(ctx, "old-failed"); err != nil || !s.ExpiresAt.IsZero() || s.Batch != 0 || s.BatchBytes != 0 || !s.LastEnded.IsZero() {
		t.Errorf("a version-1 job after the migration = %+v, %v; want no expiry, batch or last end", s, err)
	}
	if s, err := st.Status(ctx, "old"); err != nil || s.LastEnded.IsZero() || s.RecentEnded != 1 {
		t.Errorf("after the GiveUp, LastEnded = %v, RecentEnded = %d (%v); want set, 1", s.LastEnded, s.RecentEnded, err)
	}
	n := 0
	if err := st.List(ctx, backends.ListOptions{}, func(backends.Status) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("List of the migrated database: %d jobs, %v; want 2", n, err)
	}
	// Reopening a migrated database is a no-op.
	st2, err := backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	st2.Close()
}

// TestMigrate_OneTransaction: a migration that fails part way leaves the
// version-1 database exactly as it was, and wp says why.
func TestMigrate_OneTransaction(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	// A table in the way of the migration's last statement.
	rawExec(t, path, schemaV1+"CREATE TABLE given_up (x INTEGER);")
	if _, err := backends.Open(ctx, dbURL(path), 0); err == nil || !strings.Contains(err.Error(), "migrate from schema version 1") {
		t.Fatalf("Open with the migration blocked: err = %v, want one naming the migration", err)
	}
	if got, want := userVersion(t, path), 1; got != want {
		t.Errorf("user_version after a failed migration = %d, want %d", got, want)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'given_up'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("jobs has a given_up column after a failed migration: the ALTERs were not rolled back")
	}
}

// schemaV2 is the schema wp wrote before expiry, batches and progress times
// (schema version 2), frozen here as it was released, with jobs in the
// states a store holds: running with parts complete and given up, failed
// by its tolerance, complete with its reduce sent, and failed by Fail.
const schemaV2 = `
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    total         INTEGER NOT NULL,
    remaining     INTEGER NOT NULL,
    metadata      TEXT,
    created_at    INTEGER NOT NULL,
    failed        INTEGER NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    reduce_sent   INTEGER NOT NULL DEFAULT 0,
    reduced       INTEGER NOT NULL DEFAULT 0,
    claim_token   TEXT NOT NULL DEFAULT '',
    claim_expires INTEGER NOT NULL DEFAULT 0,
    given_up            INTEGER NOT NULL DEFAULT 0,
    tolerance           TEXT NOT NULL DEFAULT '',
    reduce_on_failure   INTEGER NOT NULL DEFAULT 0,
    digest              TEXT NOT NULL DEFAULT '',
    failed_by_tolerance INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE shards (
    job_id TEXT NOT NULL,
    shard  INTEGER NOT NULL,
    bits   BLOB NOT NULL,
    PRIMARY KEY (job_id, shard)
) WITHOUT ROWID;
CREATE TABLE given_up (
    job_id        TEXT NOT NULL,
    part          INTEGER NOT NULL,
    exit_code     INTEGER NOT NULL,
    signal        TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    stderr        TEXT NOT NULL,
    PRIMARY KEY (job_id, part)
) WITHOUT ROWID;
-- v2-run: 5000 parts, 1 and 4097 complete, 2 given up (bit set, row).
INSERT INTO jobs (id, total, remaining, metadata, created_at, given_up, tolerance, reduce_on_failure, digest)
    VALUES ('v2-run', 5000, 4997, '{"a":1}', 1764000000000000000, 1, '5%', 1, 'sha256:00ff');
INSERT INTO shards (job_id, shard, bits) VALUES
    ('v2-run', 0, CAST(X'06' || zeroblob(511) AS BLOB)),
    ('v2-run', 1, CAST(X'02' || zeroblob(511) AS BLOB));
INSERT INTO given_up VALUES ('v2-run', 2, 137, 'KILL', 10, 1764000001000, 'out of memory');
-- v2-tol: 2 parts, both given up, tolerance 1: failed by its tolerance.
INSERT INTO jobs (id, total, remaining, created_at, given_up, tolerance, failed, failed_by_tolerance, error)
    VALUES ('v2-tol', 2, 0, 1764000002000000000, 2, '1', 1, 1, '2 parts given up (tolerance 1)');
INSERT INTO shards VALUES ('v2-tol', 0, CAST(X'03' || zeroblob(511) AS BLOB));
INSERT INTO given_up VALUES ('v2-tol', 0, 1, '', 3, 1764000003000, ''), ('v2-tol', 1, 2, '', 3, 1764000004000, 'e');
-- v2-done: 1 part, complete, reduce sent and reduced.
INSERT INTO jobs (id, total, remaining, created_at, reduce_sent, reduced)
    VALUES ('v2-done', 1, 0, 1764000004000000000, 1, 1);
INSERT INTO shards VALUES ('v2-done', 0, CAST(X'01' || zeroblob(511) AS BLOB));
-- v2-failed: failed by Fail.
INSERT INTO jobs (id, total, remaining, created_at, failed, error)
    VALUES ('v2-failed', 3, 3, 1764000003000000000, 1, 'boom');
PRAGMA user_version = 2;
`

// TestMigrate_V2: a version-2 database is migrated in place on Open; its
// jobs keep every field they had, read as never expiring, without batch
// settings or a last end, their recent count starting at the migration,
// and take the new operations.
func TestMigrate_V2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	rawExec(t, path, schemaV2)
	before := time.Now()
	st, err := backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatalf("Open of a version-2 database: %v", err)
	}
	defer st.Close()
	if got, want := userVersion(t, path), schemaVersion; got != want {
		t.Errorf("user_version after Open = %d, want %d", got, want)
	}
	status := func(id string) backends.Status {
		t.Helper()
		s, err := st.Status(ctx, id)
		if err != nil {
			t.Fatalf("Status(%s): %v", id, err)
		}
		return s
	}
	tol5, _ := backends.ParseTolerance("5%")
	tol1, _ := backends.ParseTolerance("1")
	for _, want := range []backends.Status{
		{ID: "v2-run", Total: 5000, Remaining: 4997, GivenUp: 1, Metadata: []byte(`{"a":1}`), Tolerance: tol5, ReduceOnFailure: true, Digest: "sha256:00ff",
			CreatedAt: time.Unix(0, 1764000000000000000)},
		{ID: "v2-tol", Total: 2, GivenUp: 2, Tolerance: tol1, Failed: true, FailedByTolerance: true, Error: "2 parts given up (tolerance 1)",
			CreatedAt: time.Unix(0, 1764000002000000000)},
		{ID: "v2-done", Total: 1, ReduceSent: true, Reduced: true, CreatedAt: time.Unix(0, 1764000004000000000)},
		{ID: "v2-failed", Total: 3, Remaining: 3, Failed: true, Error: "boom", CreatedAt: time.Unix(0, 1764000003000000000)},
	} {
		got := status(want.ID)
		if got.RecentEnded != 0 || got.RecentWindow <= 0 || got.RecentWindow > time.Since(before)+time.Second {
			t.Errorf("%s: RecentEnded %d over %v, want 0 over the time since the migration (%v)", want.ID, got.RecentEnded, got.RecentWindow, time.Since(before))
		}
		got.RecentEnded, got.RecentWindow = 0, 0
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("migrated job\n got %+v\nwant %+v", got, want)
		}
	}
	var gu []backends.GivenUpPart
	if err := st.GivenUp(ctx, "v2-tol", func(p backends.GivenUpPart) error { gu = append(gu, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(gu), fmt.Sprint([]backends.GivenUpPart{
		{Part: 0, GiveUpInfo: backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 3, At: time.UnixMilli(1764000003000)}},
		{Part: 1, GiveUpInfo: backends.GiveUpInfo{ExitCode: 2, ReceiveCount: 3, At: time.UnixMilli(1764000004000), Stderr: "e"}},
	}); got != want {
		t.Errorf("migrated given-up parts\n got %s\nwant %s", got, want)
	}
	// Newest first, by the creation times version 2 kept.
	var ids []string
	if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error { ids = append(ids, s.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(ids), "[v2-done v2-failed v2-tol v2-run]"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}
	// The parts keep their state: 1 and 4097 complete, 2 given up.
	if c, err := st.CompleteParts(ctx, "v2-run", []int64{1, 2, 3, 4097}); err != nil || c.Completed != 2 || c.Duplicate {
		t.Errorf("CompleteParts(1, given-up 2, 3, 4097) = %+v, %v; want 2 completed (2 converted, 3 new)", c, err)
	}
	s := status("v2-run")
	if s.Remaining != 4996 || s.GivenUp != 0 || s.RecentEnded != 1 || s.LastEnded.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("after the batch: %+v; want 4996 remaining, none given up, 1 recent (the conversion ends nothing), LastEnded now", s)
	}
	if err := st.SetExpiry(ctx, "v2-done", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Status(ctx, "v2-done"); err == nil {
		t.Error("a migrated job given a past expiry is still there")
	}
	if _, err := st.Retry(ctx, "v2-tol", []int64{0}); err != nil {
		t.Errorf("Retry of a job failed by its tolerance before the migration: %v", err)
	}
	// Reopening a migrated database is a no-op.
	st2, err := backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	st2.Close()
}

// TestMigrate_V2OneTransaction: a migration from version 2 that fails at
// its last statement leaves the database as it was.
func TestMigrate_V2OneTransaction(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	// A table with the name of the migration's last index.
	rawExec(t, path, schemaV2+"CREATE TABLE jobs_expiry (x INTEGER);")
	if _, err := backends.Open(ctx, dbURL(path), 0); err == nil || !strings.Contains(err.Error(), "migrate from schema version 2") {
		t.Fatalf("Open with the migration blocked: err = %v, want one naming the migration", err)
	}
	if got, want := userVersion(t, path), 2; got != want {
		t.Errorf("user_version after a failed migration = %d, want %d", got, want)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM pragma_table_info('jobs') WHERE name IN ('expires_at', 'recent', 'recent_since'))
		+ (SELECT count(*) FROM pragma_table_info('given_up') WHERE name = 'reason')
		+ (SELECT count(*) FROM sqlite_master WHERE name = 'jobs_newest')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after a failed migration: %d of the new columns and indexes, %v; want none (the ALTERs rolled back)", n, err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM jobs`).Scan(&n); err != nil || n != 4 {
		t.Errorf("jobs after a failed migration: %d, %v; want the 4", n, err)
	}
}
