package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// givenUpBatch is how many given-up parts GivenUp reads with one HMGET.
const givenUpBatch = 500

// runWrite runs a script that writes: every write of the store goes through
// here, so that what a write must do besides (waiting for replicas) is done
// in one place. With min_replicas, a reply that not enough replicas
// acknowledged in time carries an error wrapping ErrReplication instead
// (wait.go).
func (s *Store) runWrite(ctx context.Context, sc *goredis.Script, keys []string, args ...any) *goredis.Cmd {
	res := s.write(ctx, sc, keys, args...)
	if res.cmd.Err() == nil && res.waitErr != nil {
		res.cmd.SetErr(res.waitErr)
	}
	return res.cmd
}

// guInfo is a given-up part's details as the gu hash holds them (JSON).
type guInfo struct {
	ExitCode     int    `json:"c"`
	Signal       string `json:"s,omitempty"`
	ReceiveCount int    `json:"r"`
	At           int64  `json:"t"` // Unix milliseconds
	Stderr       string `json:"e,omitempty"`
	Reason       string `json:"w,omitempty"` // why, when not for the exit
}

// giveUpScript: KEYS job, done, gu, gub; ARGV part, details (JSON), touch
// (as completeScript's: with min_replicas, a duplicate or a failed job
// writes a field again with its own value, for WAIT to cover). Returns
// {code} on error, else {0, finisher, done, duplicate, reduce_sent,
// failed}. A part whose done bit is set has ended (complete or given up):
// a duplicate, nothing written. Otherwise the bit is set as for a
// completion, the details and the gub bit are recorded, remaining and
// given_up move, and when given_up passes tol_limit the job fails with the
// reason CreateJob stored (the count is then always tol_limit+1). Jobs
// written by an older wp have no tolerance fields: a limit of 0. The part
// has ended: ended() records when (endedLua); the gu hash and gub bitmap,
// which this script may have just created, get the job's expiry.
var giveUpScript = goredis.NewScript(endedLua + `
local h = redis.call('HMGET', KEYS[1], 'total', 'failed', 'reduce_sent', 'remaining', 'tol_limit', 'tol_reason', 'expires', 'ended')
if not h[1] then return {-1} end
if h[2] == '1' then
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'failed', '1') end
  return {-2}
end
local p = tonumber(ARGV[1])
if p < 0 or p >= tonumber(h[1]) then return {-3} end
local rs = 0
if h[3] == '1' then rs = 1 end
if redis.call('SETBIT', KEYS[2], p, 1) == 1 then
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'remaining', h[4]) end
  local done = 0
  if tonumber(h[4]) == 0 then done = 1 end
  return {0, 0, done, 1, rs, 0}
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SETBIT', KEYS[4], p, 1)
if h[7] then
  redis.call('EXPIREAT', KEYS[3], h[7])
  redis.call('EXPIREAT', KEYS[4], h[7])
end
redis.call('HSET', KEYS[1], 'ended', ended(tonumber(h[1]), tonumber(h[4]), h[8], h[7]))
local rem = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
local gu = redis.call('HINCRBY', KEYS[1], 'given_up', 1)
local failed = 0
if gu > tonumber(h[5] or '0') then
  local reason = h[6]
  if not reason or reason == '' then reason = gu .. ' parts given up (tolerance 0)' end
  redis.call('HSET', KEYS[1], 'failed', '1', 'failed_by_tolerance', '1', 'error', reason)
  failed = 1
end
local fin = 0
if rem == 0 then fin = 1 end
return {0, fin, fin, 0, rs, failed}
`)

