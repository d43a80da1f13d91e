package worker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
)

// memStore is an in-memory backends.Driver for the engine's tests. It
// passes the conformance suite (TestMemStore_Conformance), so what the
// engine's tests see is what a real store does. Hooks let a test break it.
type memStore struct {
	mu   sync.Mutex
	jobs map[string]*memJob
	// fail, when set, is returned by every call whose name it maps.
	fail map[string]error
	// beforeComplete runs before Complete records anything.
	beforeComplete func()
	calls          map[string]int
}

type memJob struct {
	backends.Status
	done     map[int64]bool
	givenUp  map[int64]backends.GiveUpInfo
	claim    string
	claimExp time.Time
}

func newMemStore() *memStore {
	return &memStore{jobs: map[string]*memJob{}, fail: map[string]error{}, calls: map[string]int{}}
}

func (s *memStore) enter(op string) error {
	s.mu.Lock()
	s.calls[op]++
	return s.fail[op]
}

func (s *memStore) job(id string) (*memJob, error) {
	j, ok := s.jobs[id]
	if !ok {
		return nil, backends.ErrNotFound
	}
	return j, nil
}

func (s *memStore) CreateJob(ctx context.Context, job backends.Job) error {
	defer s.mu.Unlock()
	if err := s.enter("CreateJob"); err != nil {
		return err
	}
	if job.Total < 1 {
		return errors.New("a job needs at least 1 part")
	}
	if _, ok := s.jobs[job.ID]; ok {
		return backends.ErrExists
	}
	var meta json.RawMessage
	if len(job.Metadata) > 0 {
		meta = append(json.RawMessage(nil), job.Metadata...)
	}
	s.jobs[job.ID] = &memJob{Status: backends.Status{ID: job.ID, Total: job.Total, Remaining: job.Total, Metadata: meta, CreatedAt: time.Now().Truncate(time.Millisecond),
		Tolerance: job.Tolerance, ReduceOnFailure: job.ReduceOnFailure, Digest: job.Digest}, done: map[int64]bool{}, givenUp: map[int64]backends.GiveUpInfo{}}
	return nil
}

func (s *memStore) Complete(ctx context.Context, id string, part int64) (backends.Completion, error) {
	s.mu.Lock()
	hook := s.beforeComplete
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	defer s.mu.Unlock()
	if err := s.enter("Complete"); err != nil {
		return backends.Completion{}, err
	}
	j, err := s.job(id)
	if err != nil {
		return backends.Completion{}, err
	}
	if part < 0 || part >= j.Total {
		return backends.Completion{}, backends.ErrPartRange
	}
	if j.Failed {
		return backends.Completion{}, backends.ErrJobFailed
	}
	if j.done[part] {
		return backends.Completion{Duplicate: true, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}, nil
	}
	j.done[part] = true
	if _, ok := j.givenUp[part]; ok {
		delete(j.givenUp, part)
		j.GivenUp--
		return backends.Completion{Done: j.Remaining == 0, ReduceSent: j.ReduceSent}, nil
	}
	j.Remaining--
	return backends.Completion{Finisher: j.Remaining == 0, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}, nil
}

func (s *memStore) GiveUp(ctx context.Context, id string, part int64, info backends.GiveUpInfo) (backends.Completion, error) {
	defer s.mu.Unlock()
	if err := s.enter("GiveUp"); err != nil {
		return backends.Completion{}, err
	}
	j, err := s.job(id)
	if err != nil {
		return backends.Completion{}, err
	}
	if part < 0 || part >= j.Total {
		return backends.Completion{}, backends.ErrPartRange
	}
	if j.Failed {
		return backends.Completion{}, backends.ErrJobFailed
	}
	if _, ok := j.givenUp[part]; ok || j.done[part] {
		return backends.Completion{Duplicate: true, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}, nil
	}
	info.At = info.At.Truncate(time.Millisecond)
	j.givenUp[part] = info
	j.GivenUp++
	j.Remaining--
	c := backends.Completion{Finisher: j.Remaining == 0, Done: j.Remaining == 0, ReduceSent: j.ReduceSent}
	if j.GivenUp > j.Tolerance.Limit(j.Total) {
		j.Failed, j.FailedByTolerance = true, true
		j.Error = backends.ToleranceReason(j.GivenUp, j.Tolerance, j.Total)
		c.Failed = true
	}
	return c, nil
}

