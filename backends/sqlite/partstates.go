package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/wp-tools/wp/backends"
)

// PartStates implements backends.Driver: one read of each shard row the
// parts fall in, and one of the given-up rows among them, in one read
// transaction (a consistent view).
func (s *Store) PartStates(ctx context.Context, jobID string, parts []int64) ([]backends.PartState, error) {
	var states []backends.PartState
	err := retry(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var total, expires int64
		if err := tx.QueryRowContext(ctx, `SELECT total, expires_at FROM jobs WHERE id = ?`, jobID).Scan(&total, &expires); err == sql.ErrNoRows {
			return backends.ErrNotFound
		} else if err != nil {
			return err
		}
		if expired(expires, time.Now()) {
			return backends.ErrNotFound
		}
		lo, hi := int64(-1), int64(-1)
		for _, p := range parts {
			if p < 0 || p >= total {
				return fmt.Errorf("%w: part %d: the job has parts 0 to %d", backends.ErrPartRange, p, total-1)
			}
			if lo < 0 || p < lo {
				lo = p
			}
			hi = max(hi, p)
		}
		shards := map[int64][]byte{}
		for _, p := range parts {
			sh := p / partsPerShard
			if _, ok := shards[sh]; ok {
				continue
			}
			bits, err := s.readShard(ctx, tx, jobID, sh)
			if err != nil {
				return err
			}
			shards[sh] = bits
		}
		gave := map[int64]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT part FROM given_up WHERE job_id = ? AND part BETWEEN ? AND ?`, jobID, lo, hi)
		if err != nil {
			return err
		}
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			gave[p] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
		states = make([]backends.PartState, len(parts))
		for i, p := range parts {
			bit := p % partsPerShard
			switch {
			case gave[p]:
				states[i] = backends.PartGivenUp
			case shards[p/partsPerShard][bit/8]&(1<<(bit%8)) != 0:
				states[i] = backends.PartComplete
			default:
				states[i] = backends.PartPending
			}
		}
		return nil
	})
	return states, err
}
