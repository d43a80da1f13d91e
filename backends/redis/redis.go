package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// Defaults applied when the URL does not set them; the package comment
// explains them.
const (
	defaultDialTimeout  = 5 * time.Second
	defaultReadTimeout  = 5 * time.Second
	defaultWriteTimeout = 5 * time.Second
	defaultMaxRetries   = 2
	defaultDialAttempts = 2
	minPoolSize         = 64
	openPingTimeout     = 10 * time.Second

	// pendingChunk is how many bytes of the bitmap Pending reads at once.
	pendingChunk = 64 << 10
	// listPage is the COUNT hint of List's SCAN.
	listPage = 1000
	// maxParts is the most bits a Redis string holds.
	maxParts = 1 << 32
)

func init() {
	backends.Register("redis", open)
	backends.Register("rediss", open)
	// go-redis logs dial failures to stderr on its own; wp returns them
	// as errors with context instead, and its stderr belongs to the
	// worker's output.
	goredis.SetLogger(quietLogger{})
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Store is the Redis progress store.
type Store struct {
	// c is a *goredis.Client for a standalone server, or cluster.
	c goredis.UniversalClient
	// cluster is nil unless the URL names a node of a Redis Cluster.
	cluster *goredis.ClusterClient
	// minReplicas > 0: writes wait for that many replicas (wait.go).
	minReplicas    int
	replicaTimeout time.Duration
	batch          *batcher
}

var _ backends.Driver = (*Store)(nil)

func open(ctx context.Context, u *url.URL) (backends.Driver, error) {
	s, err := Open(ctx, u)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Open connects to the Redis server or cluster the URL names and checks
// that it answers (and accepts the password); doc.go says how a cluster is
// recognised.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	opt, err := parseOptions(u)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, openPingTimeout)
	defer cancel()
	c, cluster, err := opt.connect(pctx)
	if err != nil {
		return nil, fmt.Errorf("connect to redis at %s (db %d): %w (check the store URL, its password, and that the server is up)", strings.Join(opt.seeds, ", "), opt.node.DB, err)
	}
	s := &Store{c: c, cluster: cluster, minReplicas: opt.minReplicas, replicaTimeout: opt.replicaTimeout}
	s.batch = newBatcher(s)
	return s, nil
}

// Cluster reports whether the store talks to a Redis Cluster.
func (s *Store) Cluster() bool { return s.cluster != nil }

func jobKey(id string) string  { return "wp:{" + id + "}:job" }
func doneKey(id string) string { return "wp:{" + id + "}:done" }

// guKey is the hash of given-up parts' details, part -> JSON (giveup.go).
func guKey(id string) string { return "wp:{" + id + "}:gu" }

// gubKey is the bitmap of given-up parts: bit p set = part p given up.
func gubKey(id string) string { return "wp:{" + id + "}:gub" }

// jobKeys are the keys of one job that Complete, GiveUp and Retry touch,
// in the order their scripts take them (KEYS[1] to KEYS[4]).
func jobKeys(id string) []string {
	return []string{jobKey(id), doneKey(id), guKey(id), gubKey(id)}
}

// listPattern matches every job hash (see jobKey).
const listPattern = "wp:{*}:job"

// indexKey is the sorted set of every job (list.go): member the job id,
// score its creation time (unix ms).
const indexKey = "wp:jobs"

// indexedKey, once set, says that the jobs an older wp wrote (with no
// index entry) have been added to indexKey (list.go).
const indexedKey = "wp:jobs:indexed"

// idFromJobKey is jobKey's inverse.
func idFromJobKey(k string) (string, bool) {
	const pre, suf = "wp:{", "}:job"
	if len(k) <= len(pre)+len(suf) || k[:len(pre)] != pre || k[len(k)-len(suf):] != suf {
		return "", false
	}
	return k[len(pre) : len(k)-len(suf)], true
}

// Script results shared by the scripts: codeNotFound when the job hash does
// not exist.
const (
	codeNotFound  = -1
	codeFailed    = -2
	codePartRange = -3
)

// createScript: KEYS job, done, gu, gub, and on a standalone server the
// index (indexKey); ARGV total, metadata, tolerance, tolerance limit,
// tolerance reason, reduce on failure ("1" or "0"), digest, created (unix
// ms, or "" for the server's TIME), expire after (ms, 0 for never), batch,
// batch bytes, job id. Returns {1, created}, or {0, the existing job's
// created} when the job exists. Keys left by a job of the same id that was
// deleted half way, or expired, are removed first. With the index among
// its keys (standalone), the index entry is written in the same atomic
// script; on a cluster CreateJob has written it before (list.go).
var createScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, tonumber(redis.call('HGET', KEYS[1], 'created') or '0') or 0} end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local ms = ARGV[8]
if ms == '' then
  local t = redis.call('TIME')
  ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'remaining', ARGV[1], 'meta', ARGV[2], 'created', ms, 'recent_since', ms,
  'tolerance', ARGV[3], 'tol_limit', ARGV[4], 'tol_reason', ARGV[5], 'reduce_on_failure', ARGV[6], 'digest', ARGV[7],
  'batch', ARGV[10], 'batch_bytes', ARGV[11])
