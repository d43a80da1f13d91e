package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"strconv"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wp-tools/wp/backends"
)

const (
	schemaVersion = 3
	partsPerShard = 4096
	shardBytes    = partsPerShard / 8
	// pendingPage is how many shard rows Pending reads per statement
	// (32 KiB of bitmap).
	pendingPage = 64
	// givenUpPage is how many given-up parts GivenUp reads per statement.
	givenUpPage = 500
	// listPage and maxListPage bound how many jobs List reads per
	// statement: about the caller's Limit, at least listPage, at most
	// maxListPage.
	listPage    = 100
	maxListPage = 1000
	// sweepJobs is how many expired jobs one write transaction deletes
	// (the one that ends a job, or one of Open's), so that no write
	// takes long however many jobs have expired; openSweeps is how many
	// such transactions Open runs at most (the first is its migration's).
	sweepJobs  = 8
	openSweeps = 32
	// maxAttempts bounds how often a transaction that failed with
	// SQLITE_BUSY is run again.
	maxAttempts = 5
	// maxOpenConns caps one process's SQLite connections.
	maxOpenConns = 8
)

func init() {
	backends.Register("sqlite", func(ctx context.Context, u *url.URL) (backends.Driver, error) {
		s, err := Open(ctx, u)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// Store is the SQLite driver: a backends.Driver on one database file.
type Store struct {
	db   *sql.DB
	path string
	// wsem serialises this process's write transactions (capacity 1).
	wsem chan struct{}
	// Complete's statements, prepared once (database/sql keeps one
	// prepared copy per connection).
	selJob, selShard, putShard, putJob, delGivenUp, delGivenUpIn *sql.Stmt
}

// driverName is the database/sql driver Open uses (a test counts the
// statements through a wrapper of it).
var driverName = "sqlite"

var _ backends.Driver = (*Store)(nil)

// Open opens (creating if need be) the database file the URL names.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	if err := prepareFile(cfg.path); err != nil {
		return nil, fmt.Errorf("%w (check that %s is writable by you)", err, cfg.path)
	}
	ms := cfg.busyTimeout.Milliseconds()
	// busy_timeout runs first (the driver orders it so), then journal_mode
	// and synchronous, on every new connection.
	dsn := cfg.path + "?_pragma=busy_timeout(" + strconv.FormatInt(ms, 10) + ")" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite database %s: %w", cfg.path, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	s := &Store{db: db, path: cfg.path, wsem: make(chan struct{}, 1)}
	swept, err := s.migrate(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := s.sweepOpen(ctx, swept); err != nil {
		db.Close()
		return nil, fmt.Errorf("delete expired jobs in %s: %w", cfg.path, err)
	}
	if err := tightenSidecars(cfg.path); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare statements on %s: %w", cfg.path, err)
	}
	return s, nil
}

// migrations[v] takes a database from schema version v to v+1; a new
// database runs them all. Each runs in the one BEGIN IMMEDIATE transaction
// that also sets user_version, so a migration interrupted part way leaves
// the database as it was, and of several processes opening an old
// database at once exactly one migrates it (the others then read the new
// version).
var migrations = []string{
	// 0 -> 1: jobs and the bitmap shards.
	`CREATE TABLE jobs (
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
	) WITHOUT ROWID`,
	// 1 -> 2: given-up parts, tolerance, reduce on failure,
	// input digest. Existing jobs get a tolerance of 0 and no digest.
	`ALTER TABLE jobs ADD COLUMN given_up INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN tolerance TEXT NOT NULL DEFAULT '';
	ALTER TABLE jobs ADD COLUMN reduce_on_failure INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN digest TEXT NOT NULL DEFAULT '';
	ALTER TABLE jobs ADD COLUMN failed_by_tolerance INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE given_up (
		job_id        TEXT NOT NULL,
		part          INTEGER NOT NULL,
		exit_code     INTEGER NOT NULL,
		signal        TEXT NOT NULL,
		receive_count INTEGER NOT NULL,
		at            INTEGER NOT NULL,
		stderr        TEXT NOT NULL,
		PRIMARY KEY (job_id, part)
	) WITHOUT ROWID`,
	// 2 -> 3: expiry, batch settings, when a part last ended and the
	// per-minute count of ended parts (recent), the give-up reason, and
	// the indexes that List (newest first) and the sweep of expired jobs
	// read. Existing jobs never expire, have ended no part that this
	// store can date (last_ended 0) and have their ends counted from now
	// on (recent_since, Unix milliseconds).
	`ALTER TABLE jobs ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN batch_bytes INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN last_ended INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN recent BLOB;
	ALTER TABLE jobs ADD COLUMN recent_since INTEGER NOT NULL DEFAULT 0;
	UPDATE jobs SET recent_since = CAST(unixepoch('subsec') * 1000 AS INTEGER);
	ALTER TABLE given_up ADD COLUMN reason TEXT NOT NULL DEFAULT '';
	CREATE INDEX jobs_newest ON jobs (created_at DESC, id);
	CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at > 0`,
}

// migrate brings the database to schemaVersion (creating the schema in a new
// one) and refuses one written by a newer wp or by something else. The same
// transaction, which every Open runs anyway, then deletes up to sweepJobs
// expired jobs; swept says how many.
func (s *Store) migrate(ctx context.Context) (swept int, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		swept = 0
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		switch {
		case v > schemaVersion:
			return fmt.Errorf("database schema version %d is newer than this wp understands (%d): upgrade wp", v, schemaVersion)
		case v < 0:
			return fmt.Errorf("database has unknown schema version %d: not a wp progress database", v)
		case v == 0:
			var foreign int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
				WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).Scan(&foreign); err != nil {
				return err
			}
			if foreign != 0 {
				return errors.New("database already holds tables but no wp schema version: not a wp progress database, use another file")
			}
		}
		if v < schemaVersion {
			for ; v < schemaVersion; v++ {
				if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
					return fmt.Errorf("migrate from schema version %d: %w", v, err)
				}
			}
			if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(schemaVersion)); err != nil {
				return err
			}
		}
		var err error
		swept, err = sweep(ctx, tx, time.Now(), sweepJobs)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prepare database schema in %s: %w", s.path, err)
	}
	return swept, nil
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.selJob, `SELECT total, remaining, failed, reduce_sent, given_up, expires_at, recent FROM jobs WHERE id = ?`},
		{&s.selShard, `SELECT bits FROM shards WHERE job_id = ? AND shard = ?`},
		{&s.putShard, `INSERT INTO shards (job_id, shard, bits) VALUES (?, ?, ?)
			ON CONFLICT (job_id, shard) DO UPDATE SET bits = excluded.bits`},
		{&s.putJob, `UPDATE jobs SET remaining = ?, given_up = ?, last_ended = max(last_ended, ?), recent = ? WHERE id = ?`},
		{&s.delGivenUp, `DELETE FROM given_up WHERE job_id = ? AND part = ?`},
		{&s.delGivenUpIn, `DELETE FROM given_up WHERE job_id = ? AND part IN (SELECT value FROM json_each(?))`},
	} {
		var err error
		if err = retry(ctx, func() error {
			*p.stmt, err = s.db.PrepareContext(ctx, p.query)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// isBusy reports whether err is SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var e *msqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}

// retry runs fn until it succeeds, fails with something other than
// SQLITE_BUSY, or has run maxAttempts times, backing off a little between
// attempts.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			d := time.Duration(10<<attempt)*time.Millisecond + mrand.N(10*time.Millisecond)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (after %v)", ctx.Err(), err)
			case <-t.C:
			}
		}
		if err = fn(); err == nil || !isBusy(err) {
			return err
		}
	}
	// Nothing was recorded, and the same call may go through once the
	// other writers are done: for wp run, a completion refused this way is
	// tried again as a throttled one is.
	return fmt.Errorf("database stayed locked by another process through %d attempts: %w: %w", maxAttempts, backends.ErrThrottled, err)
}