func (s *memStore) GivenUp(ctx context.Context, id string, fn func(backends.GivenUpPart) error) error {
	s.mu.Lock()
	j, err := s.job(id)
	var parts []backends.GivenUpPart
	if err == nil {
		for p, info := range j.givenUp {
			parts = append(parts, backends.GivenUpPart{Part: p, GiveUpInfo: info})
		}
	}
	s.mu.Unlock()
	if err != nil {
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

func (s *memStore) Retry(ctx context.Context, id string, parts []int64) ([]int64, error) {
	defer s.mu.Unlock()
	if err := s.enter("Retry"); err != nil {
		return nil, err
	}
	j, err := s.job(id)
	if err != nil {
		return nil, err
	}
	if j.Failed && !j.FailedByTolerance {
		return nil, backends.ErrJobFailed
	}
	var moved []int64
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
	return moved, nil
}

func (s *memStore) Fail(ctx context.Context, id, reason string) error {
	defer s.mu.Unlock()
	if err := s.enter("Fail"); err != nil {
		return err
	}
	j, err := s.job(id)
	if err != nil {
		return err
	}
	if !j.Failed {
		j.Failed, j.Error = true, reason
	}
	return nil
}

func (s *memStore) Status(ctx context.Context, id string) (backends.Status, error) {
	defer s.mu.Unlock()
	if err := s.enter("Status"); err != nil {
		return backends.Status{}, err
	}
	j, err := s.job(id)
	if err != nil {
		return backends.Status{}, err
	}
	return j.Status, nil
}

func (s *memStore) Peek(ctx context.Context, id string) (backends.Status, error) {
	defer s.mu.Unlock()
	if err := s.enter("Peek"); err != nil {
		return backends.Status{}, err
	}
	j, err := s.job(id)
	if err != nil {
		return backends.Status{}, err
	}
	return j.Status, nil
}

func (s *memStore) Pending(ctx context.Context, id string, fn func(int64) error) error {
	s.mu.Lock()
	j, err := s.job(id)
	if err == nil {
		err = s.fail["Pending"]
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	for p := int64(0); p < j.Total; p++ {
		s.mu.Lock()
		_, gaveUp := j.givenUp[p]
		ended := j.done[p] || gaveUp // a given-up part is not pending
		s.mu.Unlock()
		if ended {
			continue
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) List(ctx context.Context, fn func(backends.Status) error) error {
	s.mu.Lock()
	var all []backends.Status
	for _, j := range s.jobs {
		all = append(all, j.Status)
	}
	s.mu.Unlock()
	sort.Slice(all, func(a, b int) bool { return all[a].ID < all[b].ID })
	for _, st := range all {
		if err := fn(st); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) ClaimReduce(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	defer s.mu.Unlock()
	if err := s.enter("ClaimReduce"); err != nil {
		return "", false, err
	}
	j, err := s.job(id)
	if err != nil {
		return "", false, err
	}
	now := time.Now()
	ready := (j.Remaining == 0 && !j.Failed) || (j.Failed && j.ReduceOnFailure)
	if !ready || j.ReduceSent || (j.claim != "" && now.Before(j.claimExp)) {
		return "", false, nil
	}
	j.claim, j.claimExp = rand.Text(), now.Add(lease)
	return j.claim, true, nil
}

func (s *memStore) ReleaseReduce(ctx context.Context, id, token string) error {
	defer s.mu.Unlock()
	if err := s.enter("ReleaseReduce"); err != nil {
		return err
	}
	j, err := s.job(id)
	if err != nil {
		return err
	}
	if j.claim == token {
		j.claim = ""
	}
	return nil
}

func (s *memStore) MarkReduceSent(ctx context.Context, id string) error {
	defer s.mu.Unlock()
	if err := s.enter("MarkReduceSent"); err != nil {
		return err
	}
	j, err := s.job(id)
	if err != nil {
		return err
	}
	j.ReduceSent, j.claim = true, ""
	return nil
}

func (s *memStore) MarkReduced(ctx context.Context, id string) error {
	defer s.mu.Unlock()
	if err := s.enter("MarkReduced"); err != nil {
		return err
	}
	j, err := s.job(id)
	if err != nil {
		return err
	}
	j.Reduced = true
	return nil
}

func (s *memStore) Delete(ctx context.Context, id string) error {
	defer s.mu.Unlock()
	if err := s.enter("Delete"); err != nil {
		return err
	}
	if _, err := s.job(id); err != nil {
		return err
	}
	delete(s.jobs, id)
	return nil
}

func (s *memStore) Close() error { return nil }

func (s *memStore) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *memStore) setFail(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] = err
}

// TestMemStore_Conformance: the engine's test store behaves as the contract
// says, so the engine's tests mean what they say.
func TestMemStore_Conformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store { return backends.New(newMemStore(), time.Minute) })
}
