package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wp-tools/wp/backends"
)

// jobRow is what GiveUp and Retry read of a job inside their transaction.
type jobRow struct {
	total, remaining, givenUp       int64
	failed, byTolerance, reduceSent bool
	tolerance                       backends.Tolerance
	recent                          []byte
}

// readJobRow reads the job inside tx: ErrNotFound for no job, or one
// expired at now.
func readJobRow(ctx context.Context, tx *sql.Tx, jobID string, now time.Time) (jobRow, error) {
	var j jobRow
	var tol string
	var expires int64
	err := tx.QueryRowContext(ctx, `SELECT total, remaining, given_up, failed, failed_by_tolerance, reduce_sent, tolerance, expires_at, recent
		FROM jobs WHERE id = ?`, jobID).Scan(&j.total, &j.remaining, &j.givenUp, &j.failed, &j.byTolerance, &j.reduceSent, &tol, &expires, &j.recent)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && expired(expires, now)) {
		return j, backends.ErrNotFound
	}
	if err != nil {
		return j, err
	}
	if j.tolerance, err = backends.ParseTolerance(tol); err != nil {
		return j, fmt.Errorf("the job has a bad tolerance: %w", err)
	}
	return j, nil
}

// GiveUp implements backends.Driver: one IMMEDIATE transaction sets the
// part's bit (ended), adds its given_up row, and moves the counts, the last
// end and the per-minute count on the jobs row, failing the job when
// given_up passes the tolerance. A part whose bit is already set (complete
// or given up) is a duplicate. The call that ends the job (finishing or
// failing it) also deletes a few expired jobs.
func (s *Store) GiveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo) (backends.Completion, error) {
	var c backends.Completion
	err := s.write(ctx, func(tx *sql.Tx) error {
		c = backends.Completion{}
		now := time.Now()
		j, err := readJobRow(ctx, tx, jobID, now)
		if err != nil {
			return err
		}
		if part < 0 || part >= j.total {
			return fmt.Errorf("%w: the job has parts 0 to %d", backends.ErrPartRange, j.total-1)
		}
		if j.failed {
			return backends.ErrJobFailed
		}
		shard, bit := part/partsPerShard, part%partsPerShard
		bits, err := s.readShard(ctx, tx, jobID, shard)
		if err != nil {
			return err
		}
		mask := byte(1) << (bit % 8)
		if bits[bit/8]&mask != 0 {
			c = backends.Completion{Duplicate: true, Done: j.remaining == 0, ReduceSent: j.reduceSent}
			return nil
		}
		bits[bit/8] |= mask
		if _, err := tx.StmtContext(ctx, s.putShard).ExecContext(ctx, jobID, shard, bits); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO given_up (job_id, part, exit_code, signal, receive_count, at, stderr, reason)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, jobID, part, info.ExitCode, info.Signal, info.ReceiveCount, info.At.UnixMilli(), info.Stderr, info.Reason); err != nil {
			return err
		}
		r, err := decodeRecent(j.recent)
		if err != nil {
			return err
		}
		r.add(unixMinute(now), 1)
		j.remaining--
		j.givenUp++
		c = backends.Completion{Finisher: j.remaining == 0, Done: j.remaining == 0, ReduceSent: j.reduceSent}
		if j.givenUp > j.tolerance.Limit(j.total) {
			c.Failed = true
			_, err = tx.ExecContext(ctx, `UPDATE jobs SET remaining = ?, given_up = ?, last_ended = ?, recent = ?,
					failed = 1, failed_by_tolerance = 1, error = ?
				WHERE id = ?`, j.remaining, j.givenUp, now.UnixMilli(), r.encode(), backends.ToleranceReason(j.givenUp, j.tolerance, j.total), jobID)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE jobs SET remaining = ?, given_up = ?, last_ended = ?, recent = ? WHERE id = ?`,
				j.remaining, j.givenUp, now.UnixMilli(), r.encode(), jobID)
		}
		if err == nil && (c.Finisher || c.Failed) {
			_, err = sweep(ctx, tx, now, sweepJobs)
		}
		return err
	})
	if err != nil {
		return backends.Completion{}, err
	}
	return c, nil
}

// GivenUp implements backends.Driver: it pages through the given_up rows in
// part order, givenUpPage at a time, holding no transaction while fn runs.
func (s *Store) GivenUp(ctx context.Context, jobID string, fn func(backends.GivenUpPart) error) error {
	if _, err := s.liveTotal(ctx, jobID); err != nil {
		return err
	}
	return pages(ctx, givenUpPage, int64(-1), func(p backends.GivenUpPart) int64 { return p.Part },
		func(after int64) (*sql.Rows, error) {
			return s.db.QueryContext(ctx, `SELECT part, exit_code, signal, receive_count, at, stderr, reason FROM given_up
				WHERE job_id = ? AND part > ? ORDER BY part LIMIT ?`, jobID, after, givenUpPage)
		},
		func(rows *sql.Rows) (backends.GivenUpPart, error) {
			var p backends.GivenUpPart
			var at int64
			err := rows.Scan(&p.Part, &p.ExitCode, &p.Signal, &p.ReceiveCount, &at, &p.Stderr, &p.Reason)
			p.At = time.UnixMilli(at)
			return p, err
		}, fn)
}

// Retry implements backends.Driver: one IMMEDIATE transaction deletes the
// given_up row of each named part that has one, clears its bit (pending
// again), and moves the counts, the tolerance failure and the reduce state
// on the jobs row. Parts without a given_up row are left alone, so a second
// Retry, or a Complete that converted the part first, finds nothing to
// move; the write lock orders them.
func (s *Store) Retry(ctx context.Context, jobID string, parts []int64) ([]int64, error) {
	var moved []int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		moved = nil
		j, err := readJobRow(ctx, tx, jobID, time.Now())
		if err != nil {
			return err
		}
		if j.failed && !j.byTolerance {
			return backends.ErrJobFailed
		}
		if j.givenUp == 0 {
			return nil
		}
		del, err := tx.PrepareContext(ctx, `DELETE FROM given_up WHERE job_id = ? AND part = ?`)
		if err != nil {
			return err
		}
		defer del.Close()
		shards := map[int64][]byte{}
		for _, p := range parts {
			if p < 0 || p >= j.total {
				continue
			}
			res, err := del.ExecContext(ctx, jobID, p)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				continue
			}
			shard, bit := p/partsPerShard, p%partsPerShard
			bits, ok := shards[shard]
			if !ok {
				if bits, err = s.readShard(ctx, tx, jobID, shard); err != nil {
					return err
				}
				shards[shard] = bits
			}
			bits[bit/8] &^= byte(1) << (bit % 8)
			moved = append(moved, p)
		}
		if len(moved) == 0 {
			return nil
		}
		for shard, bits := range shards {
			if _, err := tx.StmtContext(ctx, s.putShard).ExecContext(ctx, jobID, shard, bits); err != nil {
				return err
			}
		}
		n := int64(len(moved))
		j.givenUp -= n
		revive := j.byTolerance && j.givenUp <= j.tolerance.Limit(j.total)
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET remaining = remaining + ?, given_up = ?,
				reduce_sent = 0, reduced = 0, claim_token = '', claim_expires = 0,
				failed = CASE WHEN ? THEN 0 ELSE failed END,
				failed_by_tolerance = CASE WHEN ? THEN 0 ELSE failed_by_tolerance END,
				error = CASE WHEN ? THEN '' ELSE error END
			WHERE id = ?`, n, j.givenUp, revive, revive, revive, jobID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return moved, nil
}