// write runs fn in one BEGIN IMMEDIATE transaction and commits it, retrying
// the whole transaction on SQLITE_BUSY. fn may run more than once, so it must
// set its results afresh on each run.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	return retry(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

func (s *Store) CreateJob(ctx context.Context, job backends.Job) error {
	if job.Total < 1 {
		return fmt.Errorf("total %d: a job needs at least 1 part", job.Total)
	}
	var meta any // NULL for no metadata
	if len(job.Metadata) > 0 {
		if !json.Valid(job.Metadata) {
			return errors.New("metadata is not valid JSON")
		}
		meta = string(job.Metadata)
	}
	created := time.Now()
	insert := func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, total, remaining, metadata, created_at,
				tolerance, reduce_on_failure, digest, expires_at, batch, batch_bytes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			job.ID, job.Total, job.Total, meta, created.UnixNano(), job.Tolerance.String(), job.ReduceOnFailure, job.Digest,
			expiresAt(created, job.ExpireAfter), job.Batch, job.BatchBytes)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if ok, err := insert(tx); ok || err != nil {
			return err
		}
		// The id is taken: by a live job, or by one that has expired
		// and whose rows are still here. Those go, and the new job
		// takes the id.
		var expires int64
		if err := tx.QueryRowContext(ctx, `SELECT expires_at FROM jobs WHERE id = ?`, job.ID).Scan(&expires); err != nil {
			return err
		}
		if !expired(expires, time.Now()) {
			return backends.ErrExists
		}
		if err := deleteJob(ctx, tx, job.ID); err != nil {
			return err
		}
		if ok, err := insert(tx); err != nil || !ok {
			return errors.Join(err, errors.New("the id of an expired job stayed taken after its rows were deleted"))
		}
		return nil
	})
}