local after = tonumber(ARGV[9])
if after > 0 then
  local exp = string.format('%d', math.floor((tonumber(ms) + after + 999) / 1000))
  redis.call('HSET', KEYS[1], 'expires', exp)
  redis.call('EXPIREAT', KEYS[1], exp)
end
if KEYS[5] then redis.call('ZADD', KEYS[5], ms, ARGV[12]) end
return {1, tonumber(ms)}
`)

// completeScript: KEYS job, done, gu, gub; ARGV touch, then the parts
// (one for Complete, a batch for CompleteParts). Returns {code} on error,
// else {0, finisher, done, duplicate, reduce_sent, completed}. Every part
// is checked first (a part out of range records nothing); then each
// part's bit is set, and a part whose bit was clear was pending. A part
// whose bit was set has ended; only when the job has given-up parts
// (given_up > 0) is the gu hash consulted, so the common duplicate costs
// what it did: a given-up part is then converted (gu entry and gub bit
// removed, given_up decremented), neither duplicate nor finisher. A call
// that ended parts writes remaining (the script is atomic: the value read
// less the parts it completed), the time from ended() (endedLua) and
// given_up in one HSET (a conversion alone writes given_up only: it ends
// no part); the call that takes remaining to 0 is the
// finisher. With touch "1" (min_replicas) a call that writes nothing (a
// duplicate, a part of a failed job) writes a field again with its own
// value, so that WAIT covers what the reply reports (wait.go).
var completeScript = goredis.NewScript(endedLua + `
local h = redis.call('HMGET', KEYS[1], 'total', 'failed', 'reduce_sent', 'remaining', 'given_up', 'expires', 'ended')
if not h[1] then return {-1} end
if h[2] == '1' then
  if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'failed', '1') end
  return {-2}
end
local total = tonumber(h[1])
local n = #ARGV
for i = 2, n do
  local p = tonumber(ARGV[i])
  if not p or p < 0 or p >= total then return {-3} end
end
local gu = tonumber(h[5] or '0')
local new, conv = 0, 0
for i = 2, n do
  if redis.call('SETBIT', KEYS[2], ARGV[i], 1) == 0 then
    new = new + 1
  elseif gu > 0 and redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    redis.call('SETBIT', KEYS[4], ARGV[i], 0)
    conv = conv + 1
  end
end
local rem0 = tonumber(h[4])
local rem = rem0 - new
if new > 0 then
  local ms = ended(total, rem0, h[7], h[6])
  if conv > 0 then
    redis.call('HSET', KEYS[1], 'remaining', rem, 'ended', ms, 'given_up', gu - conv)
  else
    redis.call('HSET', KEYS[1], 'remaining', rem, 'ended', ms)
  end
elseif conv > 0 then
  -- A given-up part completed ends nothing: neither ended nor the count
  -- of ends moves.
  redis.call('HSET', KEYS[1], 'given_up', gu - conv)
elseif ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'remaining', h[4])
end
local rs, done, fin, dup = 0, 0, 0, 0
if h[3] == '1' then rs = 1 end
if rem == 0 then
  done = 1
  if new > 0 then fin = 1 end
end
if new + conv == 0 then dup = 1 end
return {0, fin, done, dup, rs, new + conv}
`)

// failScript: KEYS job; ARGV reason. Returns -1, or 1. A job that has
// failed already keeps its reason, but failed is written again so that a
// replication wait covers it (wait.go).
var failScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'failed')
if not h[1] then return -1 end
if h[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'failed', '1', 'error', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'failed', '1')
end
return 1
`)

