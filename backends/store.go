package backends

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is the progress store wp's commands use: a Driver behind the checks
// every store needs alike, the way go-cloud's portable blob.Bucket wraps its
// drivers. Each method
//
//   - refuses a job id that ValidateJobID rejects, before the driver is
//     called, with an error matching ErrInvalidJobID (and, for every method
//     but CreateJob, ErrNotFound);
//   - bounds the call by the store's timeout (Pending and List stream any
//     number of pages: each page is bounded by the driver's own client
//     timeouts instead);
//   - names the operation and the job in its error ("complete part 3 of job
//     X: ..."), and says which limit ran out when the timeout did.
type Store struct {
	d       Driver
	timeout time.Duration
}

// New wraps a driver. timeout bounds each call; 0 means no bound beyond the
// caller's context.
func New(d Driver, timeout time.Duration) *Store {
	return &Store{d: d, timeout: timeout}
}

// Open parses rawURL, opens the driver registered for its scheme within
// timeout, and wraps it. Errors name the URL with its password redacted.
func Open(ctx context.Context, rawURL string, timeout time.Duration) (*Store, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	open, err := opener(u.Scheme, rawURL)
	if err != nil {
		return nil, err
	}
	s := &Store{timeout: timeout}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	d, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("progress store %s: %w", Redact(rawURL), s.explain(ctx, err))
	}
	s.d = d
	return s, nil
}

// Driver returns the driver behind s, for tests that reach into it.
func (s *Store) Driver() Driver { return s.d }

// Timeout is the bound on each call.
func (s *Store) Timeout() time.Duration { return s.timeout }

// bound is ctx limited by the store's timeout; with none, ctx itself (a
// context.WithCancel would make a Background context cancellable, and
// the SQLite driver pays a goroutine per statement for one that is).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// explain says which limit ran out when the store's own timeout did.
func (s *Store) explain(ctx context.Context, err error) error {
	if s.timeout > 0 && errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (gave up after %v; WP_STORE_TIMEOUT sets the limit)", err, s.timeout)
	}
	return err
}

// idError is an id no job can have.
type idError struct {
	err      error
	notFound bool
}

func (e *idError) Error() string { return e.err.Error() }
func (e *idError) Is(target error) bool {
	return target == ErrInvalidJobID || (e.notFound && target == ErrNotFound)
}

func checkID(id string, notFound bool) error {
	if err := ValidateJobID(id); err != nil {
		return &idError{err: err, notFound: notFound}
	}
	return nil
}

// call runs one bounded driver call for a job and gives its error the
// operation's name.
func (s *Store) call(ctx context.Context, what, id string, fn func(context.Context) error) error {
	if err := checkID(id, true); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := fn(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, s.explain(ctx, err))
	}
	return nil
}

// CreateJob implements Driver.CreateJob.
func (s *Store) CreateJob(ctx context.Context, job Job) error {
	if err := checkID(job.ID, false); err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	return s.call(ctx, "create job "+job.ID, job.ID, func(ctx context.Context) error {
		return s.d.CreateJob(ctx, job)
	})
}

// Complete implements Driver.Complete.
func (s *Store) Complete(ctx context.Context, jobID string, part int64) (Completion, error) {
	var c Completion
	err := s.call(ctx, fmt.Sprintf("complete part %d of job %s", part, jobID), jobID, func(ctx context.Context) error {
		var err error
		c, err = s.d.Complete(ctx, jobID, part)
		return err
	})
	return c, err
}

// MaxBatch is the most parts one CompleteParts takes: a batch comes from
// one map message, which SNS limits to 256 KiB.
const MaxBatch = 4096

// CompleteParts implements Driver.CompleteParts. It sorts parts and refuses
// an empty batch, one with a part twice or a negative part, and one of more
// than MaxBatch parts, before the driver is called.
func (s *Store) CompleteParts(ctx context.Context, jobID string, parts []int64) (Completion, error) {
	what := fmt.Sprintf("complete %d parts of job %s", len(parts), jobID)
	if len(parts) > 0 {
		what = fmt.Sprintf("complete parts %d to %d of job %s", slices.Min(parts), slices.Max(parts), jobID)
	}
	sorted := slices.Sorted(slices.Values(parts))
	switch {
	case len(sorted) == 0:
		return Completion{}, fmt.Errorf("%s: no parts", what)
	case len(sorted) > MaxBatch:
		return Completion{}, fmt.Errorf("%s: %d parts, more than %d", what, len(sorted), MaxBatch)
	case sorted[0] < 0:
		return Completion{}, fmt.Errorf("%s: part %d: %w", what, sorted[0], ErrPartRange)
	}
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return Completion{}, fmt.Errorf("%s: part %d given twice", what, sorted[i])
		}
	}
	var c Completion
	err := s.call(ctx, what, jobID, func(ctx context.Context) error {
		var err error
		c, err = s.d.CompleteParts(ctx, jobID, sorted)
		return err
	})
	return c, err
}