// exists reports whether the job exists and has not expired at now,
// inside tx.
func exists(ctx context.Context, tx *sql.Tx, jobID string, now time.Time) error {
	var expires int64
	err := tx.QueryRowContext(ctx, `SELECT expires_at FROM jobs WHERE id = ?`, jobID).Scan(&expires)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && expired(expires, now)) {
		return backends.ErrNotFound
	}
	return err
}

// update runs one UPDATE of the job's row (query, ending in its WHERE
// clause, which update extends with liveClause) and returns ErrNotFound
// when the job does not exist or has expired (an UPDATE that matched
// nothing because its condition was already met is not an error). Its
// result is whether a row changed.
func (s *Store) update(ctx context.Context, tx *sql.Tx, now time.Time, jobID, query string, args ...any) (bool, error) {
	res, err := tx.ExecContext(ctx, query+" AND "+liveClause, append(args[:len(args):len(args)], now.Unix())...)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 0 {
		return false, exists(ctx, tx, jobID, now)
	}
	return true, nil
}

// updateJob is update in a transaction of its own.
func (s *Store) updateJob(ctx context.Context, jobID, query string, args ...any) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.update(ctx, tx, time.Now(), jobID, query, args...)
		return err
	})
}

// Fail implements backends.Driver. Failing a job ends it, so the same
// transaction deletes a few expired jobs.
func (s *Store) Fail(ctx context.Context, jobID, reason string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		failed, err := s.update(ctx, tx, now, jobID, `UPDATE jobs SET failed = 1, error = ? WHERE id = ? AND failed = 0`, reason, jobID)
		if err == nil && failed {
			_, err = sweep(ctx, tx, now, sweepJobs)
		}
		return err
	})
}

const statusColumns = `id, total, remaining, metadata, created_at, failed, error, reduce_sent, reduced,
	given_up, tolerance, reduce_on_failure, digest, failed_by_tolerance,
	expires_at, batch, batch_bytes, last_ended, recent, recent_since`

type scanner interface{ Scan(...any) error }

