package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// setExpiryScript: KEYS job, done, gu, gub, and on a standalone server the
// index; ARGV at (unix seconds, 0 for never), job id, touch. Returns {-1},
// or {1, created} when the expiry is set, {2, created} when at has passed
// and the job is removed (its index entry too when the index is among the
// keys). Every key of the job gets the expiry (EXPIREAT; PERSIST for
// never), and the hash keeps it (expires) for the scripts that create
// keys later (endedLua, giveUpScript). With touch "1" (min_replicas) a
// call that changes nothing still writes, for WAIT to cover (wait.go).
var setExpiryScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local c = tonumber(redis.call('HGET', KEYS[1], 'created') or '0') or 0
local at = tonumber(ARGV[1])
if at == 0 then
  redis.call('HDEL', KEYS[1], 'expires')
  for i = 1, 4 do redis.call('PERSIST', KEYS[i]) end
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'remaining', redis.call('HGET', KEYS[1], 'remaining')) end
  return {1, c}
end
local t = redis.call('TIME')
if at <= tonumber(t[1]) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[2]) end
  return {2, c}
end
redis.call('HSET', KEYS[1], 'expires', ARGV[1])
for i = 1, 4 do redis.call('EXPIREAT', KEYS[i], ARGV[1]) end
return {1, c}
`)

// SetExpiry implements backends.Driver with setExpiryScript: one script on
// the job's keys. Redis removes expired keys itself, so a job past its
// expiry is gone for every method at once, and its id free; its index
// entry is dropped by the next List that reaches it. A time already past
// removes the job now, and its index entry (on a cluster, with one more
// call to the index's master).
func (s *Store) SetExpiry(ctx context.Context, jobID string, at time.Time) (err error) {
	defer wrapBusy(&err)
	var sec int64
	if !at.IsZero() {
		sec = max(backends.ExpirySecond(at).Unix(), 1) // before 1970: long past
	}
	keys := jobKeys(jobID)
	if s.cluster == nil {
		keys = append(keys, indexKey)
	}
	r, err := s.runWrite(ctx, setExpiryScript, keys, sec, jobID, s.touch()).Int64Slice()
	if err != nil {
		return err
	}
	if len(r) > 0 && r[0] == codeNotFound {
		return backends.ErrNotFound
	}
	if len(r) != 2 || (r[0] != 1 && r[0] != 2) {
		return fmt.Errorf("unexpected reply %v from redis", r)
	}
	if r[0] == 2 && s.cluster != nil {
		return s.indexDrop(ctx, true, indexEntry{id: jobID, score: float64(r[1])})
	}
	return nil
}
