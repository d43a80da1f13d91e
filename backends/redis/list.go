package redis

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
)

// The index of jobs (doc.go, "Listing"): the sorted set indexKey, member a
// job id, score its creation time in unix ms (0 when unknown), so that
// List reads the newest jobs first in pages, in proportion to the jobs it
// lists.

const (
	// scanPage is the COUNT hint of the SCAN that indexes the jobs of an
	// older wp.
	scanPage = 1000
	// listPageMin and listPageMax bound List's pages of the index.
	listPageMin, listPageMax = 100, 1000
	// inFlight: on a cluster, an index entry younger than this whose job
	// does not exist may be a CreateJob between its two calls, so List
	// keeps it (it lists nothing for it).
	inFlight = 10 * time.Minute
)

// indexAddScript: KEYS index; ARGV job id. Adds the job with the server's
// time (unix ms), and returns it: CreateJob on a cluster, before the job's
// keys are written, with that time as the job's creation time, so that the
// entry's score is the job's created exactly.
var indexAddScript = goredis.NewScript(`
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%d', ms), ARGV[1])
return ms
`)

// indexRestoreScript: KEYS index; ARGV job id, the score CreateJob wrote,
// the existing job's created. A CreateJob that found the job existing
// puts its entry back, unless another CreateJob has written it since.
var indexRestoreScript = goredis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
`)

// indexDropScript: KEYS index; ARGV pairs of job id and score. Removes
// each entry that still has that score (so the entry of a job created
// again under the id since is kept). Returns how many it removed.
var indexDropScript = goredis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
`)

// indexFillScript: KEYS index; ARGV pairs of job id and created. Adds each
// job, or raises its score to created (a job created again since its
// entry was written); an entry with a later score, written by a CreateJob
// since the job hash was read, is kept.
var indexFillScript = goredis.NewScript(`
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not s or tonumber(s) < tonumber(ARGV[i + 1]) then redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
end
return 1
`)

// indexAdd writes the job's index entry (a cluster's CreateJob) and
// returns its creation time, unix ms.
func (s *Store) indexAdd(ctx context.Context, id string) (int64, error) {
	return s.runWrite(ctx, indexAddScript, []string{indexKey}, id).Int64()
}

// indexRestore gives the job's entry back the existing job's creation
// time after a CreateJob that found it existing.
func (s *Store) indexRestore(ctx context.Context, id, ours string, theirs int64) error {
	return s.runWrite(ctx, indexRestoreScript, []string{indexKey}, id, ours, theirs).Err()
}

// indexEntry is a member of the index and its score.
type indexEntry struct {
	id    string
	score float64
}