// claimScript: KEYS job; ARGV token, lease ms, touch. Returns -1, 0 (not
// claimable) or 1 (claimed). A failed job is claimable only with
// reduce_on_failure. With touch "1" (min_replicas), an unclaimable job
// writes remaining again with its own value, so that WAIT covers the state
// that made it unclaimable (reduce sent, another claim) (wait.go).
var claimScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'remaining', 'failed', 'reduce_sent', 'claim', 'claim_exp', 'reduce_on_failure')
if not h[1] then return -1 end
local function no()
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'remaining', h[2]) end
  return 0
end
if h[4] == '1' then return no() end
if h[3] == '1' then
  if h[7] ~= '1' then return no() end
elseif tonumber(h[2]) ~= 0 then
  return no()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if h[5] and h[5] ~= '' and h[6] and tonumber(h[6]) > now then return no() end
redis.call('HSET', KEYS[1], 'claim', ARGV[1], 'claim_exp', string.format('%d', now + tonumber(ARGV[2])))
return 1
`)

// releaseScript: KEYS job; ARGV token. Returns -1, or 1.
var releaseScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'claim')
if not h[1] then return -1 end
if h[2] == ARGV[1] then redis.call('HDEL', KEYS[1], 'claim', 'claim_exp') end
return 1
`)

// sentScript: KEYS job. Returns -1, or 1.
var sentScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'reduce_sent', '1')
redis.call('HDEL', KEYS[1], 'claim', 'claim_exp')
return 1
`)

// reducedScript: KEYS job. Returns -1, or 1.
var reducedScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'reduced', '1')
return 1
`)

