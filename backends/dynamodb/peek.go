package dynamodb

import (
	"context"

	"github.com/wp-tools/wp/backends"
)

// Peek reads the job item only (one GetItem of about 1 KB plus the
// metadata), where Status also reads every pending group and shard. For a
// wp job Remaining is then an upper bound from the pending groups (0 once the
// groups set is gone); a legacy job's parts set is on the item, so its
// Remaining is exact. Like every read of a legacy item, it records the
// job's numbering the first time the pending set tells it (one write, once
// per job: see the package comment).
func (st *Store) Peek(ctx context.Context, jobID string) (backends.Status, error) {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return backends.Status{}, err
	}
	var rem int64
	switch {
	case j.legacy:
		rem = nsLen(j.raw, attrParts)
	case j.groupsLeft:
		gs, _ := getNS(j.raw, attrGroups)
		rem = min(j.total, max(1, int64(len(gs))*j.groupSize*j.shardSize))
	}
	return st.toStatus(ctx, j, rem)
}