// PartStates implements Driver.PartStates (at most MaxBatch parts).
func (s *Store) PartStates(ctx context.Context, jobID string, parts []int64) ([]PartState, error) {
	if len(parts) > MaxBatch {
		return nil, fmt.Errorf("states of %d parts of job %s: more than %d", len(parts), jobID, MaxBatch)
	}
	var states []PartState
	err := s.call(ctx, fmt.Sprintf("read the states of %d parts of job %s", len(parts), jobID), jobID, func(ctx context.Context) error {
		var err error
		states, err = s.d.PartStates(ctx, jobID, parts)
		if err == nil && len(states) != len(parts) {
			err = fmt.Errorf("the store gave %d states for %d parts", len(states), len(parts))
		}
		return err
	})
	return states, err
}

// ShardSize implements Driver.ShardSize.
func (s *Store) ShardSize() int64 { return s.d.ShardSize() }

// SetExpiry implements Driver.SetExpiry, to the second (rounded up: a job
// never expires before the time asked for).
func (s *Store) SetExpiry(ctx context.Context, jobID string, at time.Time) error {
	at = ExpirySecond(at)
	return s.call(ctx, "set the expiry of job "+jobID, jobID, func(ctx context.Context) error {
		return s.d.SetExpiry(ctx, jobID, at)
	})
}

// ErrLongReason: a reason given to Fail is longer than MaxReason bytes.
var ErrLongReason = fmt.Errorf("reason longer than %d bytes", MaxReason)

// Fail implements Driver.Fail.
func (s *Store) Fail(ctx context.Context, jobID, reason string) error {
	if len(reason) > MaxReason {
		return fmt.Errorf("fail job %s: the reason is %d bytes: %w", jobID, len(reason), ErrLongReason)
	}
	return s.call(ctx, "fail job "+jobID, jobID, func(ctx context.Context) error {
		return s.d.Fail(ctx, jobID, reason)
	})
}

// Status implements Driver.Status.
func (s *Store) Status(ctx context.Context, jobID string) (Status, error) {
	var st Status
	err := s.call(ctx, "status of job "+jobID, jobID, func(ctx context.Context) error {
		var err error
		st, err = s.d.Status(ctx, jobID)
		return err
	})
	return st, err
}

// Peek implements Driver.Peek.
func (s *Store) Peek(ctx context.Context, jobID string) (Status, error) {
	var st Status
	err := s.call(ctx, "read job "+jobID, jobID, func(ctx context.Context) error {
		var err error
		st, err = s.d.Peek(ctx, jobID)
		return err
	})
	return st, err
}

// Pending implements Driver.Pending. It is not bounded by the timeout as a
// whole: it reads any number of pages.
func (s *Store) Pending(ctx context.Context, jobID string, fn func(part int64) error) error {
	if err := checkID(jobID, true); err != nil {
		return fmt.Errorf("pending parts of job: %w", err)
	}
	var fnErr error
	err := s.d.Pending(ctx, jobID, func(p int64) error {
		fnErr = fn(p)
		return fnErr
	})
	if err != nil && (fnErr == nil || err != fnErr) {
		return fmt.Errorf("pending parts of job %s: %w", jobID, err)
	}
	return err
}

// List implements Driver.List. It is not bounded by the timeout as a
// whole: it reads any number of pages.
func (s *Store) List(ctx context.Context, opt ListOptions, fn func(Status) error) error {
	var fnErr error
	err := s.d.List(ctx, opt, func(st Status) error {
		fnErr = fn(st)
		return fnErr
	})
	if err != nil && (fnErr == nil || err != fnErr) {
		return fmt.Errorf("list jobs: %w", err)
	}
	return err
}