// deleteScript: KEYS job, done, gu, gub, and on a standalone server the
// index; ARGV job id. Returns -1, or the deleted job's created (unix ms, 0
// if unknown). With the index among its keys the entry goes in the same
// script; on a cluster Delete removes it after (list.go).
var deleteScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local c = tonumber(redis.call('HGET', KEYS[1], 'created') or '0') or 0
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[1]) end
return c
`)

// CreateJob implements backends.Store. On a standalone server it is one
// script (the job and its index entry together); on a cluster the index
// entry is written first, by the index's master (list.go).
func (s *Store) CreateJob(ctx context.Context, job backends.Job) (err error) {
	defer wrapBusy(&err)
	if job.Total < 1 || job.Total > maxParts {
		return fmt.Errorf("total %d parts is out of range: a Redis job has 1 to %d parts", job.Total, int64(maxParts))
	}
	if len(job.Metadata) > 0 && !json.Valid(job.Metadata) {
		return errors.New("metadata is not valid JSON")
	}
	limit := job.Tolerance.Limit(job.Total)
	// The job fails on the give-up that takes given_up past the limit,
	// and records none once failed, so its count is then always
	// limit+1: the reason is known now.
	reason := backends.ToleranceReason(limit+1, job.Tolerance, job.Total)
	rof := "0"
	if job.ReduceOnFailure {
		rof = "1"
	}
	keys := jobKeys(job.ID)
	created := ""
	if s.cluster == nil {
		keys = append(keys, indexKey)
	} else {
		ms, err := s.indexAdd(ctx, job.ID)
		if err != nil {
			return err
		}
		created = strconv.FormatInt(ms, 10)
	}
	expireAfter := int64(0)
	if job.ExpireAfter > 0 {
		expireAfter = max(job.ExpireAfter.Milliseconds(), 1)
	}
	r, err := s.runWrite(ctx, createScript, keys, job.Total, []byte(job.Metadata),
		job.Tolerance.String(), limit, reason, rof, job.Digest, created, expireAfter,
		job.Batch, job.BatchBytes, job.ID).Int64Slice()
	if err != nil {
		return err
	}
	if len(r) != 2 {
		return fmt.Errorf("unexpected reply %v from redis", r)
	}
	if r[0] == 0 {
		if created != "" {
			// The index entry just written is the existing job's
			// again.
			if err := s.indexRestore(ctx, job.ID, created, r[1]); err != nil {
				return fmt.Errorf("%w (and its index entry: %v)", backends.ErrExists, err)
			}
		}
		return backends.ErrExists
	}
	return nil
}

// Complete implements backends.Store.
func (s *Store) Complete(ctx context.Context, jobID string, part int64) (backends.Completion, error) {
	return s.complete(ctx, jobID, []any{part})
}

// CompleteParts implements backends.Driver: one script for the whole batch
// (the job's keys share a slot), pipelined with concurrent calls as
// Complete is (batch.go).
func (s *Store) CompleteParts(ctx context.Context, jobID string, parts []int64) (backends.Completion, error) {
	args := make([]any, len(parts))
	for i, p := range parts {
		args[i] = p
	}
	return s.complete(ctx, jobID, args)
}

// ShardSize implements backends.Driver: a job is one bitmap.
func (s *Store) ShardSize() int64 { return 0 }

func (s *Store) complete(ctx context.Context, jobID string, parts []any) (c backends.Completion, err error) {
	defer wrapBusy(&err)
	r, err := s.batch.complete(ctx, jobKeys(jobID), parts)
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
		Completed:  int(r[5]),
	}, nil
}

// Fail implements backends.Store.
func (s *Store) Fail(ctx context.Context, jobID, reason string) (err error) {
	defer wrapBusy(&err)
	return s.runSimple(ctx, failScript, []string{jobKey(jobID)}, reason)
}

// runSimple runs a script that returns -1 for an unknown job.
func (s *Store) runSimple(ctx context.Context, sc *goredis.Script, keys []string, args ...any) error {
	n, err := s.runWrite(ctx, sc, keys, args...).Int64()
	if err != nil {
		return err
	}
	if n == codeNotFound {
		return backends.ErrNotFound
	}
	return nil
}

// Status implements backends.Store: HGETALL and TIME in one pipeline to
// the job's master (one round trip), so that the recent count is read by
// the clock that wrote it.
func (s *Store) Status(ctx context.Context, jobID string) (st backends.Status, err error) {
	defer wrapBusy(&err)
	h, now, err := s.hashAndTime(ctx, jobKey(jobID))
	if err != nil {
		return backends.Status{}, err
	}
	if len(h) == 0 {
		return backends.Status{}, backends.ErrNotFound
	}
	return statusFromHash(jobID, h, now)
}

// hashAndTime reads the hash key and the server's clock from the key's
// master in one pipeline. When the cluster says the slot has moved, it
// reads them through the cluster client instead (the time from any node).
func (s *Store) hashAndTime(ctx context.Context, key string) (map[string]string, time.Time, error) {
	node, err := s.master(ctx, key)
	if err == nil {
		pipe := node.Pipeline()
		h := pipe.HGetAll(ctx, key)
		t := pipe.Time(ctx)
		if _, err = pipe.Exec(ctx); err == nil {
			return h.Val(), t.Val(), nil
		}
	}
	if s.cluster == nil || !isRedirect(err) {
		return nil, time.Time{}, err
	}
	h, err := s.c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, time.Time{}, err
	}
	t, err := s.c.Time(ctx).Result()
	if err != nil {
		return nil, time.Time{}, err
	}
	return h, t, nil
}

// statusFromHash reads a job hash. now is the server's clock, for the
// recent count; the zero time leaves it out (progress).
func statusFromHash(id string, h map[string]string, now time.Time) (backends.Status, error) {
	total, err := strconv.ParseInt(h["total"], 10, 64)
	if err != nil {
		return backends.Status{}, fmt.Errorf("job hash %s has a bad total %q", jobKey(id), h["total"])
	}
	rem, err := strconv.ParseInt(h["remaining"], 10, 64)
	if err != nil {
		return backends.Status{}, fmt.Errorf("job hash %s has a bad remaining %q", jobKey(id), h["remaining"])
	}
	st := backends.Status{
		ID:         id,
		Total:      total,
		Remaining:  rem,
		Failed:     h["failed"] == "1",
		Error:      h["error"],
		ReduceSent: h["reduce_sent"] == "1",
		Reduced:    h["reduced"] == "1",
		// Given-up parts and tolerance; absent from jobs written by an older wp.
		ReduceOnFailure:   h["reduce_on_failure"] == "1",
		Digest:            h["digest"],
		FailedByTolerance: h["failed_by_tolerance"] == "1",
	}
	if g := h["given_up"]; g != "" {
		if st.GivenUp, err = strconv.ParseInt(g, 10, 64); err != nil {
			return backends.Status{}, fmt.Errorf("job hash %s has a bad given_up %q", jobKey(id), g)
		}
	}
	// Batches and expiry; absent from jobs written by an older wp.
	for _, f := range []struct {
		name string
		n    *int
	}{{"batch", &st.Batch}, {"batch_bytes", &st.BatchBytes}} {
		if v := h[f.name]; v != "" {
			if *f.n, err = strconv.Atoi(v); err != nil {
				return backends.Status{}, fmt.Errorf("job hash %s has a bad %s %q", jobKey(id), f.name, v)
			}
		}
	}
	if v := h["expires"]; v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return backends.Status{}, fmt.Errorf("job hash %s has a bad expires %q", jobKey(id), v)
		}
		st.ExpiresAt = time.Unix(sec, 0)
	}
	if st.Tolerance, err = backends.ParseTolerance(h["tolerance"]); err != nil {
		return backends.Status{}, fmt.Errorf("job hash %s has a bad tolerance: %w", jobKey(id), err)
	}
	if m := h["meta"]; m != "" {
		st.Metadata = json.RawMessage(m)
	}
	if ms, err := strconv.ParseInt(h["created"], 10, 64); err == nil && ms > 0 {
		st.CreatedAt = time.UnixMilli(ms)
	}
	if err := progress(&st, h, now); err != nil {
		return backends.Status{}, err
	}
	return st, nil
}

// Pending implements backends.Store. It reads the done bitmap 64 KiB at a
// time; a part completed while Pending runs may or may not be reported.
func (s *Store) Pending(ctx context.Context, jobID string, fn func(part int64) error) (err error) {
	defer wrapBusy(&err)
	ts, err := s.c.HGet(ctx, jobKey(jobID), "total").Result()
	if errors.Is(err, goredis.Nil) {
		return backends.ErrNotFound
	}
	if err != nil {
		return err
	}
	total, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("job hash %s has a bad total %q", jobKey(jobID), ts)
	}
	nbytes := (total + 7) / 8
	for off := int64(0); off < nbytes; off += pendingChunk {
		end := min(off+pendingChunk, nbytes) - 1
		chunk, err := s.c.GetRange(ctx, doneKey(jobID), off, end).Bytes()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		for i := off; i <= end; i++ {
			var b byte // bytes past the string's end read as zero
			if i-off < int64(len(chunk)) {
				b = chunk[i-off]
			}
			if b == 0xff {
				continue
			}
			for bit := int64(0); bit < 8; bit++ {
				p := i*8 + bit
				if p >= total {
					return nil
				}
				if b&(0x80>>bit) == 0 {
					if err := fn(p); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// ClaimReduce implements backends.Store.
func (s *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (_ string, _ bool, err error) {
	defer wrapBusy(&err)
	ms := max(lease.Milliseconds(), 1)
	tok := uuid.NewString()
	n, err := s.runWrite(ctx, claimScript, []string{jobKey(jobID)}, tok, ms, s.touch()).Int64()
	if err != nil {
		if errors.Is(err, ErrReplication) {
			// The claim may stand on the master, but a claim a
			// failover could lose is no claim: give it up so that
			// the retry can claim at once.
			releaseScript.Run(ctx, s.c, []string{jobKey(jobID)}, tok)
		}
		return "", false, err
	}
	switch n {
	case 1:
		return tok, true, nil
	case codeNotFound:
		return "", false, backends.ErrNotFound
	default:
		return "", false, nil
	}
}

// ReleaseReduce implements backends.Store.
func (s *Store) ReleaseReduce(ctx context.Context, jobID, token string) (err error) {
	defer wrapBusy(&err)
	return s.runSimple(ctx, releaseScript, []string{jobKey(jobID)}, token)
}

// MarkReduceSent implements backends.Store.
func (s *Store) MarkReduceSent(ctx context.Context, jobID string) (err error) {
	defer wrapBusy(&err)
	return s.runSimple(ctx, sentScript, []string{jobKey(jobID)})
}

// MarkReduced implements backends.Store.
func (s *Store) MarkReduced(ctx context.Context, jobID string) (err error) {
	defer wrapBusy(&err)
	return s.runSimple(ctx, reducedScript, []string{jobKey(jobID)})
}

// Delete implements backends.Store: the job's keys, then its index entry
// (in the same script on a standalone server; after it on a cluster, so
// that a crash leaves at most an entry without a job, which List drops).
func (s *Store) Delete(ctx context.Context, jobID string) (err error) {
	defer wrapBusy(&err)
	keys := jobKeys(jobID)
	if s.cluster == nil {
		keys = append(keys, indexKey)
	}
	created, err := s.runWrite(ctx, deleteScript, keys, jobID).Int64()
	if err != nil {
		return err
	}
	if created == codeNotFound {
		return backends.ErrNotFound
	}
	if s.cluster != nil {
		return s.indexDrop(ctx, true, indexEntry{id: jobID, score: float64(created)})
	}
	return nil
}

// Close implements backends.Store.
func (s *Store) Close() error {
	s.batch.close()
	return s.c.Close()
}
