package dynamodb

import (
	"context"

	"github.com/wp-tools/wp/backends"
)

// Peek reads the job item only (one GetItem of about 1 KB plus the
// metadata), where Status also reads every pending group and shard. For a
// wp job Remaining is then an upper bound from the pending groups
// (Estimated; 0 once the groups set is gone), LastEnded is as of the last
// group that emptied, and RecentEnded is counted (RecentWindow set) only
// once the job is done, when every counter has reached the job item; a
// legacy job's parts set is on the item, so its Remaining is exact. Like
// every read of a legacy item, it records the job's numbering the first
// time the pending set tells it (one write, once per job: see the package
// comment), and puts a job that lacks them in the wp-jobs index.
func (st *Store) Peek(ctx context.Context, jobID string) (backends.Status, error) {
	r := newReads(ctx)
	j, err := st.readJob(ctx, jobID, r)
	if err != nil {
		return backends.Status{}, err
	}
	s, err := st.toStatus(ctx, j, jobProgress(j, false), statusWrites)
	s.ReadUnits = r.total()
	return s, err
}
