// Package redis is the Redis progress store, selected by redis:// and
// rediss:// (TLS) store URLs:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://:password@host:6380/2
//
// The URL is read by go-redis's ParseURL, so its query options work
// (dial_timeout, read_timeout, write_timeout, max_retries, pool_size, ...,
// skip_verify for rediss); an unknown option is an error. Errors never
// contain the password.
//
// # Failing fast
//
// Unless the URL says otherwise, a connection is dialed for at most 5s
// (dial_timeout, with 2 dial attempts), every command waits at most 5s for
// its reply (read_timeout, write_timeout), and a command that failed on the
// network is retried at most twice (max_retries=2). Deadlines of the caller's
// context are honoured too. Open sends PING with the caller's context, capped
// at 10s when that context has no earlier deadline, so an unreachable or
// wrong URL is reported by Open in bounded time instead of by the first
// Complete. A server that accepts connections but stops answering makes a
// call fail after about 15s (three 5s reads) at most.
//
// The pool holds up to max(64, 10*GOMAXPROCS) connections so that dozens of
// goroutines completing parts do not queue for a connection.
//
// # Layout
//
// Every key of one job holds the job id in a hash tag, so all of them live
// in one hash slot and the Lua scripts below can touch them together even on
// Redis Cluster:
//
//	wp:{JOBID}:job   hash: total, remaining, meta (the metadata JSON),
//	                 created (server time, unix ms), failed ("1"), error,
//	                 reduce_sent ("1"), reduced ("1"), claim (token),
//	                 claim_exp (server time, unix ms)
//	wp:{JOBID}:done  string used as a bitmap: bit p set = part p completed
//
// The job exists exactly when its hash does; the hash is written by one
// script, so a job is visible whole or not at all.
//
// # Why a bitmap of completed parts
//
// The predecessor (watchbot-progress-py) kept a set of pending part ids. A
// bitmap is smaller and cheaper: 1,000,000 parts take 125 KB (a set of a
// million integers takes tens of MB), creating a job writes one hash and no
// per-part data at all (O(1) writes, where a pending set must be filled in
// pipelined chunks: this is better than the "pipelined in chunks" creation
// first asked for), and missing bytes read as zero, so an untouched job has
// no bitmap key. A bitmap holds at most 2^32 bits, which caps a job at
// 4,294,967,296 parts.
//
// # Atomicity
//
// Every write is one Lua script (EVALSHA, falling back to EVAL once per
// server), so it is atomic and costs one round trip. Complete checks that
// the job exists, has not failed and that the part is in range, sets the
// part's bit and, only if the bit was clear, decrements remaining; the call
// that takes remaining to 0 is the finisher. Reduce claims compare their
// expiry to the Redis server's clock (TIME), so the clocks of the workers do
// not matter. A claim token is a random UUID.
//
// A retried script (max_retries, after a lost reply) may run twice; the
// second run is then a duplicate and reports Finisher false. That is the same
// case as a worker crashing after Complete: Done && !ReduceSent tells the
// caller to ClaimReduce.
//
// Concurrent Complete calls of one process share round trips: see batch.go.
// A lone call is sent at once; calls that arrive while others are in flight
// go out together as one pipeline (each script still atomic on its own).
// With 32 goroutines on the 2-core test machine this took BenchmarkComplete32
// from about 40,000 to about 60,000 completions/s. go-redis's own
// AutoPipeline was tried and not used: it is marked experimental and, with
// the server stopped, kept a call with a 2s context deadline waiting 30s.
//
// # Listing and Redis Cluster
//
// List walks the keyspace with SCAN MATCH wp:{*}:job COUNT 1000 and reads
// each page's jobs with one pipeline of HGETALL. Job ids cannot hold glob or
// hash-tag characters (backends.ValidateJobID refuses them), so the pattern
// matches exactly wp's job hashes. SCAN may return a key twice while Redis
// resizes its table, so List remembers the ids it has passed on (memory grows
// with the number of jobs, not of parts).
//
// This package connects to one Redis server (a standalone server or a
// primary). The key layout is ready for Redis Cluster, but a cluster client
// would have to run List's SCAN on every master (ClusterClient.ForEachMaster):
// SCAN on one node sees only that node's keys.
//
// Jobs written by watchbot-progress-py ({jobid}-metadata and {jobid}-parts)
// are not read by this store.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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
	c     *goredis.Client
	batch *batcher
}

var _ backends.Driver = (*Store)(nil)

