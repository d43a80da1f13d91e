package dynamodb

import (
	"context"
	"fmt"

	"github.com/wp-tools/wp/backends"
)

// PartStates implements backends.Driver. A wp job: one strongly
// consistent read of each shard item the parts fall in (a batch inside one
// shard: 1 read unit), a part pending while its offset is in the shard's
// parts, given up while it is in gu, complete in neither, after a read of
// the job item (its total, layout and expiry). A legacy job: its item alone,
// whose parts and wpGivenUp sets tell.
func (st *Store) PartStates(ctx context.Context, jobID string, parts []int64) ([]backends.PartState, error) {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return nil, err
	}
	states := make([]backends.PartState, len(parts))
	if j.legacy {
		st.firstPart(ctx, j)
		for i, p := range parts {
			if p < 0 || p > j.total {
				return nil, fmt.Errorf("%w: part %d", backends.ErrPartRange, p)
			}
			switch {
			case nsContains(j.raw, attrParts, p):
				states[i] = backends.PartPending
			case nsContains(j.raw, attrGivenUp, p):
				states[i] = backends.PartGivenUp
			default:
				states[i] = backends.PartComplete
			}
		}
		return states, nil
	}
	if err := checkLayout(j); err != nil {
		return nil, err
	}
	keys := map[int64]string{}
	var ids []string
	for _, p := range parts {
		if p < 0 || p >= j.total {
			return nil, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, j.total-1)
		}
		s := p / j.shardSize
		if _, ok := keys[s]; !ok {
			keys[s] = shardKey(jobID, s)
			ids = append(ids, keys[s])
		}
	}
	shards, err := st.getMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		sh, ok := shards[keys[p/j.shardSize]]
		if !ok {
			return nil, fmt.Errorf("shard item %s of job %s is missing", keys[p/j.shardSize], jobID)
		}
		off := p % j.shardSize
		switch {
		case nsContains(sh, attrParts, off):
			states[i] = backends.PartPending
		case nsContains(sh, attrGU, off):
			states[i] = backends.PartGivenUp
		default:
			states[i] = backends.PartComplete
		}
	}
	return states, nil
}
