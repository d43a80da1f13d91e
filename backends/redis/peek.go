package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// Peek is Status without the recent count (RecentWindow 0, as the
// contract allows): one HGETALL, exact whatever the job's size, with no
// TIME beside it.
//
// With min_replicas, a job that has failed, has no part pending or has its
// reduce sent is one that wp run acts on without a write of its own (it
// skips the part, or finds the reduce sent, and succeeds), so Peek first
// makes sure that state is on enough replicas: it writes the job's
// remaining count again and waits (WAIT), and returns ErrReplication if
// the replicas fall short. A running job costs no more than the HGETALL.
func (s *Store) Peek(ctx context.Context, jobID string) (_ backends.Status, err error) {
	defer wrapBusy(&err)
	h, err := s.c.HGetAll(ctx, jobKey(jobID)).Result()
	if err != nil {
		return backends.Status{}, err
	}
	if len(h) == 0 {
		return backends.Status{}, backends.ErrNotFound
	}
	st, err := statusFromHash(jobID, h, time.Time{})
	if err != nil || s.minReplicas == 0 || !(st.Failed || st.Remaining == 0 || st.ReduceSent) {
		return st, err
	}
	res := s.write(ctx, barrierScript, []string{jobKey(jobID)})
	n, err := res.cmd.Int64()
	switch {
	case err != nil:
		return backends.Status{}, err
	case n == codeNotFound:
		return backends.Status{}, backends.ErrNotFound
	case res.waitErr != nil:
		return backends.Status{}, res.waitErr
	}
	return st, nil
}

// barrierScript: KEYS job. Writes remaining again with its own value (a
// write for WAIT to cover). Returns -1, or 1.
var barrierScript = goredis.NewScript(`
local r = redis.call('HGET', KEYS[1], 'remaining')
if not r then return -1 end
redis.call('HSET', KEYS[1], 'remaining', r)
return 1
`)
