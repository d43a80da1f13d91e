// Package memstore is an in-memory progress store for tests: it keeps every
// job in one process's memory, passes the conformance suite that every real
// store passes (backendtest), and lets a test break it on purpose (FailOn,
// BeforeComplete). It is not registered under a URL scheme: wp itself never
// uses it.
package memstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/wp-tools/wp/backends"
)

// Store is a backends.Driver in memory. The zero value is not usable: call
// New.
type Store struct {
	mu   sync.Mutex
	jobs map[string]*job
	// fail, when set for an operation's name, is returned by every call
	// of it.
	fail map[string]error
	// beforeComplete runs before Complete records anything.
	beforeComplete func()
	calls          map[string]int
}

type job struct {
	backends.Status
	done     map[int64]bool
	givenUp  map[int64]backends.GiveUpInfo
	claim    string
	claimExp time.Time
	// ended counts the parts that ended in each minute (unix minutes).
	ended map[int64]int64
}

// end records that n parts of j ended now.
func (j *job) end(n int64) {
	if n == 0 {
		return
	}
	now := time.Now()
	j.LastEnded = now.Truncate(time.Millisecond)
	j.ended[now.Unix()/60] += n
	for m := range j.ended {
		if m <= now.Unix()/60-backends.RecentMinutes {
			delete(j.ended, m)
		}
	}
}

// status is j's Status now, with its recent count.
func (j *job) status() backends.Status {
	st := j.Status
	now := time.Now()
	first := now.Unix()/60 - backends.RecentMinutes + 1
	start := time.Unix(first*60, 0)
	if st.CreatedAt.After(start) {
		start = st.CreatedAt
	}
	for m, n := range j.ended {
		if m >= first {
			st.RecentEnded += n
		}
	}
	st.RecentWindow = max(now.Sub(start), time.Millisecond)
	return st
}

// expired says whether j's expiry has passed.
func (j *job) expired() bool {
	return !j.ExpiresAt.IsZero() && !time.Now().Before(j.ExpiresAt)
}

// New returns an empty store.
func New() *Store {
	return &Store{jobs: map[string]*job{}, fail: map[string]error{}, calls: map[string]int{}}
}

// FailOn makes every later call of the operation op (a Driver method's
// name, "Complete") return err; nil clears it.
func (s *Store) FailOn(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] = err
}

// BeforeComplete runs fn at the start of every later Complete, before it
// records anything (nil clears it).
func (s *Store) BeforeComplete(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforeComplete = fn
}

// Calls is how many times the operation op was called.
func (s *Store) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// do runs fn on job id under the lock, counting the call and returning the
// error set for op, or ErrNotFound for an unknown job.
func (s *Store) do(op, id string, fn func(j *job) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	if err := s.fail[op]; err != nil {
		return err
	}
	j, ok := s.jobs[id]
	if ok && j.expired() {
		delete(s.jobs, id)
		ok = false
	}
	if !ok {
		return backends.ErrNotFound
	}
	return fn(j)
}

// CreateJob implements backends.Driver.
func (s *Store) CreateJob(ctx context.Context, jb backends.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls["CreateJob"]++
	if err := s.fail["CreateJob"]; err != nil {
		return err
	}
	if jb.Total < 1 {
		return errors.New("a job needs at least 1 part")
	}
	if j, ok := s.jobs[jb.ID]; ok && !j.expired() {
		return backends.ErrExists
	}
	var meta json.RawMessage
	if len(jb.Metadata) > 0 {
		meta = append(json.RawMessage(nil), jb.Metadata...)
	}
	now := time.Now().Truncate(time.Millisecond)
	var expires time.Time
	if jb.ExpireAfter > 0 {
		expires = backends.ExpirySecond(now.Add(jb.ExpireAfter))
	}
	s.jobs[jb.ID] = &job{Status: backends.Status{ID: jb.ID, Total: jb.Total, Remaining: jb.Total, Metadata: meta, CreatedAt: now,
		Tolerance: jb.Tolerance, ReduceOnFailure: jb.ReduceOnFailure, Digest: jb.Digest,
		ExpiresAt: expires, Batch: jb.Batch, BatchBytes: jb.BatchBytes},
		done: map[int64]bool{}, givenUp: map[int64]backends.GiveUpInfo{}, ended: map[int64]int64{}}
	return nil
}

