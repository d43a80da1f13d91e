// Package backends defines the progress store contract that every wp store
// implements, the errors stores return, and the URL registry that picks a
// store by scheme (redis://, rediss://, sqlite://, dynamodb://).
//
// A job is a number of parts, each identified by an integer part id. A new
// job has every part pending. Workers complete parts; the completion that
// leaves no part pending "finishes" the job, and the finisher (or, after a
// crash, whoever comes later) sends the reduce message. The store is the only
// shared state: two wp processes on different machines agree only through it.
package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wp-tools/wp/internal/text"
)

// Errors every store returns. Callers check them with errors.Is; stores may
// wrap them with more context.
var (
	// ErrNotFound: the job does not exist (never created, or deleted).
	ErrNotFound = errors.New("no such job")
	// ErrExists: CreateJob was asked for an id that is already taken.
	ErrExists = errors.New("job already exists")
	// ErrPartRange: the part id is not a part of this job.
	ErrPartRange = errors.New("part id out of range")
	// ErrJobFailed: the job has failed; nothing more is recorded for its parts.
	ErrJobFailed = errors.New("job has failed")
	// ErrThrottled: the store refused the call for throughput (DynamoDB's
	// ProvisionedThroughputExceededException or ThrottlingException once
	// the SDK's own retries are spent, a Redis server busy running a
	// script): nothing was recorded, and the same call may succeed later.
	// Callers that must not lose a write (a completion after the command
	// succeeded) retry it for longer than other errors.
	ErrThrottled = errors.New("the progress store refused the call for throughput (throttled)")
	// ErrInvalidJobID: the job id is not one ValidateJobID accepts. Store
	// returns it from every method before the driver is called; for every
	// method but CreateJob the error also matches ErrNotFound, since no job
	// can have such an id.
	ErrInvalidJobID = errors.New("invalid job id")
)

// Job is what CreateJob stores.
type Job struct {
	ID    string
	Total int64 // number of parts, ids 0..Total-1; must be >= 1
	// Metadata is a JSON object (or nil for none). Status returns the same
	// JSON value (a store may reorder keys and respell numbers, as DynamoDB
	// does by keeping it as a map the legacy tools can read), and it is
	// sent in the reduce message.
	Metadata json.RawMessage
	// Tolerance is how many parts may be given up (GiveUp) before the job
	// fails; the zero value tolerates none.
	Tolerance Tolerance
	// ReduceOnFailure: the reduce is sent for a failed job too (carrying
	// the job's state), so a reduce step can clean up or alert.
	ReduceOnFailure bool
	// Digest identifies the input the job was created from
	// ("sha256:<hex>"), so that wp retry can refuse another file; "" when
	// unknown.
	Digest string
	// ExpireAfter is how long the job is kept: from CreatedAt+ExpireAfter
	// (rounded up to the second, ExpirySecond) on it is gone
	// (Status.ExpiresAt says when); 0 keeps it until Delete.
	ExpireAfter time.Duration
	// Batch and BatchBytes are how the job's parts are packed into map
	// messages: at most Batch consecutive parts and BatchBytes bytes a
	// message (0: one part a message). Stores only keep them, for wp local
	// and wp retry, which pack parts as wp create did.
	Batch, BatchBytes int
}

// Completion is what Complete learns about the job after recording a part.
type Completion struct {
	// Finisher is true for exactly one call per job: the one whose
	// completion removed the last pending part. Among any number of
	// concurrent or duplicate Complete calls for a job, exactly one sees
	// Finisher == true.
	Finisher bool
	// Done is true when no part of the job is pending after this call,
	// whether or not this call was the finisher (a duplicate delivery of an
	// already-complete part of a finished job sees Done && !Finisher).
	Done bool
	// Duplicate is true when the part had already been completed before.
	Duplicate bool
	// ReduceSent mirrors Status.ReduceSent at the time of the call, so the
	// caller knows whether a reduce may still need sending.
	ReduceSent bool
	// Failed is true when this call failed the job: a GiveUp that left
	// more parts given up than the job tolerates.
	Failed bool
	// Completed is how many parts this call completed that were not
	// complete before (given-up parts it converted included): 0 or 1 for
	// Complete, up to len(parts) for CompleteParts, 0 for GiveUp.
	Completed int
}

