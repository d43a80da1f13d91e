package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// partStatesScript: KEYS job, done, gub; ARGV the parts. Returns {-1} (no
// job), {-3} (a part out of range), or {0, state...}: 0 pending, 1
// complete, 2 given up. A part is given up when its gub bit is set (it has
// ended: its done bit is set too), complete when only its done bit is.
var partStatesScript = goredis.NewScript(`
local total = redis.call('HGET', KEYS[1], 'total')
if not total then return {-1} end
total = tonumber(total)
local out = {0}
for i = 1, #ARGV do
  local p = tonumber(ARGV[i])
  if not p or p < 0 or p >= total then return {-3} end
  local st = 0
  if redis.call('GETBIT', KEYS[3], p) == 1 then st = 2
  elseif redis.call('GETBIT', KEYS[2], p) == 1 then st = 1 end
  out[#out + 1] = st
end
return out
`)

// PartStates implements backends.Driver: one script call, reading the
// job's bitmaps (its keys share a slot).
func (s *Store) PartStates(ctx context.Context, jobID string, parts []int64) (_ []backends.PartState, err error) {
	defer wrapBusy(&err)
	args := make([]any, len(parts))
	for i, p := range parts {
		args[i] = strconv.FormatInt(p, 10)
	}
	vals, err := partStatesScript.Run(ctx, s.c, []string{jobKey(jobID), doneKey(jobID), gubKey(jobID)}, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	switch {
	case len(vals) == 0:
		return nil, fmt.Errorf("states script: empty reply")
	case vals[0] == -1:
		return nil, backends.ErrNotFound
	case vals[0] == -3:
		return nil, backends.ErrPartRange
	case len(vals) != len(parts)+1:
		return nil, fmt.Errorf("states script: %d states for %d parts", len(vals)-1, len(parts))
	}
	states := make([]backends.PartState, len(parts))
	for i, v := range vals[1:] {
		states[i] = backends.PartState(v)
	}
	return states, nil
}
