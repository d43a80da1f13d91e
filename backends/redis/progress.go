package redis

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wp-tools/wp/backends"
)

// endedLua is the part of every script that ends parts (completeScript,
// giveUpScript): ended(n, exp) records that n parts ended now, by the
// server's clock, in the job hash (KEYS[1]):
//
//   - ended: the time, unix ms (Status.LastEnded);
//   - r:<unix minute>: HINCRBY by n, one field a minute (RecentEnded).
//
// When that HINCRBY creates its field, this is the minute's first ending
// for the job, and only then (at most once a minute per job) the script
// also drops every r: field outside the last backends.RecentMinutes
// minutes (HKEYS of the job hash: a few dozen fields), so the hash holds
// at most RecentMinutes of them; sets recent_since with HSETNX (a job
// written by an older wp starts counting here; CreateJob sets it to the
// creation time); and gives the done bitmap (KEYS[2]) the job's expiry
// exp (unix seconds, or false): the first ending of a job is always the
// first of its minute, and it is the one that creates the bitmap, so the
// bitmap never outlives the job. A clock that went back leaves r: fields
// in the future; they are dropped as well.
var endedLua = `
local function ended(n, exp)
  local t = redis.call('TIME')
  local sec = tonumber(t[1])
  local ms = string.format('%d', sec * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('HSET', KEYS[1], 'ended', ms)
  local m = math.floor(sec / 60)
  if redis.call('HINCRBY', KEYS[1], 'r:' .. string.format('%d', m), n) ~= n then return end
  for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(k, 1, 2) == 'r:' then
      local km = tonumber(string.sub(k, 3))
      if km and (km <= m - ` + recentMinutesLua + ` or km > m) then redis.call('HDEL', KEYS[1], k) end
    end
  end
  redis.call('HSETNX', KEYS[1], 'recent_since', ms)
  if exp and exp ~= '' then redis.call('EXPIREAT', KEYS[2], exp) end
end
`

var recentMinutesLua = strconv.Itoa(backends.RecentMinutes)

// recentPrefix starts the job hash's per-minute counts (endedLua).
const recentPrefix = "r:"

// progress fills st's LastEnded, RecentEnded and RecentWindow from the job
// hash h. now is the server's clock; the zero time leaves the recent
// count out (RecentWindow 0, as Peek may). A job written by an older wp
// that no part has ended in since has no recent_since: no count
// (RecentWindow 0), and no LastEnded.
func progress(st *backends.Status, h map[string]string, now time.Time) error {
	if v := h["ended"]; v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("job hash %s has a bad ended %q", jobKey(st.ID), v)
		}
		st.LastEnded = time.UnixMilli(ms)
	}
	v := h["recent_since"]
	if now.IsZero() || v == "" {
		return nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("job hash %s has a bad recent_since %q", jobKey(st.ID), v)
	}
	first := now.Unix()/60 - backends.RecentMinutes + 1
	start := time.Unix(first*60, 0)
	if since := time.UnixMilli(ms); since.After(start) {
		start = since
	}
	for k, v := range h {
		m, ok := strings.CutPrefix(k, recentPrefix)
		if !ok {
			continue
		}
		// Minutes after now's count too: another node's clock (List's)
		// may be a little behind the job's master's.
		if min, err := strconv.ParseInt(m, 10, 64); err == nil && min >= first {
			n, _ := strconv.ParseInt(v, 10, 64)
			st.RecentEnded += n
		}
	}
	st.RecentWindow = max(now.Sub(start), time.Millisecond)
	return nil
}

// throttled wraps a BUSY reply (the server is running a script past
// busy-reply-threshold, and refuses every other command until it ends)
// with backends.ErrThrottled: the command was not run.
func throttled(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "BUSY ") {
		return fmt.Errorf("%w (%w)", err, backends.ErrThrottled)
	}
	return err
}

// wrapBusy is throttled for a method's named error, deferred.
func wrapBusy(err *error) { *err = throttled(*err) }
