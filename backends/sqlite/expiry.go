package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/wp-tools/wp/backends"
)

// A job's expiry is jobs.expires_at, Unix seconds (0: never). The job is gone
// from the second expires_at on: every read and write checks it (expired, or
// liveClause in SQL) and answers ErrNotFound, so a job is gone on time
// whether or not its rows have been deleted yet. The rows go later, a few
// jobs at a time (sweep), in transactions that are written anyway: Open's,
// and the one that ends a job.

// expired says whether a job with expires_at expires has expired at now.
func expired(expires int64, now time.Time) bool {
	return expires != 0 && expires <= now.Unix()
}

// liveClause is the SQL for expired's opposite; its one argument is
// now.Unix().
const liveClause = `(expires_at = 0 OR expires_at > ?)`

// expiresAt is the expires_at a job created at created with ExpireAfter
// after has (0 for none).
func expiresAt(created time.Time, after time.Duration) int64 {
	if after <= 0 {
		return 0
	}
	return backends.ExpirySecond(created.Add(after)).Unix()
}

// SetExpiry implements backends.Driver: one IMMEDIATE transaction that
// checks the job is live and sets expires_at, or, for a time already past,
// deletes the job's rows at once.
func (s *Store) SetExpiry(ctx context.Context, jobID string, at time.Time) error {
	at = backends.ExpirySecond(at)
	return s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		if err := exists(ctx, tx, jobID, now); err != nil {
			return err
		}
		switch {
		case at.IsZero():
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET expires_at = 0 WHERE id = ?`, jobID)
			return err
		case !now.Before(at):
			return deleteJob(ctx, tx, jobID)
		default:
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET expires_at = ? WHERE id = ?`, at.Unix(), jobID)
			return err
		}
	})
}

// deleteJob deletes every row of the job inside tx: its jobs row, its
// shards and its given-up parts (its per-minute count is on the jobs row).
func deleteJob(ctx context.Context, tx *sql.Tx, jobID string) error {
	for _, q := range []string{
		`DELETE FROM jobs WHERE id = ?`,
		`DELETE FROM shards WHERE job_id = ?`,
		`DELETE FROM given_up WHERE job_id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, jobID); err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes the rows of up to most jobs that have expired at now,
// inside tx, and says how many it deleted. Finding none is one probe of
// the partial index jobs_expiry, which holds only jobs that expire.
func sweep(ctx context.Context, tx *sql.Tx, now time.Time, most int) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM jobs WHERE expires_at > 0 AND expires_at <= ?
		ORDER BY expires_at LIMIT ?`, now.Unix(), most)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := deleteJob(ctx, tx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// sweepOpen goes on with the sweep Open's migration transaction began
// (it deleted swept jobs) while there may be more, sweepJobs a
// transaction, openSweeps transactions at most; what is left goes in later
// Opens and in the transactions that end jobs.
func (s *Store) sweepOpen(ctx context.Context, swept int) error {
	for round := 1; swept == sweepJobs && round < openSweeps; round++ {
		if err := s.write(ctx, func(tx *sql.Tx) error {
			var err error
			swept, err = sweep(ctx, tx, time.Now(), sweepJobs)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}