// GiveUpInfo is what is recorded of a part given up.
type GiveUpInfo struct {
	// ExitCode is the command's last exit status (128+N when signal N
	// killed it).
	ExitCode int
	// Signal names the signal that killed it ("" if none).
	Signal string
	// ReceiveCount is the delivery's ApproximateReceiveCount.
	ReceiveCount int
	// At is when it was given up (stores keep milliseconds).
	At time.Time
	// Stderr is the end of the command's stderr: at most MaxStderrTail
	// bytes of valid UTF-8.
	Stderr string
	// Reason says why the part was given up when it was not for its
	// command's exit ("dead-lettered: ...", when the dead-letter sweep
	// found its message); "" when it was. At most MaxReason bytes.
	Reason string
}

// MaxStderrTail is the most of a given-up part's stderr a store keeps.
const MaxStderrTail = 512

// MaxReason is the longest reason Fail takes, in bytes: a reason is one
// line a person reads in wp info, and a DynamoDB job item keeps only so
// much room (its 400 KB limit) for what is written on it after creation.
const MaxReason = 1024

// GivenUpPart is one given-up part, as GivenUp lists it.
type GivenUpPart struct {
	Part int64
	GiveUpInfo
}

// Status is a snapshot of one job.
type Status struct {
	ID        string
	Total     int64
	Remaining int64 // parts still pending
	Failed    bool
	Error     string // failure reason; empty unless Failed
	Metadata  json.RawMessage
	// ReduceSent: the reduce message was published and recorded (MarkReduceSent).
	ReduceSent bool
	// Reduced: the reduce command ran and exited 0 (MarkReduced).
	Reduced bool
	// CreatedAt is when CreateJob ran; zero when the store does not know
	// (jobs written by other tools).
	CreatedAt time.Time
	// FirstPart is the smallest valid part id: 0 for jobs written by wp and
	// watchbot-progress-py, 1 for jobs written by the Node library.
	FirstPart int64
	// GivenUp is how many parts have been given up (and not completed
	// since). Given-up parts are not pending: Total - Remaining - GivenUp
	// parts are complete.
	GivenUp int64
	// Tolerance, ReduceOnFailure and Digest are as the job was created
	// with (zero for jobs written by other tools).
	Tolerance       Tolerance
	ReduceOnFailure bool
	Digest          string
	// FailedByTolerance: the job failed because more parts were given up
	// than it tolerates (Retry can make it run again).
	FailedByTolerance bool
	// LastEnded is when a part of the job last ended (went from pending to
	// completed or given up; completing a given-up part ends nothing), by
	// the store's clock, to the millisecond; zero when none has, or the
	// store cannot tell (jobs written by other tools).
	LastEnded time.Time
	// RecentEnded parts ended in the last RecentWindow: the store counts
	// ended parts by the minute for RecentMinutes minutes, and the window
	// is the counted minutes up to now (shorter for a younger job). A
	// store that keeps no such count for the job (jobs written by other
	// tools) leaves RecentWindow 0.
	RecentEnded  int64
	RecentWindow time.Duration
	// ExpiresAt is when the job expires, to the second (zero: never).
	ExpiresAt time.Time
	// Batch and BatchBytes are the job's, as CreateJob stored them.
	Batch, BatchBytes int
	// Estimated: Remaining is an estimate (as Peek allows, and List), not
	// an exact count; the parts completed are then not known exactly
	// either.
	Estimated bool
	// ReadUnits is the read capacity this read consumed, where the store
	// meters reads (DynamoDB read units); 0 elsewhere.
	ReadUnits float64
	// EitherNumbering marks a job written by a legacy library whose
	// numbering (0..Total-1 or 1..Total) nothing tells any more: every id
	// from 0 to Total is taken, and FirstPart is 0. A store completes such
	// ids safely (one that is not pending is a duplicate under either
	// numbering). See HasPart.
	EitherNumbering bool
}