// scanStatus reads a row of statusColumns, with the recent count as of now.
func scanStatus(r scanner, now time.Time) (backends.Status, error) {
	var st backends.Status
	var meta sql.NullString
	var created, expires, lastEnded, recentSince int64
	var tol string
	var rec []byte
	if err := r.Scan(&st.ID, &st.Total, &st.Remaining, &meta, &created, &st.Failed, &st.Error, &st.ReduceSent, &st.Reduced,
		&st.GivenUp, &tol, &st.ReduceOnFailure, &st.Digest, &st.FailedByTolerance,
		&expires, &st.Batch, &st.BatchBytes, &lastEnded, &rec, &recentSince); err != nil {
		return st, err
	}
	t, err := backends.ParseTolerance(tol)
	if err != nil {
		return st, fmt.Errorf("job %s has a bad tolerance: %w", st.ID, err)
	}
	st.Tolerance = t
	if meta.Valid {
		st.Metadata = json.RawMessage(meta.String)
	}
	st.CreatedAt = time.Unix(0, created)
	if expires != 0 {
		st.ExpiresAt = time.Unix(expires, 0)
	}
	if lastEnded != 0 {
		st.LastEnded = time.UnixMilli(lastEnded)
	}
	rc, err := decodeRecent(rec)
	if err != nil {
		return st, fmt.Errorf("job %s: %w", st.ID, err)
	}
	from := st.CreatedAt
	if since := time.UnixMilli(recentSince); since.After(from) {
		from = since
	}
	st.RecentEnded, st.RecentWindow = rc.window(now, from)
	return st, nil
}

func (s *Store) Status(ctx context.Context, jobID string) (backends.Status, error) {
	var st backends.Status
	err := retry(ctx, func() error {
		var err error
		now := time.Now()
		st, err = scanStatus(s.db.QueryRowContext(ctx, `SELECT `+statusColumns+` FROM jobs WHERE id = ?`, jobID), now)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !st.ExpiresAt.IsZero() && !now.Before(st.ExpiresAt)) {
			return backends.ErrNotFound
		}
		return err
	})
	if err != nil {
		return backends.Status{}, err
	}
	return st, nil
}

// liveTotal reads the job's total outside any transaction: ErrNotFound for
// no job or an expired one.
func (s *Store) liveTotal(ctx context.Context, jobID string) (int64, error) {
	var total int64
	err := retry(ctx, func() error {
		var expires int64
		err := s.db.QueryRowContext(ctx, `SELECT total, expires_at FROM jobs WHERE id = ?`, jobID).Scan(&total, &expires)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && expired(expires, time.Now())) {
			return backends.ErrNotFound
		}
		return err
	})
	return total, err
}

type shardRow struct {
	shard int64
	bits  []byte
}