func open(ctx context.Context, u *url.URL) (backends.Driver, error) {
	s, err := Open(ctx, u)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Open connects to the Redis server the URL names and checks that it
// answers (and accepts the password).
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	opt, err := parseOptions(u)
	if err != nil {
		return nil, err
	}
	c := goredis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, openPingTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to redis at %s (db %d): %w (check the store URL, its password, and that the server is up)", opt.Addr, opt.DB, err)
	}
	return &Store{c: c, batch: newBatcher(c)}, nil
}

// parseOptions turns a redis:// or rediss:// URL into client options with
// this package's defaults. Its errors never hold the password.
func parseOptions(u *url.URL) (*goredis.Options, error) {
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis store: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errors.New("redis store URL must look like redis://[:password@]host[:port][/db]")
	}
	opt, err := goredis.ParseURL(u.String())
	if err != nil {
		// go-redis's messages name only the bad part (db, option,
		// path), but a url.Error would quote the whole URL: keep only
		// its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return nil, fmt.Errorf("redis store URL: %s", msg)
	}
	q := u.Query()
	if !q.Has("dial_timeout") {
		opt.DialTimeout = defaultDialTimeout
	}
	if !q.Has("read_timeout") {
		opt.ReadTimeout = defaultReadTimeout
	}
	if !q.Has("write_timeout") {
		opt.WriteTimeout = defaultWriteTimeout
	}
	if !q.Has("max_retries") {
		opt.MaxRetries = defaultMaxRetries
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = max(minPoolSize, 10*runtime.GOMAXPROCS(0))
	}
	opt.DialerRetries = defaultDialAttempts
	opt.ContextTimeoutEnabled = true
	// wp talks to plain Redis; skip the extra handshake for managed
	// service maintenance notices.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt, nil
}

func jobKey(id string) string  { return "wp:{" + id + "}:job" }
func doneKey(id string) string { return "wp:{" + id + "}:done" }

// listPattern matches every job hash (see jobKey).
const listPattern = "wp:{*}:job"

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

// createScript: KEYS job, done; ARGV total, metadata. Returns 1, or 0 when
// the job exists.
var createScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
local t = redis.call('TIME')
local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'remaining', ARGV[1], 'meta', ARGV[2], 'created', ms)
return 1
`)

// completeScript: KEYS job, done; ARGV part. Returns {code} on error, else
// {0, finisher, done, duplicate, reduce_sent}.
var completeScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'failed', 'reduce_sent', 'remaining')
if not h[1] then return {-1} end
if h[2] == '1' then return {-2} end
local p = tonumber(ARGV[1])
if p < 0 or p >= tonumber(h[1]) then return {-3} end
local rs = 0
if h[3] == '1' then rs = 1 end
local old = redis.call('SETBIT', KEYS[2], p, 1)
local rem = tonumber(h[4])
if old == 0 then
  rem = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
end
local done = 0
if rem == 0 then done = 1 end
local fin = 0
if old == 0 and rem == 0 then fin = 1 end
return {0, fin, done, old, rs}
`)

// failScript: KEYS job; ARGV reason. Returns -1, or 1.
var failScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'failed')
if not h[1] then return -1 end
if h[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'failed', '1', 'error', ARGV[1])
end
return 1
`)

// claimScript: KEYS job; ARGV token, lease ms. Returns -1, 0 (not
// claimable) or 1 (claimed).
var claimScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'total', 'remaining', 'failed', 'reduce_sent', 'claim', 'claim_exp')
if not h[1] then return -1 end
if tonumber(h[2]) ~= 0 or h[3] == '1' or h[4] == '1' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if h[5] and h[5] ~= '' and h[6] and tonumber(h[6]) > now then return 0 end
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

// deleteScript: KEYS job, done. Returns -1, or 1.
var deleteScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`)

// CreateJob implements backends.Store.
func (s *Store) CreateJob(ctx context.Context, job backends.Job) error {
	if job.Total < 1 || job.Total > maxParts {
		return fmt.Errorf("total %d parts is out of range: a Redis job has 1 to %d parts", job.Total, int64(maxParts))
	}
	if len(job.Metadata) > 0 && !json.Valid(job.Metadata) {
		return errors.New("metadata is not valid JSON")
	}
	n, err := createScript.Run(ctx, s.c, []string{jobKey(job.ID), doneKey(job.ID)}, job.Total, []byte(job.Metadata)).Int64()
	if err != nil {
		return err
	}
	if n == 0 {
		return backends.ErrExists
	}
	return nil
}

