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
// Claim leases, expiry, last_ended and the per-minute counts all use
// wall-clock times written by the processes sharing the database; they
// share one machine, so one clock.
//
// # Schema (PRAGMA user_version = 3)
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
//	    failed_by_tolerance INTEGER NOT NULL DEFAULT 0,
//	    -- version 3 (expiry, batches, progress times):
//	    expires_at   INTEGER NOT NULL DEFAULT 0, -- Unix seconds; 0 = never
//	    batch        INTEGER NOT NULL DEFAULT 0, -- as CreateJob was given
//	    batch_bytes  INTEGER NOT NULL DEFAULT 0,
//	    last_ended   INTEGER NOT NULL DEFAULT 0, -- Unix ms; 0 = none ended
//	    recent       BLOB,                       -- ended parts by the minute
//	    recent_since INTEGER NOT NULL DEFAULT 0  -- Unix ms counting began,
//	                                             -- if after created_at
//	);
//	CREATE INDEX jobs_newest ON jobs (created_at DESC, id);             -- List
//	CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at > 0; -- sweep
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
//	    reason        TEXT NOT NULL DEFAULT '', -- version 3
//	    PRIMARY KEY (job_id, part)
//	) WITHOUT ROWID;
//
// Open migrates an older database in place: every step from its
// user_version to this one runs in the same BEGIN IMMEDIATE transaction as
// the new user_version, so an interrupted or failed migration leaves the
// database as it was, and of several processes opening it at once one
// migrates and the others find it done. (A wp older than this one then
// refuses the file as "newer": upgrade every wp sharing it.) Version 2 -> 3
// adds columns with constant defaults (SQLite rewrites no row for those),
// sets recent_since on the jobs that exist (their ends were not counted
// before) and builds the two indexes: one pass over the jobs, none over
// the shards or given-up parts.
//
// Per-part state is a bitmap cut into shards of 4096 parts (512-byte blobs),
// and a shard row exists only once one of its parts has ended: a missing
// shard means all its parts are pending. So CreateJob writes one jobs row
// whatever the size of the job (a 1,000,000-part job is created as fast as
// a 1-part one, and atomically, since it is a single INSERT), and a job that
// ends every part holds at most ceil(total/4096) shard rows, about 128 bytes
// of disk per 1000 parts. Complete is one IMMEDIATE transaction: read the
// jobs row, read the shard blob, test the bit; if it was clear, set it,
// write the blob back and write the jobs row back (remaining less one, and
// the progress times below); the call that takes remaining to 0 is the
// finisher. That is four statements, a duplicate two (TestStatements
// counts them). A table with one row per pending part was
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
// # Batches
//
// CompleteParts is Complete for a sorted batch, in the same one IMMEDIATE
// transaction: one read of the jobs row, then for each shard the batch
// touches one read of its blob and, if a bit was clear, one write, then one
// write of the jobs row. ShardSize is 4096, so a batch inside one shard is
// four statements whatever its size, as one completion is, and a batch is
// atomic as a whole (more than the contract's per shard). Every part is
// checked against total, and the job against failed and expired, before
// anything is written, so a refused batch records nothing. Parts whose bit
// was already set are looked for among the given_up rows only when the job
// has any (one DELETE ... IN json_each(parts)); its row count is how many
// were converted. Completed is the clear bits set plus the conversions;
// remaining drops by the clear bits only, so the finisher rule is
// Complete's: the one call under the write lock that takes it to 0.
//
// # Progress times
//
// last_ended and recent live on the jobs row and are written by the UPDATE
// of that row which a completion (or give-up) makes anyway, only when it
// ended a part: they cost no statement and no transaction. recent is a ring
// of backends.RecentMinutes per-minute counts (48 bytes: the last minute
// written, then a count for it and for each minute before); a write in a
// new minute shifts the ring, dropping the minutes that fell out of the
// window, so it never grows and no write exists only to prune it. The ring
// is read with the jobs row and written back in the same IMMEDIATE
// transaction, so concurrent completions, from any process, each add to it
// under the write lock, and none is lost or counted twice. Status
// derives RecentEnded (the counts of the last RecentMinutes minutes) and
// RecentWindow (from the first of those minutes, or from created_at or
// recent_since if later) at read time. Both are exact, in Peek and List
// too.
//
// # Expiry
//
// expires_at is created_at+ExpireAfter rounded up to the second
// (backends.ExpirySecond), or 0. A job is gone from that second on: every
// method reads expires_at with the jobs row it reads anyway (List in its
// WHERE clause) and answers ErrNotFound, so expiry is exact whether or not
// the rows are deleted yet. The rows (jobs, shards, given_up; the counts
// are on the jobs row) are deleted later, sweepJobs jobs at a time, by
// transactions that run anyway: Open's migration transaction (which every
// Open takes, then up to openSweeps-1 more if it found a full batch), and
// the transaction that ends a job (finisher, a give-up past the tolerance,
// Fail). Finding nothing to delete is one probe of the partial index
// jobs_expiry, which holds only jobs with an expiry: once per job ended,
// never per part. SetExpiry with a past time deletes the job at once;
// CreateJob of an expired id, and Delete of one, delete its rows too.
//
// # Listing
//
// List reads jobs_newest in keyset pages (created_at <= k AND (created_at <
// k OR id > last id), ORDER BY created_at DESC, id: a range scan of the
// index, no sort) of about opt.Limit jobs (100 to 1000), with opt.Since and
// the expiry as WHERE terms, so it reads in proportion to the jobs it
// yields; every job is in the index, so opt.Scan changes nothing, and each
// Status is exact (never Estimated).
//
// Pending walks the shards in order, a page of rows at a time, and streams
// the clear bits (and every part of a missing shard); it never holds every id,
// and it does not hold a read transaction while calling fn, so fn may call
// the store. It is not one snapshot: a part completed while Pending runs may
// or may not be reported.
package sqlite