// retryScript: KEYS job, done, gu, gub; ARGV parts (decimal, separated by
// commas). Returns {code} on error, else {0, moved part...}. Each part
// that has a gu entry loses it and its done and gub bits (pending again);
// then remaining and given_up move by the number moved, the reduce state
// is cleared, and a job failed by its tolerance runs again once given_up
// is within tol_limit; ends_extra rises by the number moved, so that the
// job's count of ends (endedLua) does not fall. All in one script, so a second Retry or a
// Complete that converted the part first finds no gu entry and moves
// nothing twice, and the job's counts never show half a retry.
var retryScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'failed', 'failed_by_tolerance', 'given_up', 'tol_limit')
if not h[1] then return {-1} end
if h[2] == '1' and h[3] ~= '1' then return {-2} end
local res = {0}
if tonumber(h[4] or '0') == 0 then return res end
local total = tonumber(h[1])
for f in string.gmatch(ARGV[1], '%d+') do
  local p = tonumber(f)
  if p < total and redis.call('HDEL', KEYS[3], f) == 1 then
    redis.call('SETBIT', KEYS[2], p, 0)
    redis.call('SETBIT', KEYS[4], p, 0)
    res[#res + 1] = p
  end
end
local n = #res - 1
if n == 0 then return res end
redis.call('HINCRBY', KEYS[1], 'remaining', n)
redis.call('HINCRBY', KEYS[1], 'ends_extra', n)
local gu = redis.call('HINCRBY', KEYS[1], 'given_up', -n)
redis.call('HDEL', KEYS[1], 'reduce_sent', 'reduced', 'claim', 'claim_exp')
if h[3] == '1' and gu <= tonumber(h[5] or '0') then
  redis.call('HDEL', KEYS[1], 'failed', 'failed_by_tolerance', 'error')
end
return res
`)

// scriptErr maps a script's error code.
func scriptErr(r []int64) error {
	if len(r) == 0 {
		return errors.New("empty reply from redis")
	}
	switch r[0] {
	case 0:
		return nil
	case codeNotFound:
		return backends.ErrNotFound
	case codeFailed:
		return backends.ErrJobFailed
	case codePartRange:
		return backends.ErrPartRange
	default:
		return fmt.Errorf("unexpected reply %v from redis", r)
	}
}

// GiveUp implements backends.Driver with giveUpScript.
func (s *Store) GiveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo) (_ backends.Completion, err error) {
	defer wrapBusy(&err)
	details, err := json.Marshal(guInfo{ExitCode: info.ExitCode, Signal: info.Signal, ReceiveCount: info.ReceiveCount,
		At: info.At.UnixMilli(), Stderr: info.Stderr, Reason: info.Reason})
	if err != nil {
		return backends.Completion{}, err
	}
	r, err := s.runWrite(ctx, giveUpScript, jobKeys(jobID), part, details, s.touch()).Int64Slice()
	if err != nil {
		return backends.Completion{}, err
	}
	if err := scriptErr(r); err != nil {
		return backends.Completion{}, err
	}
	if len(r) != 6 {
		return backends.Completion{}, fmt.Errorf("unexpected reply %v from redis", r)
	}
	return backends.Completion{
		Finisher:   r[1] == 1,
		Done:       r[2] == 1,
		Duplicate:  r[3] == 1,
		ReduceSent: r[4] == 1,
		Failed:     r[5] == 1,
	}, nil
}

// GivenUp implements backends.Driver: it walks the gub bitmap in order,
// pendingChunk bytes at a time, and reads the details of the parts it
// finds givenUpBatch at a time (HMGET gu), so memory does not grow with
// the job. A part converted or retried while GivenUp runs may or may not
// be listed.
func (s *Store) GivenUp(ctx context.Context, jobID string, fn func(backends.GivenUpPart) error) (err error) {
	defer wrapBusy(&err)
	total, err := s.total(ctx, jobID)
	if err != nil {
		return err
	}
	batch := make([]int64, 0, givenUpBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		fields := make([]string, len(batch))
		for i, p := range batch {
			fields[i] = strconv.FormatInt(p, 10)
		}
		vals, err := s.c.HMGet(ctx, guKey(jobID), fields...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue // converted or retried since the bitmap was read
			}
			var g guInfo
			if err := json.Unmarshal([]byte(str), &g); err != nil {
				return fmt.Errorf("%s field %s is not what wp writes: %w", guKey(jobID), fields[i], err)
			}
			if err := fn(backends.GivenUpPart{Part: batch[i], GiveUpInfo: backends.GiveUpInfo{
				ExitCode: g.ExitCode, Signal: g.Signal, ReceiveCount: g.ReceiveCount, At: time.UnixMilli(g.At), Stderr: g.Stderr, Reason: g.Reason,
			}}); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	nbytes := (total + 7) / 8
	for off := int64(0); off < nbytes; off += pendingChunk {
		end := min(off+pendingChunk, nbytes) - 1
		chunk, err := s.c.GetRange(ctx, gubKey(jobID), off, end).Bytes()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		if len(chunk) == 0 {
			break // the bitmap ends here: no given-up part beyond
		}
		for i, b := range chunk {
			for bit := int64(0); b != 0 && bit < 8; bit++ {
				if b&(0x80>>bit) == 0 {
					continue
				}
				if p := (off+int64(i))*8 + bit; p < total {
					batch = append(batch, p)
				}
				if len(batch) == givenUpBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	return flush()
}

// total reads the job's total, or ErrNotFound.
func (s *Store) total(ctx context.Context, jobID string) (int64, error) {
	ts, err := s.c.HGet(ctx, jobKey(jobID), "total").Result()
	if errors.Is(err, goredis.Nil) {
		return 0, backends.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	total, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("job hash %s has a bad total %q", jobKey(jobID), ts)
	}
	return total, nil
}

// Retry implements backends.Driver with retryScript: one script whatever
// the number of parts (a million parts take Redis about a second).
func (s *Store) Retry(ctx context.Context, jobID string, parts []int64) (_ []int64, err error) {
	defer wrapBusy(&err)
	var b strings.Builder
	for _, p := range parts {
		if p < 0 || p >= maxParts {
			continue // no such part: nothing to move
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(p, 10))
	}
	r, err := s.runWrite(ctx, retryScript, jobKeys(jobID), b.String()).Int64Slice()
	if err != nil {
		return nil, err
	}
	if err := scriptErr(r); err != nil {
		return nil, err
	}
	if len(r) == 1 {
		return nil, nil
	}
	return r[1:], nil
}