func formatScore(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// indexDrop removes entries that still have their scores; waited (a
// Delete) goes through runWrite and its replication wait, List's lazy
// clean-up does not.
func (s *Store) indexDrop(ctx context.Context, waited bool, entries ...indexEntry) error {
	args := make([]any, 0, 2*len(entries))
	for _, e := range entries {
		args = append(args, e.id, formatScore(e.score))
	}
	if waited {
		return s.runWrite(ctx, indexDropScript, []string{indexKey}, args...).Err()
	}
	return indexDropScript.Run(ctx, s.c, []string{indexKey}, args...).Err()
}

// List implements backends.Driver: newest first from the index, in pages
// of about max(opt.Limit, 100) entries, each page's jobs read with one
// pipeline of HGETALL. The first listing of a database, and every one
// with opt.Scan, first indexes the jobs that the index does not list
// (written by an older wp) with a SCAN of every master.
func (s *Store) List(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) (err error) {
	defer wrapBusy(&err)
	pipe := s.c.Pipeline()
	indexed := pipe.Exists(ctx, indexedKey)
	clock := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	// The server's clock, for the recent counts: its TIME, and the time
	// passed here since.
	srv, local := clock.Val(), time.Now()
	now := func() time.Time { return srv.Add(time.Since(local)) }
	if opt.Scan || indexed.Val() == 0 {
		if opt.Note != nil {
			why := "indexing the jobs that an older wp created: this first listing scans every key of the database; later ones read the index " + indexKey
			if opt.Scan {
				why = "scanning every key of the database for jobs the index " + indexKey + " does not list"
			}
			opt.Note(why)
		}
		if err := s.fillIndex(ctx); err != nil {
			return err
		}
	}
	return s.listIndex(ctx, opt, now, fn)
}

// listIndex pages through the index from the newest entry down to
// opt.Since. ZREVRANGEBYSCORE yields jobs of equal scores in descending id
// order, and List wants them in ascending order: the entries of the
// page's last score are held back until the next page shows they are
// all read, and a page resumes at that score, past the entries of it
// already read (the offset), so ties are neither lost nor repeated.
func (s *Store) listIndex(ctx context.Context, opt backends.ListOptions, now func() time.Time, fn func(backends.Status) error) error {
	page := int64(min(max(opt.Limit, listPageMin), listPageMax))
	lo := "-inf"
	if !opt.Since.IsZero() {
		// created (ms) >= Since: at or after its millisecond, rounded up.
		ms := opt.Since.UnixMilli()
		if time.UnixMilli(ms).Before(opt.Since) {
			ms++
		}
		lo = strconv.FormatInt(ms, 10)
	}
	hi, hiScore := "+inf", math.Inf(1)
	var offset int64
	var group []backends.Status // the jobs of groupScore, held back
	groupScore := math.NaN()
	flush := func() error {
		slices.SortFunc(group, func(a, b backends.Status) int { return strings.Compare(a.ID, b.ID) })
		for _, st := range group {
			if err := fn(st); err != nil {
				return err
			}
		}
		group = group[:0]
		return nil
	}
	seen := map[string]struct{}{}
	for {
		zs, err := s.c.ZRevRangeByScoreWithScores(ctx, indexKey, &goredis.ZRangeBy{Max: hi, Min: lo, Offset: offset, Count: page}).Result()
		if err != nil {
			return err
		}
		if len(zs) == 0 {
			return flush()
		}
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.MapStringStringCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HGetAll(ctx, jobKey(z.Member.(string)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		last := zs[len(zs)-1].Score
		var stale []indexEntry
		var atLast int64 // entries of score last that stay in the index
		for i, z := range zs {
			id := z.Member.(string)
			h := cmds[i].Val()
			if len(h) == 0 {
				// The job is gone (expired, deleted, or a crash
				// between the index entry and the job): drop its
				// entry, unless it may be a creation in flight.
				if s.cluster == nil || time.UnixMilli(int64(z.Score)).Before(now().Add(-inFlight)) {
					stale = append(stale, indexEntry{id: id, score: z.Score})
					continue
				}
			}
			if z.Score == last {
				atLast++
			}
			if len(h) == 0 {
				continue
			}
			if z.Score != groupScore {
				if err := flush(); err != nil {
					return err
				}
				groupScore = z.Score
			}
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = struct{}{}
			st, err := statusFromHash(id, h, now())
			if err != nil {
				return err
			}
			if !opt.Since.IsZero() && st.CreatedAt.Before(opt.Since) {
				continue // its entry and its hash disagree: the hash says
			}
			group = append(group, st)
		}
		if len(stale) > 0 {
			if err := s.indexDrop(ctx, false, stale...); err != nil {
				return err
			}
		}
		if int64(len(zs)) < page {
			return flush()
		}
		if zs[0].Score == last && last == hiScore {
			offset += atLast // the page is all of one score, as the last one ended
		} else {
			offset = atLast
		}
		hi, hiScore = formatScore(last), last
	}
}

// fillIndex adds every job hash of the database to the index (scores
// raised only: indexFillScript), then sets indexedKey. It scans the
// keyspace with SCAN MATCH wp:{*}:job, every master of a cluster in turn
// (a SCAN sees only its own node's keys), and reads each page's creation
// times with one pipeline of HGET. Job ids cannot hold glob or hash-tag
// characters (backends.ValidateJobID refuses them), so the pattern matches
// exactly wp's job hashes.
func (s *Store) fillIndex(ctx context.Context) error {
	nodes := []goredis.Cmdable{s.c}
	if s.cluster != nil {
		var mu sync.Mutex
		nodes = nodes[:0]
		err := s.cluster.ForEachMaster(ctx, func(_ context.Context, m *goredis.Client) error {
			mu.Lock()
			nodes = append(nodes, m)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := s.fillFrom(ctx, n); err != nil {
			return err
		}
	}
	return s.c.Set(ctx, indexedKey, time.Now().UnixMilli(), 0).Err()
}

// fillFrom indexes the jobs of one node.
func (s *Store) fillFrom(ctx context.Context, node goredis.Cmdable) error {
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, listPattern, scanPage).Result()
		if err != nil {
			return err
		}
		var ids []string
		for _, k := range keys {
			if id, ok := idFromJobKey(k); ok {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			pipe := s.c.Pipeline()
			cmds := make([]*goredis.StringCmd, len(ids))
			for i, id := range ids {
				cmds[i] = pipe.HGet(ctx, jobKey(id), "created")
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
			args := make([]any, 0, 2*len(ids))
			for i, id := range ids {
				v, err := cmds[i].Result()
				if errors.Is(err, goredis.Nil) {
					continue // gone since SCAN saw it
				}
				ms, err := strconv.ParseInt(v, 10, 64)
				if err != nil || ms < 0 {
					ms = 0 // unknown: listed after every other job
				}
				args = append(args, id, ms)
			}
			if len(args) > 0 {
				if err := indexFillScript.Run(ctx, s.c, []string{indexKey}, args...).Err(); err != nil {
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
