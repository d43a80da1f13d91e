// Package sqlite is wp's embedded progress store: one SQLite database file on
// the local disk, shared by every wp process on the machine. It is pure Go
// (modernc.org/sqlite, no cgo), so the wp binary stays static.
//
// # URLs
//
//	sqlite:///abs/path/progress.db    absolute path
//	sqlite://relative/progress.db     relative to the working directory
//	sqlite:///abs/path.db?busy_timeout=30s
//
// busy_timeout (default 10s, DefaultBusyTimeout) is how long a statement
// waits for another connection's write lock. Any other query parameter is an
// error. DefaultPath and DefaultURL give the per-user default location,
// $XDG_STATE_HOME/wp/progress.db or ~/.local/state/wp/progress.db.
//
// Opening creates missing parent directories with mode 0700 and a missing
// database file with mode 0600, whatever the umask; SQLite gives the -wal
// and -shm files the database file's mode, and Open tightens any that are
// wider.
//
// # Concurrency
//
// Many wp processes complete parts of one job at once, so the database runs
// in WAL mode (readers never block the writer) with synchronous=NORMAL (a
// commit survives a crash of the wp process; a power cut or kernel crash may
// roll back the last commits, never corrupt the file) and busy_timeout.
// Every write is one BEGIN IMMEDIATE transaction (the driver's
// _txlock=immediate): the write lock is taken before anything is read, so
// two processes can never both read "one part pending" and both decide they
// finished the job. SQLite serialises the transactions across processes;
// inside one process a write semaphore serialises them before they reach
// SQLite, so goroutines queue in Go instead of polling the file lock. A
// transaction that still fails with SQLITE_BUSY (the lock was held past
// busy_timeout, or the WAL was being recovered) is retried from the start, at
// most maxAttempts times; a retried transaction never committed, so no
// completion is counted twice or lost. Reads (Status, List, Pending) are
// plain statements outside any write transaction.
//
// Claim leases compare wall-clock times (Unix nanoseconds) written by the
// processes sharing the database; they share one machine, so one clock.
//
// # Schema (PRAGMA user_version = 2)
//
//	CREATE TABLE jobs (
//	    id            TEXT PRIMARY KEY,
//	    total         INTEGER NOT NULL,      -- parts 0..total-1
//	    remaining     INTEGER NOT NULL,      -- parts still pending, exact
//	    metadata      TEXT,                  -- JSON object as given, or NULL
//	    created_at    INTEGER NOT NULL,      -- Unix nanoseconds
//	    failed        INTEGER NOT NULL DEFAULT 0,
//	    error         TEXT NOT NULL DEFAULT '',
//	    reduce_sent   INTEGER NOT NULL DEFAULT 0,
//	    reduced       INTEGER NOT NULL DEFAULT 0,
//	    claim_token   TEXT NOT NULL DEFAULT '',
//	    claim_expires INTEGER NOT NULL DEFAULT 0, -- Unix nanoseconds
//	    -- version 2 (given-up parts):
//	    given_up            INTEGER NOT NULL DEFAULT 0, -- rows in given_up
//	    tolerance           TEXT NOT NULL DEFAULT '',   -- "3", "10%" ('' = 0)
//	    reduce_on_failure   INTEGER NOT NULL DEFAULT 0,
//	    digest              TEXT NOT NULL DEFAULT '',
//	    failed_by_tolerance INTEGER NOT NULL DEFAULT 0
//	);
//	CREATE TABLE shards (
//	    job_id TEXT NOT NULL,
//	    shard  INTEGER NOT NULL,   -- parts shard*4096 .. shard*4096+4095
//	    bits   BLOB NOT NULL,      -- 512 bytes; bit set = part ended
//	    PRIMARY KEY (job_id, shard)
//	) WITHOUT ROWID;
//	CREATE TABLE given_up (        -- version 2: one row per given-up part
//	    job_id        TEXT NOT NULL,
//	    part          INTEGER NOT NULL,
//	    exit_code     INTEGER NOT NULL,
//	    signal        TEXT NOT NULL,
//	    receive_count INTEGER NOT NULL,
//	    at            INTEGER NOT NULL,  -- Unix milliseconds
//	    stderr        TEXT NOT NULL,     -- at most 512 bytes
//	    PRIMARY KEY (job_id, part)
//	) WITHOUT ROWID;
//
// Open migrates an older database in place: every step from its
// user_version to this one runs in the same BEGIN IMMEDIATE transaction as
// the new user_version, so an interrupted or failed migration leaves the
// database as it was, and of several processes opening it at once one
// migrates and the others find it done. (A wp older than this one then
// refuses the file as "newer": upgrade every wp sharing it.)
//
// Per-part state is a bitmap cut into shards of 4096 parts (512-byte blobs),
// and a shard row exists only once one of its parts has ended: a missing
// shard means all its parts are pending. So CreateJob writes one jobs row
// whatever the size of the job (a 1,000,000-part job is created as fast as
// a 1-part one, and atomically, since it is a single INSERT), and a job that
// ends every part holds at most ceil(total/4096) shard rows, about 128 bytes
// of disk per 1000 parts. Complete is one IMMEDIATE transaction: read the
// jobs row, read the shard blob, test the bit; if it was clear, set it,
// write the blob back and decrement jobs.remaining; the call that takes
// remaining to 0 is the finisher. A table with one row per pending part was
// the alternative: its CreateJob writes a million rows (tens of MB of B-tree)
// and holds the write lock for seconds while every worker waits.
//
// # Given-up parts
//
// A bit set means the part has ended, completed or given up; a given-up
// part also has its given_up row, and jobs.given_up counts those rows.
// Keeping both kinds of ended part in the one bitmap leaves Pending and the
// hot path of Complete as they were: Complete looks for a given_up row only
// when the bit is already set and jobs.given_up > 0, which a plain
// completion never pays for.
//
// Every write is still one IMMEDIATE transaction, so each of these is
// atomic and, under the write lock, sees every earlier one:
//
//   - GiveUp: a clear bit is set, the given_up row inserted, remaining
//     decremented and given_up incremented; when given_up passes the
//     tolerance's limit the job fails (failed_by_tolerance, reason from
//     backends.ToleranceReason). The call that takes remaining to 0 is the
//     finisher, as for Complete. A set bit is a duplicate: nothing changes.
//   - Complete of a set bit with a given_up row deletes the row and
//     decrements given_up (converted: neither finisher nor duplicate).
//   - Retry deletes the given_up row of each named part that has one,
//     clears its bit, and in the same transaction moves remaining and
//     given_up, revives a job failed by its tolerance once given_up is
//     within it, and clears the reduce state (reduce_sent, reduced, claim).
//     A part without a row (pending, complete, or named twice) is skipped,
//     so a second Retry or a Complete that converted the part first moves
//     nothing twice.
//
// Pending walks the shards in order, a page of rows at a time, and streams
// the clear bits (and every part of a missing shard); it never holds every id,
// and it does not hold a read transaction while calling fn, so fn may call
// the store. It is not one snapshot: a part completed while Pending runs may
// or may not be reported. List pages through jobs by id, listPage rows per
// statement.
package sqlite