// LastPart is the largest valid part id.
func (s Status) LastPart() int64 {
	if s.EitherNumbering {
		return s.Total
	}
	return s.FirstPart + s.Total - 1
}

// HasPart tells whether part is a valid part id of the job.
func (s Status) HasPart(part int64) bool {
	return part >= s.FirstPart && part <= s.LastPart()
}

// State names the job's state: failed, reduced, complete or running.
func (s Status) State() string {
	switch {
	case s.Failed:
		return StateFailed
	case s.Reduced:
		return StateReduced
	case s.Remaining == 0:
		return StateComplete
	default:
		return StateRunning
	}
}

// Job states as State returns them.
const (
	StateRunning  = "running"
	StateFailed   = "failed"
	StateComplete = "complete"
	StateReduced  = "reduced"
)

// Driver is the contract every progress store implements; callers use it
// through the portable *Store (store.go), which checks job ids, bounds each
// call by a timeout and names the operation and job in errors, so a driver
// does none of that itself. Every method is safe for concurrent use by many
// goroutines and many processes on many machines sharing the same underlying
// database. Methods that take a job id return ErrNotFound (possibly wrapped)
// when the job does not exist; none of them ever creates a job except
// CreateJob. A driver is only ever called with ids that ValidateJobID
// accepts.
//
// Adding a store:
//
//  1. A package under backends/ exporting `type Store` (the driver) and
//     `func Open(ctx context.Context, u *url.URL) (*Store, error)`, which
//     reads every setting from the URL and fails fast (in bounded time,
//     with the URL's password never in an error) when the store cannot be
//     reached.
//  2. An init that calls Register for each URL scheme it serves, and a
//     blank import in the wp command's store.go.
//  3. A URL parsing table test, and a test that runs backendtest.Run
//     against a real instance of the database that the test starts itself.
//  4. Its errors wrap ErrNotFound, ErrExists, ErrPartRange and ErrJobFailed
//     as each method below says; they add what only the driver knows
//     (which item or key), never the operation and job id (Store adds
//     those).
//  5. A row in the README's Progress stores table, and a package doc
//     (doc.go) saying how a job is laid out and why a completion is atomic.
type Driver interface {
	// CreateJob stores a job with parts 0..Total-1 all pending. It returns
	// ErrExists if the id is taken (the existing job is left untouched). A
	// job becomes visible to Status, List and Complete only once it is fully
	// written: a CreateJob interrupted part way leaves either nothing visible
	// or the whole job, and calling CreateJob again with the same id then
	// succeeds or returns ErrExists.
	CreateJob(ctx context.Context, job Job) error

	// Complete records part as done and reports, atomically with that
	// write, whether the job is now done and whether this call finished it.
	// It is idempotent: completing a part twice records it once and the
	// second call has Duplicate == true and Finisher == false. Completing a
	// given-up part turns it into a completed one (Status.GivenUp drops by
	// one; it is neither Duplicate nor Finisher, the part having ended
	// before). Completing a part of a failed job records nothing and
	// returns ErrJobFailed.
	// A part id outside the job returns ErrPartRange; an unknown job
	// returns ErrNotFound and creates nothing.
	Complete(ctx context.Context, jobID string, part int64) (Completion, error)

	// CompleteParts is Complete for several parts of one job (a batch):
	// each part is recorded as Complete records it, in at most one write
	// per store shard (the parts p with the same p/ShardSize()), each of
	// them atomic: the parts of one shard are recorded all together or not
	// at all. The Completion is as Complete's for the batch as a whole:
	// Finisher is true for the one call of the job (CompleteParts,
	// Complete or GiveUp) that left no part pending; Duplicate when every
	// part was complete before; Completed counts the parts it completed.
	// parts must be distinct (the Store checks, and sorts them). A part
	// outside the job returns ErrPartRange and records nothing; a failed
	// job ErrJobFailed and nothing; an unknown job ErrNotFound.
	CompleteParts(ctx context.Context, jobID string, parts []int64) (Completion, error)

	// PartStates says of each of parts whether it is pending, complete or
	// given up, as of now (reading at most one item or key per store
	// shard): a worker handed a batch again runs only the parts still
	// pending. A part outside the job returns ErrPartRange.
	PartStates(ctx context.Context, jobID string, parts []int64) ([]PartState, error)

	// ShardSize is how many consecutive parts share a shard, so that
	// CompleteParts of parts in one shard is one write: parts
	// k*ShardSize() .. (k+1)*ShardSize()-1 of a job, numbered from 0. 0:
	// the store has no shards (any batch is one write).
	ShardSize() int64

	// Fail marks the job failed with a reason. A failed job stays failed:
	// calling Fail again keeps the first reason and returns nil. The
	// Store refuses a reason longer than MaxReason bytes (ErrLongReason)
	// before it reaches a driver.
	Fail(ctx context.Context, jobID, reason string) error

	// Status returns a snapshot of the job; Remaining is exact.
	Status(ctx context.Context, jobID string) (Status, error)

	// Peek is Status for the hot path (wp run reads it before every part):
	// one small read whatever the job's size. Every field is as Status
	// returns it except Remaining, which may be an estimate (Estimated): 0
	// exactly when no part is pending, otherwise between 1 and Total; and
	// LastEnded and RecentEnded, which may be older (RecentWindow may be
	// 0).
	Peek(ctx context.Context, jobID string) (Status, error)

	// Pending calls fn with each pending part id in ascending order. It
	// streams: memory use does not grow with the number of parts. If fn
	// returns an error, Pending stops and returns that error.
	Pending(ctx context.Context, jobID string, fn func(part int64) error) error

	// List calls fn once per job in the store, newest first (by
	// CreatedAt, then id; jobs whose creation time the store does not
	// know, written by other tools, after all others), reading the store
	// in bounded pages (never one unbounded call) and in proportion to the
	// jobs fn is given, not to their parts: a Status may estimate
	// Remaining (Estimated), and LastEnded may be older, as Peek's. Only jobs created at or after
	// opt.Since are listed (if it is set: jobs of unknown creation time
	// are then left out). If fn returns an error, List stops and returns
	// it.
	List(ctx context.Context, opt ListOptions, fn func(Status) error) error

	// SetExpiry makes every item or key of the job expire at at (to the
	// second; zero: never). A job whose expiry has passed is gone: every
	// method returns ErrNotFound for it, List leaves it out, CreateJob
	// may take its id again, and the store reclaims its space (Redis at
	// once, SQLite when a store is opened or a job ends, DynamoDB through
	// the table's time to live, within days).
	SetExpiry(ctx context.Context, jobID string, at time.Time) error

	// GiveUp records that part failed for good: the queue will not deliver
	// it again. A given-up part has ended: the job is done when every part
	// has completed or been given up, and the call that ends the last
	// pending part, Complete or GiveUp alike, is the one finisher. Giving
	// up a part that is already given up or complete changes nothing
	// (Duplicate). When this call leaves more parts given up than
	// job.Tolerance allows, it also fails the job, with the reason "N parts
	// given up (tolerance T)" and FailedByTolerance (Completion.Failed);
	// later parts are then skipped as after Fail. A failed job records
	// nothing and returns ErrJobFailed; otherwise errors are as Complete's.
	GiveUp(ctx context.Context, jobID string, part int64, info GiveUpInfo) (Completion, error)

	// GivenUp calls fn with each given-up part in ascending part order,
	// streaming as Pending does. If fn returns an error, GivenUp stops and
	// returns it.
	GivenUp(ctx context.Context, jobID string, fn func(GivenUpPart) error) error

	// Retry puts each part of parts that is given up back to pending and
	// returns the parts it moved; a part that is pending or complete is
	// left as it is, so two Retry calls at once, or a late completion
	// racing a Retry, count nothing twice. If the job had failed because
	// of its tolerance and the parts still given up are now within it, the
	// job runs again (Failed false). If parts moved and the reduce was
	// sent, the reduce state (claim, ReduceSent, Reduced) is cleared: the
	// job reduces again once they end. A job failed for another reason
	// returns ErrJobFailed and moves nothing.
	Retry(ctx context.Context, jobID string, parts []int64) (moved []int64, err error)

	// ClaimReduce takes the right to publish the job's reduce message for
	// lease. It succeeds (ok == true, with a token) only when the reduce
	// has not been recorded as sent, no other claim is live (a claim whose
	// lease has run out is dead), and either no part is pending and the
	// job has not failed, or the job has failed and was created with
	// ReduceOnFailure. So a finisher that crashed after Complete leaves a
	// claim that expires, and a later delivery of any part of the job can
	// claim and send the reduce.
	ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (token string, ok bool, err error)

	// ReleaseReduce gives up a claim (for example after the publish
	// failed) so that the next delivery can claim at once. Releasing a claim
	// that is not held by token is a no-op.
	ReleaseReduce(ctx context.Context, jobID, token string) error

	// MarkReduceSent records that the reduce message was published. It is
	// idempotent and clears any claim.
	MarkReduceSent(ctx context.Context, jobID string) error

	// MarkReduced records that the reduce command exited 0. Idempotent.
	MarkReduced(ctx context.Context, jobID string) error

	// Delete removes every trace of the job. Deleting an unknown job
	// returns ErrNotFound.
	Delete(ctx context.Context, jobID string) error

	// Close releases connections and files.
	Close() error
}

