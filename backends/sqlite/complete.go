package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/wp-tools/wp/backends"
)

// Complete implements backends.Driver: CompleteParts of one part.
func (s *Store) Complete(ctx context.Context, jobID string, part int64) (backends.Completion, error) {
	return s.complete(ctx, jobID, []int64{part})
}

// CompleteParts implements backends.Driver: one IMMEDIATE transaction for
// the whole batch, one shard row written per shard that gained a bit.
func (s *Store) CompleteParts(ctx context.Context, jobID string, parts []int64) (backends.Completion, error) {
	return s.complete(ctx, jobID, parts)
}

// ShardSize implements backends.Driver: the parts of one bitmap row.
func (s *Store) ShardSize() int64 { return partsPerShard }

// complete records parts (ascending, as backends.Store passes them; any
// order is correct, only slower) in one IMMEDIATE transaction:
//
//   - read the jobs row (selJob): refuse an unknown or expired job, a part
//     out of range, a failed job, before anything is written;
//   - per shard the parts fall in, read its bitmap (selShard), set the
//     clear bits and write it back (putShard) if any was clear;
//   - if the job has given-up parts, delete the given_up rows of the parts
//     whose bit was already set (delGivenUp, or delGivenUpIn for several):
//     those were given up and are converted;
//   - if any part was completed, write remaining, given_up, last_ended and
//     the per-minute count back on the jobs row (putJob), and, for the
//     call that took remaining to 0, delete a few expired jobs (sweep).
//
// So a completion of one new part is four statements, as it was before
// the job kept progress times, and a duplicate is two reads.
func (s *Store) complete(ctx context.Context, jobID string, parts []int64) (backends.Completion, error) {
	var c backends.Completion
	// The statements run under the write lock that BEGIN IMMEDIATE took
	// (with ctx: the wait for the lock is what can be long), so none of
	// them waits for anything, and they run without ctx's cancellation:
	// given a cancellable context the driver starts a goroutine and
	// installs a progress handler for each statement, which made a
	// completion about a quarter slower (BenchmarkComplete, 115 against
	// 90 µs). A cancelled ctx still ends the transaction (database/sql
	// rolls it back), so its commit fails.
	ctx, bounded := context.WithoutCancel(ctx), ctx
	err := s.write(bounded, func(tx *sql.Tx) error {
		c = backends.Completion{}
		now := time.Now()
		var total, remaining, givenUp, expires int64
		var failed, reduceSent bool
		var rec []byte
		err := tx.StmtContext(ctx, s.selJob).QueryRowContext(ctx, jobID).Scan(&total, &remaining, &failed, &reduceSent, &givenUp, &expires, &rec)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && expired(expires, now)) {
			return backends.ErrNotFound
		}
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p < 0 || p >= total {
				return fmt.Errorf("%w: part %d: the job has parts 0 to %d", backends.ErrPartRange, p, total-1)
			}
		}
		if failed {
			return backends.ErrJobFailed
		}
		var ended int64
		var set []int64 // parts already ended: complete, or given up
		for i := 0; i < len(parts); {
			shard := parts[i] / partsPerShard
			bits, err := s.readShard(ctx, tx, jobID, shard)
			if err != nil {
				return err
			}
			changed := false
			for ; i < len(parts) && parts[i]/partsPerShard == shard; i++ {
				bit := parts[i] % partsPerShard
				mask := byte(1) << (bit % 8)
				if bits[bit/8]&mask != 0 {
					// Only when the job has given-up parts
					// can it be one of them (so a plain
					// duplicate costs no more than before).
					if givenUp > 0 {
						set = append(set, parts[i])
					}
					continue
				}
				bits[bit/8] |= mask
				changed = true
				ended++
			}
			if changed {
				if _, err := tx.StmtContext(ctx, s.putShard).ExecContext(ctx, jobID, shard, bits); err != nil {
					return err
				}
			}
		}
		var converted int64
		if len(set) > 0 {
			var res sql.Result
			if len(set) == 1 {
				res, err = tx.StmtContext(ctx, s.delGivenUp).ExecContext(ctx, jobID, set[0])
			} else {
				res, err = tx.StmtContext(ctx, s.delGivenUpIn).ExecContext(ctx, jobID, jsonInts(set))
			}
			if err != nil {
				return err
			}
			if converted, err = res.RowsAffected(); err != nil {
				return err
			}
		}
		completed := ended + converted
		if completed == 0 {
			c = backends.Completion{Duplicate: true, Done: remaining == 0, ReduceSent: reduceSent}
			return nil
		}
		r, err := decodeRecent(rec)
		if err != nil {
			return err
		}
		// A conversion (a given-up part completed) ends no part: it moves
		// neither the last end nor the rate.
		r.add(unixMinute(now), ended)
		lastEnded := int64(0)
		if ended > 0 {
			lastEnded = now.UnixMilli()
		}
		wasDone := remaining == 0
		remaining -= ended
		givenUp -= converted
		if _, err := tx.StmtContext(ctx, s.putJob).ExecContext(ctx, remaining, givenUp, lastEnded, r.encode(), jobID); err != nil {
			return err
		}
		c = backends.Completion{Finisher: remaining == 0 && !wasDone, Done: remaining == 0, ReduceSent: reduceSent, Completed: int(completed)}
		if c.Finisher {
			_, err = sweep(ctx, tx, now, sweepJobs)
		}
		return err
	})
	if err != nil {
		return backends.Completion{}, err
	}
	return c, nil
}

// jsonInts is ps as a JSON array, for json_each.
func jsonInts(ps []int64) string {
	b := make([]byte, 0, len(ps)*6+2)
	b = append(b, '[')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, p, 10)
	}
	return string(append(b, ']'))
}

// readShard reads shard's bitmap inside tx: all clear when it has no row.
func (s *Store) readShard(ctx context.Context, tx *sql.Tx, jobID string, shard int64) ([]byte, error) {
	var bits []byte
	err := tx.StmtContext(ctx, s.selShard).QueryRowContext(ctx, jobID, shard).Scan(&bits)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return make([]byte, shardBytes), nil
	case err != nil:
		return nil, err
	case len(bits) != shardBytes:
		return nil, fmt.Errorf("shard %d holds %d bytes, want %d: the database is damaged", shard, len(bits), shardBytes)
	}
	return bits, nil
}