func (s *Store) Pending(ctx context.Context, jobID string, fn func(part int64) error) error {
	total, err := s.liveTotal(ctx, jobID)
	if err != nil {
		return err
	}
	nshards := (total + partsPerShard - 1) / partsPerShard
	// emitRange calls fn for every part of shards [from, to), all pending.
	emitRange := func(from, to int64) error {
		end := min(to*partsPerShard, total)
		for p := from * partsPerShard; p < end; p++ {
			if p%partsPerShard == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	page := make([]shardRow, 0, pendingPage)
	next := int64(0) // first shard not yet emitted
	for {
		page = page[:0]
		err := retry(ctx, func() error {
			page = page[:0]
			rows, err := s.db.QueryContext(ctx, `SELECT shard, bits FROM shards
				WHERE job_id = ? AND shard >= ? ORDER BY shard LIMIT ?`, jobID, next, pendingPage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var r shardRow
				if err := rows.Scan(&r.shard, &r.bits); err != nil {
					return err
				}
				page = append(page, r)
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		// Rows are closed: fn may use the store.
		for _, r := range page {
			if r.shard >= nshards {
				break
			}
			if err := emitRange(next, r.shard); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			base := r.shard * partsPerShard
			for i := int64(0); i < partsPerShard && base+i < total; i++ {
				if i/8 < int64(len(r.bits)) && r.bits[i/8]&(1<<(i%8)) != 0 {
					continue
				}
				if err := fn(base + i); err != nil {
					return err
				}
			}
			next = r.shard + 1
		}
		if len(page) < pendingPage {
			return emitRange(next, nshards)
		}
	}
}

// pages walks rows in key order, size at a time (keyset pagination: query
// reads the rows after the given key, ORDER BY key LIMIT size), and calls
// fn for each row. Each page is read whole, and retried as a whole while
// the database is busy, before fn sees any of it: no statement or
// transaction is open while fn runs, so a slow fn (a terminal, a pipe)
// holds no lock that writers wait for.
func pages[T, K any](ctx context.Context, size int, first K, key func(T) K, query func(after K) (*sql.Rows, error), scan func(*sql.Rows) (T, error), fn func(T) error) error {
	after := first
	page := make([]T, 0, size)
	for {
		err := retry(ctx, func() error {
			page = page[:0]
			rows, err := query(after)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				v, err := scan(rows)
				if err != nil {
					return err
				}
				page = append(page, v)
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		for _, v := range page {
			if err := fn(v); err != nil {
				return err
			}
		}
		if len(page) < size {
			return nil
		}
		after = key(page[len(page)-1])
	}
}

func (s *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (string, bool, error) {
	var token string
	err := s.write(ctx, func(tx *sql.Tx) error {
		token = ""
		var remaining, expires, jobExpires int64
		var failed, sent, onFailure bool
		var holder string
		err := tx.QueryRowContext(ctx, `SELECT remaining, failed, reduce_sent, claim_token, claim_expires, reduce_on_failure, expires_at
			FROM jobs WHERE id = ?`, jobID).Scan(&remaining, &failed, &sent, &holder, &expires, &onFailure, &jobExpires)
		now := time.Now()
		if errors.Is(err, sql.ErrNoRows) || (err == nil && expired(jobExpires, now)) {
			return backends.ErrNotFound
		}
		if err != nil {
			return err
		}
		ready := (remaining == 0 && !failed) || (failed && onFailure)
		if !ready || sent || (holder != "" && now.UnixNano() < expires) {
			return nil
		}
		tok := rand.Text()
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET claim_token = ?, claim_expires = ? WHERE id = ?`,
			tok, now.Add(lease).UnixNano(), jobID); err != nil {
			return err
		}
		token = tok
		return nil
	})
	if err != nil {
		return "", false, err
	}
	return token, token != "", nil
}

func (s *Store) ReleaseReduce(ctx context.Context, jobID, token string) error {
	if token == "" {
		return nil // no claim has an empty token
	}
	return s.updateJob(ctx, jobID, `UPDATE jobs SET claim_token = '', claim_expires = 0
		WHERE id = ? AND claim_token = ?`, jobID, token)
}

func (s *Store) MarkReduceSent(ctx context.Context, jobID string) error {
	return s.updateJob(ctx, jobID, `UPDATE jobs SET reduce_sent = 1, claim_token = '', claim_expires = 0
		WHERE id = ?`, jobID)
}

func (s *Store) MarkReduced(ctx context.Context, jobID string) error {
	return s.updateJob(ctx, jobID, `UPDATE jobs SET reduced = 1 WHERE id = ?`, jobID)
}

// Delete implements backends.Driver. A job that has expired is not found,
// but its rows are deleted all the same.
func (s *Store) Delete(ctx context.Context, jobID string) error {
	var gone bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var expires int64
		err := tx.QueryRowContext(ctx, `DELETE FROM jobs WHERE id = ? RETURNING expires_at`, jobID).Scan(&expires)
		if errors.Is(err, sql.ErrNoRows) {
			return backends.ErrNotFound
		}
		if err != nil {
			return err
		}
		gone = expired(expires, time.Now())
		return deleteJob(ctx, tx, jobID)
	})
	if err == nil && gone {
		err = backends.ErrNotFound
	}
	return err
}

func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.selJob, s.selShard, s.putShard, s.putJob, s.delGivenUp, s.delGivenUpIn} {
		st.Close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite database %s: %w", s.path, err)
	}
	return nil
}