// endable checks that part can end: a part of the job, and the job not
// failed.
func (j *job) endable(part int64) error {
	if part < 0 || part >= j.Total {
		return backends.ErrPartRange
	}
	if j.Failed {
		return backends.ErrJobFailed
	}
	return nil
}

// Complete implements backends.Driver.
func (s *Store) Complete(ctx context.Context, id string, part int64) (backends.Completion, error) {
	return s.complete("Complete", id, []int64{part})
}

// CompleteParts implements backends.Driver: all of parts, under one lock.
func (s *Store) CompleteParts(ctx context.Context, id string, parts []int64) (backends.Completion, error) {
	return s.complete("CompleteParts", id, parts)
}

func (s *Store) complete(op, id string, parts []int64) (c backends.Completion, err error) {
	s.mu.Lock()
	hook := s.beforeComplete
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	err = s.do(op, id, func(j *job) error {
		for _, p := range parts {
			if err := j.endable(p); err != nil {
				return err
			}
		}
		wasDone := j.Remaining == 0
		var ended int64
		for _, p := range parts {
			if j.done[p] {
				continue
			}
			j.done[p] = true
			c.Completed++
			if _, ok := j.givenUp[p]; ok {
				delete(j.givenUp, p)
				j.GivenUp--
				continue
			}
			j.Remaining--
			ended++
		}
		// A conversion (a given-up part completed) ends no part.
		j.end(ended)
		c.Duplicate = c.Completed == 0
		c.Done = j.Remaining == 0
		c.Finisher = c.Done && !wasDone
		c.ReduceSent = j.ReduceSent
		return nil
	})
	return c, err
}

// PartStates implements backends.Driver.
func (s *Store) PartStates(ctx context.Context, id string, parts []int64) (states []backends.PartState, err error) {
	err = s.do("PartStates", id, func(j *job) error {
		for _, p := range parts {
			if p < 0 || p >= j.Total {
				return backends.ErrPartRange
			}
			st := backends.PartPending
			if j.done[p] {
				st = backends.PartComplete
			} else if _, ok := j.givenUp[p]; ok {
				st = backends.PartGivenUp
			}
			states = append(states, st)
		}
		return nil
	})
	return states, err
}

// ShardSize implements backends.Driver: the store has no shards.
func (s *Store) ShardSize() int64 { return 0 }

// SetExpiry implements backends.Driver.
func (s *Store) SetExpiry(ctx context.Context, id string, at time.Time) error {
	return s.do("SetExpiry", id, func(j *job) error {
		j.ExpiresAt = at
		if j.expired() {
			delete(s.jobs, id)
		}
		return nil
	})
}

// GiveUp implements backends.Driver.
func (s *Store) GiveUp(ctx context.Context, id string, part int64, info backends.GiveUpInfo) (c backends.Completion, err error) {
	err = s.do("GiveUp", id, func(j *job) error {
		if err := j.endable(part); err != nil {
			return err
		}
		if _, ok := j.givenUp[part]; ok || j.done[part] {
			c = backends.Completion{Duplicate: true, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}
			return nil
		}
		info.At = info.At.Truncate(time.Millisecond)
		j.givenUp[part] = info
		j.GivenUp++
		j.Remaining--
		j.end(1)
		c = backends.Completion{Finisher: j.Remaining == 0, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}
		if j.GivenUp > j.Tolerance.Limit(j.Total) {
			j.Failed, j.FailedByTolerance = true, true
			j.Error = backends.ToleranceReason(j.GivenUp, j.Tolerance, j.Total)
			c.Failed = true
		}
		return nil
	})
	return c, err
}