// Complete implements backends.Store.
func (s *Store) Complete(ctx context.Context, jobID string, part int64) (backends.Completion, error) {
	r, err := s.batch.complete(ctx, []string{jobKey(jobID), doneKey(jobID)}, part)
	if err != nil {
		return backends.Completion{}, err
	}
	if len(r) == 0 {
		return backends.Completion{}, errors.New("empty reply from redis")
	}
	switch r[0] {
	case 0:
	case codeNotFound:
		return backends.Completion{}, backends.ErrNotFound
	case codeFailed:
		return backends.Completion{}, backends.ErrJobFailed
	case codePartRange:
		return backends.Completion{}, backends.ErrPartRange
	default:
		return backends.Completion{}, fmt.Errorf("unexpected reply %v from redis", r)
	}
	if len(r) != 5 {
		return backends.Completion{}, fmt.Errorf("unexpected reply %v from redis", r)
	}
	return backends.Completion{
		Finisher:   r[1] == 1,
		Done:       r[2] == 1,
		Duplicate:  r[3] == 1,
		ReduceSent: r[4] == 1,
	}, nil
}

// Fail implements backends.Store.
func (s *Store) Fail(ctx context.Context, jobID, reason string) error {
	return s.runSimple(ctx, failScript, []string{jobKey(jobID)}, reason)
}

// runSimple runs a script that returns -1 for an unknown job.
func (s *Store) runSimple(ctx context.Context, sc *goredis.Script, keys []string, args ...any) error {
	n, err := sc.Run(ctx, s.c, keys, args...).Int64()
	if err != nil {
		return err
	}
	if n == codeNotFound {
		return backends.ErrNotFound
	}
	return nil
}

// Status implements backends.Store.
func (s *Store) Status(ctx context.Context, jobID string) (backends.Status, error) {
	h, err := s.c.HGetAll(ctx, jobKey(jobID)).Result()
	if err != nil {
		return backends.Status{}, err
	}
	if len(h) == 0 {
		return backends.Status{}, backends.ErrNotFound
	}
	st, err := statusFromHash(jobID, h)
	if err != nil {
		return backends.Status{}, err
	}
	return st, nil
}

func statusFromHash(id string, h map[string]string) (backends.Status, error) {
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
	}
	if m := h["meta"]; m != "" {
		st.Metadata = json.RawMessage(m)
	}
	if ms, err := strconv.ParseInt(h["created"], 10, 64); err == nil && ms > 0 {
		st.CreatedAt = time.UnixMilli(ms)
	}
	return st, nil
}

// Pending implements backends.Store. It reads the done bitmap 64 KiB at a
// time; a part completed while Pending runs may or may not be reported.
func (s *Store) Pending(ctx context.Context, jobID string, fn func(part int64) error) error {
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

// List implements backends.Store.
func (s *Store) List(ctx context.Context, fn func(backends.Status) error) error {
	seen := map[string]struct{}{}
	var cursor uint64
	for {
		keys, next, err := s.c.Scan(ctx, cursor, listPattern, listPage).Result()
		if err != nil {
			return err
		}
		var ids []string
		for _, k := range keys {
			id, ok := idFromJobKey(k)
			if !ok {
				continue
			}
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
		if len(ids) > 0 {
			pipe := s.c.Pipeline()
			cmds := make([]*goredis.MapStringStringCmd, len(ids))
			for i, id := range ids {
				cmds[i] = pipe.HGetAll(ctx, jobKey(id))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
			for i, id := range ids {
				h := cmds[i].Val()
				if len(h) == 0 {
					continue // deleted since SCAN saw it
				}
				st, err := statusFromHash(id, h)
				if err != nil {
					return err
				}
				if err := fn(st); err != nil {
					return err
				}
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// ClaimReduce implements backends.Store.
func (s *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (string, bool, error) {
	ms := max(lease.Milliseconds(), 1)
	tok := uuid.NewString()
	n, err := claimScript.Run(ctx, s.c, []string{jobKey(jobID)}, tok, ms).Int64()
	if err != nil {
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
func (s *Store) ReleaseReduce(ctx context.Context, jobID, token string) error {
	return s.runSimple(ctx, releaseScript, []string{jobKey(jobID)}, token)
}

// MarkReduceSent implements backends.Store.
func (s *Store) MarkReduceSent(ctx context.Context, jobID string) error {
	return s.runSimple(ctx, sentScript, []string{jobKey(jobID)})
}

// MarkReduced implements backends.Store.
func (s *Store) MarkReduced(ctx context.Context, jobID string) error {
	return s.runSimple(ctx, reducedScript, []string{jobKey(jobID)})
}

// Delete implements backends.Store.
func (s *Store) Delete(ctx context.Context, jobID string) error {
	return s.runSimple(ctx, deleteScript, []string{jobKey(jobID), doneKey(jobID)})
}

// Close implements backends.Store.
func (s *Store) Close() error {
	s.batch.close()
	return s.c.Close()
}