// GiveUp implements Driver.GiveUp. It keeps at most MaxStderrTail bytes of
// info.Stderr (its end, cut at a character boundary), refuses a Reason of
// more than MaxReason bytes, and sets info.At to now when it is zero.
func (s *Store) GiveUp(ctx context.Context, jobID string, part int64, info GiveUpInfo) (Completion, error) {
	if len(info.Reason) > MaxReason {
		return Completion{}, fmt.Errorf("give up part %d of job %s: the reason is %d bytes: %w", part, jobID, len(info.Reason), ErrLongReason)
	}
	info.Stderr = StderrTail(info.Stderr)
	if info.At.IsZero() {
		info.At = time.Now()
	}
	var c Completion
	err := s.call(ctx, fmt.Sprintf("give up part %d of job %s", part, jobID), jobID, func(ctx context.Context) error {
		var err error
		c, err = s.d.GiveUp(ctx, jobID, part, info)
		return err
	})
	return c, err
}

// StderrTail is the end of s that a store keeps: at most MaxStderrTail
// bytes, starting at a character boundary, invalid UTF-8 replaced.
func StderrTail(s string) string {
	if len(s) > MaxStderrTail {
		s = s[len(s)-MaxStderrTail:]
		for i := 0; i < len(s) && i < utf8.UTFMax; i++ {
			if utf8.RuneStart(s[i]) {
				s = s[i:]
				break
			}
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// GivenUp implements Driver.GivenUp. Like Pending, it is not bounded by the
// timeout as a whole.
func (s *Store) GivenUp(ctx context.Context, jobID string, fn func(GivenUpPart) error) error {
	if err := checkID(jobID, true); err != nil {
		return fmt.Errorf("given-up parts of job: %w", err)
	}
	var fnErr error
	err := s.d.GivenUp(ctx, jobID, func(p GivenUpPart) error {
		fnErr = fn(p)
		return fnErr
	})
	if err != nil && (fnErr == nil || err != fnErr) {
		return fmt.Errorf("given-up parts of job %s: %w", jobID, err)
	}
	return err
}

// Retry implements Driver.Retry.
func (s *Store) Retry(ctx context.Context, jobID string, parts []int64) (moved []int64, err error) {
	err = s.call(ctx, "retry parts of job "+jobID, jobID, func(ctx context.Context) error {
		var err error
		moved, err = s.d.Retry(ctx, jobID, parts)
		return err
	})
	return moved, err
}

// RetryBatch is how many parts one Retry call takes in RetryAll: a call
// stays one bounded write (one Lua script, one transaction) however many
// parts are given up.
const RetryBatch = 1000

// RetryAll is Retry for any number of parts, RetryBatch at a time: moved
// is called with the parts each call moved, and the total is returned. On an
// error, the parts moved by earlier calls stay moved (and n counts them).
func (s *Store) RetryAll(ctx context.Context, jobID string, parts []int64, moved func([]int64)) (n int64, err error) {
	for i := 0; i < len(parts); i += RetryBatch {
		m, err := s.Retry(ctx, jobID, parts[i:min(i+RetryBatch, len(parts))])
		if err != nil {
			return n, err
		}
		if moved != nil {
			moved(m)
		}
		n += int64(len(m))
	}
	return n, nil
}

// ClaimReduce implements Driver.ClaimReduce.
func (s *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (token string, ok bool, err error) {
	err = s.call(ctx, "claim the reduce of job "+jobID, jobID, func(ctx context.Context) error {
		var err error
		token, ok, err = s.d.ClaimReduce(ctx, jobID, lease)
		return err
	})
	return token, ok, err
}

// ReleaseReduce implements Driver.ReleaseReduce.
func (s *Store) ReleaseReduce(ctx context.Context, jobID, token string) error {
	return s.call(ctx, "release the reduce claim of job "+jobID, jobID, func(ctx context.Context) error {
		return s.d.ReleaseReduce(ctx, jobID, token)
	})
}

// MarkReduceSent implements Driver.MarkReduceSent.
func (s *Store) MarkReduceSent(ctx context.Context, jobID string) error {
	return s.call(ctx, "record the reduce of job "+jobID+" as sent", jobID, func(ctx context.Context) error {
		return s.d.MarkReduceSent(ctx, jobID)
	})
}

// MarkReduced implements Driver.MarkReduced.
func (s *Store) MarkReduced(ctx context.Context, jobID string) error {
	return s.call(ctx, "record job "+jobID+" as reduced", jobID, func(ctx context.Context) error {
		return s.d.MarkReduced(ctx, jobID)
	})
}

// Delete implements Driver.Delete.
func (s *Store) Delete(ctx context.Context, jobID string) error {
	return s.call(ctx, "delete job "+jobID, jobID, func(ctx context.Context) error {
		return s.d.Delete(ctx, jobID)
	})
}

// Close implements Driver.Close.
func (s *Store) Close() error {
	if s.d == nil {
		return nil
	}
	return s.d.Close()
}
