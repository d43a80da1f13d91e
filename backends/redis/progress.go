package redis

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wp-tools/wp/backends"
)

// endedLua is the part of every script that ends parts (completeScript,
// giveUpScript). Its ended(total, rem0, last, exp) is called once by a
// call that ends parts, before the call writes its counts: total and rem0
// are the job's total and remaining before the call, last its ended field
// (unix ms, or false), exp its expires (unix seconds, or false). It
// returns the server's time (unix ms), which the caller writes as ended in
// the same HSET as remaining (Status.LastEnded).
//
// The recent count needs no write of its own on most calls: the job's
// ends so far, E = total - remaining + ends_extra, grows by one for each
// part that ends (ends_extra counts the ends remaining does not show: a
// retried part, which goes back to pending; a given-up part completed is
// no end), so the parts ended since any moment are E now minus E then.
// The first ending of a minute (the one whose minute differs from last's)
// writes E as it was before the call into r:<unix minute>; Status then
// counts RecentEnded as E now minus the r: field of the earliest minute of
// its window that has one (none: no part ended in the window). That call
// (at most one a minute per job) also drops the r: fields out of the
// last backends.RecentMinutes minutes (HKEYS of the job hash: a few dozen
// fields), so the hash holds at most RecentMinutes of them; sets
// recent_since with HSETNX (a job written by an older wp counts from its
// first ending here; CreateJob sets it to the creation time); and gives
// the done bitmap (KEYS[2]) the job's expiry: the first ending of a job is
// always the first of its minute (it has no ended field), and it is the
// SETBIT that creates the bitmap, so the bitmap never lacks the expiry. A
// clock that went back leaves r: fields in the future; they are dropped
// as well.
var endedLua = `
local function ended(total, rem0, last, exp)
  local t = redis.call('TIME')
  local sec = tonumber(t[1])
  local ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
  local m = math.floor(sec / 60)
  if last and math.floor(tonumber(last) / 60000) == m then return ms end
  local e = total - rem0 + tonumber(redis.call('HGET', KEYS[1], 'ends_extra') or '0')
  for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(k, 1, 2) == 'r:' then
      local km = tonumber(string.sub(k, 3))
      if km and (km <= m - ` + recentMinutesLua + ` or km > m) then redis.call('HDEL', KEYS[1], k) end
    end
  end
  redis.call('HSET', KEYS[1], 'r:' .. m, e)
  redis.call('HSETNX', KEYS[1], 'recent_since', ms)
  if exp then redis.call('EXPIREAT', KEYS[2], exp) end
  return ms
end
`

var recentMinutesLua = strconv.Itoa(backends.RecentMinutes)

// recentPrefix starts the job hash's per-minute fields (endedLua).
const recentPrefix = "r:"

// progress fills st's LastEnded, RecentEnded and RecentWindow from the job
// hash h (st's Total and Remaining read already). now is the server's
// clock; the zero time leaves the recent count out (RecentWindow 0, as
// Peek may). A job written by an older wp that no part has ended in since
// has no recent_since: no count (RecentWindow 0), and no LastEnded.
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
	var extra int64
	if v := h["ends_extra"]; v != "" {
		if extra, err = strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("job hash %s has a bad ends_extra %q", jobKey(st.ID), v)
		}
	}
	first := now.Unix()/60 - backends.RecentMinutes + 1
	start := time.Unix(first*60, 0)
	if since := time.UnixMilli(ms); since.After(start) {
		start = since
	}
	// The earliest minute of the window with a snapshot of the job's
	// ends; minutes after now's count too: another node's clock (List's)
	// may be a little behind the job's master's.
	earliest, then := int64(math.MaxInt64), int64(0)
	for k, v := range h {
		m, ok := strings.CutPrefix(k, recentPrefix)
		if !ok {
			continue
		}
		if min, err := strconv.ParseInt(m, 10, 64); err == nil && min >= first && min < earliest {
			if e, err := strconv.ParseInt(v, 10, 64); err == nil {
				earliest, then = min, e
			}
		}
	}
	if earliest != math.MaxInt64 {
		st.RecentEnded = max(st.Total-st.Remaining+extra-then, 0)
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