// PartState is where one part stands.
type PartState int

// The states of a part.
const (
	PartPending PartState = iota
	PartComplete
	PartGivenUp
)

func (p PartState) String() string {
	switch p {
	case PartPending:
		return "pending"
	case PartComplete:
		return "complete"
	case PartGivenUp:
		return "given up"
	}
	return fmt.Sprintf("PartState(%d)", int(p))
}

// RecentMinutes is how many minutes of ended parts a store counts for
// Status.RecentEnded.
const RecentMinutes = 10

// ListOptions shape a List.
type ListOptions struct {
	// Since: only jobs created at or after it (zero: every job).
	Since time.Time
	// Limit is how many jobs the caller means to take before it stops
	// (0: all), so that a store reads pages of about that size.
	Limit int
	// Scan: read every job the store holds, those its index of jobs does
	// not list too (on DynamoDB, jobs written by the other tools that no
	// wp command has read yet): slow, in proportion to the store's size.
	Scan bool
	// Note, when set, is told once why the listing reads more than the
	// jobs it lists (a DynamoDB table without wp's index is scanned).
	Note func(string)
}

type staleKey struct{}

// AllowStale marks ctx for reads that may be up to a second or so stale
// (wp info, wp ls): a store that can read more cheaply so (DynamoDB's
// eventually consistent reads, half the read units) does. Writes, and the
// reads that decide them, never are.
func AllowStale(ctx context.Context) context.Context {
	return context.WithValue(ctx, staleKey{}, true)
}