// GivenUp implements backends.Driver.
func (s *Store) GivenUp(ctx context.Context, id string, fn func(backends.GivenUpPart) error) error {
	var parts []backends.GivenUpPart
	if err := s.do("GivenUp", id, func(j *job) error {
		for p, info := range j.givenUp {
			parts = append(parts, backends.GivenUpPart{Part: p, GiveUpInfo: info})
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Slice(parts, func(a, b int) bool { return parts[a].Part < parts[b].Part })
	for _, p := range parts {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// Retry implements backends.Driver.
func (s *Store) Retry(ctx context.Context, id string, parts []int64) (moved []int64, err error) {
	err = s.do("Retry", id, func(j *job) error {
		if j.Failed && !j.FailedByTolerance {
			return backends.ErrJobFailed
		}
		for _, p := range parts {
			if _, ok := j.givenUp[p]; !ok {
				continue
			}
			delete(j.givenUp, p)
			j.GivenUp--
			j.Remaining++
			moved = append(moved, p)
		}
		if j.FailedByTolerance && j.GivenUp <= j.Tolerance.Limit(j.Total) {
			j.Failed, j.FailedByTolerance, j.Error = false, false, ""
		}
		if len(moved) > 0 {
			j.ReduceSent, j.Reduced, j.claim = false, false, ""
		}
		return nil
	})
	return moved, err
}

// Fail implements backends.Driver.
func (s *Store) Fail(ctx context.Context, id, reason string) error {
	return s.do("Fail", id, func(j *job) error {
		if !j.Failed {
			j.Failed, j.Error = true, reason
		}
		return nil
	})
}

// Status implements backends.Driver.
func (s *Store) Status(ctx context.Context, id string) (st backends.Status, err error) {
	err = s.do("Status", id, func(j *job) error {
		st = j.status()
		return nil
	})
	return st, err
}

// Peek implements backends.Driver.
func (s *Store) Peek(ctx context.Context, id string) (st backends.Status, err error) {
	err = s.do("Peek", id, func(j *job) error {
		st = j.status()
		return nil
	})
	return st, err
}

// Pending implements backends.Driver. It reads each part under the lock,
// one at a time, as a real store reads page by page.
func (s *Store) Pending(ctx context.Context, id string, fn func(int64) error) error {
	var total int64
	if err := s.do("Pending", id, func(j *job) error {
		total = j.Total
		return nil
	}); err != nil {
		return err
	}
	for p := int64(0); p < total; p++ {
		pending := false
		if err := s.do("Pending.page", id, func(j *job) error {
			_, gaveUp := j.givenUp[p]
			pending = !j.done[p] && !gaveUp // a given-up part is not pending
			return nil
		}); err != nil {
			return err
		}
		if !pending {
			continue
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// List implements backends.Driver.
func (s *Store) List(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) error {
	s.mu.Lock()
	s.calls["List"]++
	err := s.fail["List"]
	var all []backends.Status
	for id, j := range s.jobs {
		if j.expired() {
			delete(s.jobs, id)
			continue
		}
		if !opt.Since.IsZero() && j.CreatedAt.Before(opt.Since) {
			continue
		}
		all = append(all, j.status())
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	backends.SortNewestFirst(all)
	for _, st := range all {
		if err := fn(st); err != nil {
			return err
		}
	}
	return nil
}

// ClaimReduce implements backends.Driver.
func (s *Store) ClaimReduce(ctx context.Context, id string, lease time.Duration) (token string, ok bool, err error) {
	err = s.do("ClaimReduce", id, func(j *job) error {
		now := time.Now()
		ready := (j.Remaining == 0 && !j.Failed) || (j.Failed && j.ReduceOnFailure)
		if !ready || j.ReduceSent || (j.claim != "" && now.Before(j.claimExp)) {
			return nil
		}
		j.claim, j.claimExp = rand.Text(), now.Add(lease)
		token, ok = j.claim, true
		return nil
	})
	return token, ok, err
}

// ReleaseReduce implements backends.Driver.
func (s *Store) ReleaseReduce(ctx context.Context, id, token string) error {
	return s.do("ReleaseReduce", id, func(j *job) error {
		if j.claim == token {
			j.claim = ""
		}
		return nil
	})
}

// MarkReduceSent implements backends.Driver.
func (s *Store) MarkReduceSent(ctx context.Context, id string) error {
	return s.do("MarkReduceSent", id, func(j *job) error {
		j.ReduceSent, j.claim = true, ""
		return nil
	})
}

// MarkReduced implements backends.Driver.
func (s *Store) MarkReduced(ctx context.Context, id string) error {
	return s.do("MarkReduced", id, func(j *job) error {
		j.Reduced = true
		return nil
	})
}

// Delete implements backends.Driver.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.do("Delete", id, func(*job) error {
		delete(s.jobs, id)
		return nil
	})
}

// Close implements backends.Driver.
func (s *Store) Close() error { return nil }
