package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

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