// StaleAllowed says whether ctx is marked by AllowStale.
func StaleAllowed(ctx context.Context) bool {
	ok, _ := ctx.Value(staleKey{}).(bool)
	return ok
}

// ExpirySecond is t rounded up to the second, as stores keep expiry times
// (DynamoDB's time to live is in seconds): never before t. The zero time
// stays zero.
func ExpirySecond(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// SortNewestFirst sorts jobs as List yields them: newest first by
// CreatedAt, then by id; jobs of unknown creation time last, by id.
func SortNewestFirst(jobs []Status) {
	slices.SortFunc(jobs, func(a, b Status) int {
		switch {
		case a.CreatedAt.IsZero() != b.CreatedAt.IsZero():
			if a.CreatedAt.IsZero() {
				return 1
			}
			return -1
		case !a.CreatedAt.Equal(b.CreatedAt):
			return b.CreatedAt.Compare(a.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// validJobID is ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$, checked by hand: that
// regular expression costs every wp process 1.5 ms to compile at start.
func validJobID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidateJobID rejects job ids that could not be stored safely in every
// store: 1 to 128 characters, letters, digits, '.', '_' and '-', starting
// with a letter or digit. Redis key and glob characters ({ } : * ? [ ]),
// separators and quotes are all refused.
func ValidateJobID(id string) error {
	if id == "" {
		return errors.New("job id is empty")
	}
	if !validJobID(id) {
		return fmt.Errorf("job id %q is not valid: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", text.Truncate(id, 64))
	}
	return nil
}
