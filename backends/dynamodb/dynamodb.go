// Package dynamodb is the DynamoDB progress store, registered as
// dynamodb://TABLE. Region, credentials and endpoint come from the AWS SDK's
// standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, instance and
// task roles, AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL).
//
// # Tables
//
// It works on the tables watchbot already has: hash key "id" (S), no sort
// key, no index. CreateTable makes one (on-demand billing).
//
// # Layout of a job written by wp
//
// The predecessors keep every pending part id in one number set on the job
// item. That stops fitting near 105,000 parts, and as an UpdateItem is
// charged by the item's size (1 WCU per KB), a completion costs about 3 WCU
// at 1,000 parts and 400 at 100,000, all on one partition key. wp spreads the
// pending set over small items instead, so a completion costs one write unit
// whatever the job's size:
//
//	id = JOB            the job item (always under 1 KB plus the metadata):
//	                    wp N (the layout version, 2; the marker that tells
//	                    wp jobs from legacy ones), parts BOOL true (the
//	                    guard, see "Old workers" below), total N, shardSize
//	                    N (256), groupSize N (256), shards N (number of
//	                    shard items), extent N (most shard items ever
//	                    written under this id, for cleanup), groups NS
//	                    (pending group numbers; gone when the job is
//	                    done), metadata (the JSON converted to M, readable
//	                    by the legacy tools), created N (unix ms), error S
//	                    (present = failed), wpReduceSent BOOL, reduced
//	                    BOOL, claimToken S and claimExp N (reduce claim),
//	                    and while CreateJob or Delete runs: creating S
//	                    (writer token, or "deleting") and lease N (unix
//	                    ms).
//	id = JOB#sNNNNN     shard N: parts NS = the pending offsets 0..255 of
//	                    parts N*256 .. N*256+255; t N = time of the last
//	                    completion (unix ms).
//	id = JOB#gNNNNN     group N: left NS = the pending offsets 0..255 of
//	                    shards N*256 .. N*256+255; t N as above.
//
// Job ids cannot hold '#' (backends.ValidateJobID), so these ids never clash
// with a job's. A shard with all 256 offsets pending holds 10 one-digit, 90
// two-digit and 156 three-digit numbers: 10*2 + 90*2 + 156*3 = 668 bytes
// (a DynamoDB number takes 1 byte per 2 significant digits, plus 1), plus
// the id (at most 128 + 7 bytes), the names "id", "parts" and "t" (8 bytes)
// and t (8 bytes): at most about 820 bytes, under the 1 KB write unit. A
// group item is the same size. 512 offsets per shard would not fit in 1 KB.
//
// # Cost of a completion
//
// Complete makes one request in the common case: UpdateItem on the shard,
// "DELETE parts :p SET t = :now" on condition contains(parts, :p) and
// attribute_not_exists(f): 1 WCU, and no read. The completion that empties
// a shard (1 in 256) also deletes the shard from its group item (1 WCU), and
// the one that empties a group (1 in 65,536) deletes the group from the job
// item (the job item's size in KB, a few WCU). On average that is
// 1 + 1/256 + (job item KB)/65536, about 1.004 WCU per part, at 1,000 parts
// as at 1,000,000 (measured on dynalite with ReturnConsumedCapacity: 1.004
// to 1.005). No item takes every write: the job item is written once per
// 65,536 parts.
//
// Everything unusual makes that condition fail: a duplicate, an unknown job
// (no shard item), a part out of range (no such offset or shard), a legacy
// job (no shard items), a failed job (Fail marks every pending shard with
// f). Only then does Complete read the job item (strongly consistent, 1 RCU)
// to tell which, and for a duplicate the shard item. A refused conditional
// write still costs 1 WCU, so a duplicate costs 1 WCU and about 2 RCU, and a
// completion of a legacy job 1 WCU more than the legacy write itself.
//
// A job being written by CreateJob is invisible, but its shard items exist
// while it is written: a Complete reaching them then (it would need a map
// message of a job not yet created) records the part. If that CreateJob is
// abandoned and taken over, the rewrite erases it.
//
// # Why sets at every level, and no counter
//
// Without transactions (dynalite has no TransactWriteItems, and wp uses only
// single-item conditional writes) a counter of pending shards cannot be
// decremented exactly once: a process that dies between emptying a shard and
// decrementing leaves the job stuck, and retrying could decrement twice.
// Deleting a member from a set on condition that it is there is idempotent,
// so every level is a set: the caller whose conditional delete removed the
// last group is the one finisher. If a process dies after emptying a shard
// (or group) and before telling the level above, the next completion of any
// part of that shard that finds it empty for more than 10 seconds (its t)
// finishes the propagation; such a late repair reports Done but not
// Finisher, and the reduce is then sent through ClaimReduce as the contract
// provides for crashed finishers. The 10 second wait keeps a live finisher
// (which propagates within milliseconds) from being overtaken.
//
// # CreateJob
//
// CreateJob puts the job item in a "creating" state (invisible to every
// other method) on condition attribute_not_exists(id), writes the shard and
// group items with BatchWriteItem (25 items a call, 16 calls in flight,
// unprocessed items retried with exponential backoff), then removes the
// creating state on condition that it still holds its token. While it writes
// it renews a 60 second lease every 15 seconds. A later CreateJob of the same
// id finding a creating item whose lease ran out (the writer died or was
// interrupted; an interrupted writer gives up its lease at once) takes it
// over, deletes the leftovers beyond the new job's extent and writes the
// job again; one whose lease is live returns ErrExists.
//
// # Legacy jobs
//
// Items without the wp marker were written by the Node library
// (@mapbox/watchbot-progress: parts 1..N) or watchbot-progress-py (parts
// 0..N-1): one item, hash key id, parts NS of pending part ids, total N,
// error S, metadata M, reduceSent BOOL (the Node helper; the Python library
// instead sets metadata to {"reduce_message_sent": true}). wp reads them and
// completes their parts the way they do (DELETE parts :p on the job item),
// with the condition contains(parts, :p) that they lacked.
//
// Numbering. The two libraries write the same item, so which numbering a job
// has is told only by its pending set: part N pending means 1-based (Node),
// part 0 pending means 0-based (Python). Once both ends are gone nothing on
// the item tells. So wp records the numbering in wpFirstPart the first time
// it reads the set while it still tells (Peek, which wp run makes before
// every part; Status, List, Pending; and Complete, whose write returns the
// set as it was): one conditional write of the item's size, once per job,
// best effort (a read-only policy just leaves it for the next reader). A
// job that neither library nor wp can number any more (every end completed
// by the libraries before wp first saw it) accepts every id from 0 to N.
// That is safe: an id in 1..N-1 is a part under either numbering; 0 and N
// are then both no longer pending, so each is either a duplicate or not a
// part at all, and completing it records nothing. Its delivery of a
// finished job still finds the reduce unsent and sends it. Status reports
// such a job's FirstPart as 0, the smallest id it accepts.
//
// The reduce. ClaimReduce takes either library's flag as proof that the
// reduce of a legacy job was sent. MarkReduceSent records it the way the
// job's library reads it: reduceSent for the Node library, and, unless the
// job is known to be the Node library's, the Python library's
// metadata.reduce_message_sent, set inside the user's metadata map (SET
// metadata.reduce_message_sent) rather than replacing the map as the
// Python library does. A Python worker handed a duplicate after wp sent
// the reduce then sends none.
//
// # Old workers on wp jobs
//
// During a rolling deploy an old worker (the Python library's Part, the
// Node library's completePart) may be handed a message of a job wp created.
// Before layout 2, wp's job item had no parts set, which both libraries read
// as "every part done": the old worker sent a reduce at once and the Python
// one set metadata.reduce_message_sent, which wp took as proof and never
// sent the real reduce. Layout 2 makes them fail instead, for the price of
// one small attribute on the job item and nothing per completion:
//
//   - the job item's parts is BOOL true, not a number set, so the
//     libraries' completion (UpdateItem DELETE parts :p) fails with
//     ValidationException ("An operand in the update expression has an
//     incorrect data type"): the part is not completed, no reduce is sent,
//     the worker fails and the message is retried until a wp worker gets
//     it;
//   - their status calls fail on it too (Python: len(True) is a TypeError;
//     Node: true.values is undefined, a TypeError), rather than reporting
//     progress 1; the Python Part with fail_job_on reads the status first,
//     so it fails before running the user's code;
//   - wp records its own reduce as wpReduceSent and reads neither library's
//     flag on a wp job, so an old worker's flag can never stand in for the
//     real reduce.
//
// The shard and group items have no total, so the Python library's
// list_jobs, which reads every item of the table as a job, fails on them
// with KeyError: 'total'.
//
// Jobs of layout 1 (no guard, wp's reduce flag in reduceSent) are read and
// completed as before; their reduce flag is reduceSent or wpReduceSent, and
// the Python library's flag is ignored on them as on every wp job. The
// first wp command that reads one (Peek, Status, List) adds the guard to
// it (one write, once per job, best effort), so that old workers fail on
// it from then on too; it keeps wp 1.
//
// # Bounded waits
//
// Each request is tried at most 4 times, each attempt bounded by a 15 second
// HTTP timeout (5 seconds to connect), with at most 2 seconds between
// attempts: an unreachable endpoint fails a call within about a minute, a
// refused connection within a few seconds.
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/awslog"
)

func init() {
	backends.Register("dynamodb", func(ctx context.Context, u *url.URL) (backends.Driver, error) {
		st, err := Open(ctx, u)
		if err != nil {
			return nil, err
		}
		return st, nil
	})
}

const (
	// layoutVersion is stored in the job item's wp attribute. Layout 2
	// added the parts guard and wpReduceSent (see the package comment);
	// jobs of layout 1 are still read and completed.
	layoutVersion = 2
	// shardSize parts per shard item, groupSize shards per group item: see
	// the package comment for the item-size arithmetic.
	shardSize = 256
	groupSize = 256
	// maxTotal keeps the job item's groups set well under 400 KB:
	// 2^32 parts are 65,536 groups of up to 5 digits, about 260 KB.
	maxTotal = 1 << 32

	// Request bounds (see the package comment).
	maxAttempts    = 4
	maxBackoff     = 2 * time.Second
	attemptTimeout = 15 * time.Second
	dialTimeout    = 5 * time.Second

	// batchWorkers is how many BatchWriteItem / BatchGetItem calls run at once.
	batchWorkers = 16
)

// Store is the DynamoDB progress store.
type Store struct {
	db    *ddb.Client
	table string
	now   func() time.Time
	// repairAfter: how long a shard or group must have been empty before a
	// later completion finishes its propagation (see the package comment).
	repairAfter time.Duration
	// lease and renew: the CreateJob writer's lease.
	lease, renew time.Duration
}

var _ backends.Driver = (*Store)(nil)

// Open opens the table that a dynamodb://TABLE URL names, with the AWS
// configuration from the environment (LoadConfig). New does the same for a
// configuration the caller holds.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	table := u.Host
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return nil, fmt.Errorf("a dynamodb store URL is dynamodb://TABLE (table name only; region, credentials and endpoint come from the AWS environment)")
	}
	if table == "" {
		return nil, fmt.Errorf("no table name: use dynamodb://TABLE")
	}
	cfg, err := LoadConfig(ctx)
	if err != nil {
		return nil, err
	}
	return New(cfg, table), nil
}

// LoadConfig loads the AWS configuration from the standard chain (env,
// shared files, roles) with wp's bounded retries and timeouts.
func LoadConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(httpClient()),
		config.WithRetryer(newRetryer),
		config.WithLogger(awslog.Logger()),
	)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region: set AWS_REGION (for example AWS_REGION=us-east-1)")
	}
	return cfg, nil
}

// httpClient bounds each attempt. It is the SDK's buildable client, so that
// AWS_CA_BUNDLE still works.
func httpClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithTimeout(attemptTimeout).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 64 })
}

func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		// The default client-side retry quota fails requests outright
		// when many calls retry at once (16 batch writers under
		// throttling): bound the attempts instead.
		o.RateLimiter = ratelimit.None
	})
}

// New returns a store on table using cfg. The caller's cfg keeps its own
// retryer and HTTP client; LoadConfig gives wp's bounded ones.
func New(cfg aws.Config, table string) *Store {
	return &Store{
		db:          ddb.NewFromConfig(cfg),
		table:       table,
		now:         time.Now,
		repairAfter: 10 * time.Second,
		lease:       60 * time.Second,
		renew:       15 * time.Second,
	}
}

// Close releases nothing: the SDK client holds only idle HTTP connections.
func (st *Store) Close() error { return nil }

// TableFromARN returns the table name from a DynamoDB table ARN
// (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME, as watchbot's ProgressTable
// gives it) or returns a bare table name unchanged.
func TableFromARN(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("table name is empty")
	}
	if !strings.HasPrefix(s, "arn:") {
		if strings.ContainsAny(s, ":/") {
			return "", fmt.Errorf("%q is neither a table name nor a table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME)", s)
		}
		return s, nil
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[2] != "dynamodb" || !strings.HasPrefix(parts[5], "table/") {
		return "", fmt.Errorf("%q is not a DynamoDB table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME)", s)
	}
	name := strings.TrimPrefix(parts[5], "table/")
	// A stream or index ARN continues with /stream/... or /index/...
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[:i]
	}
	if name == "" {
		return "", fmt.Errorf("%q has no table name after :table/", s)
	}
	return name, nil
}

// CreateTable creates a progress table: hash key id (S), on-demand billing.
// It waits until the table is ACTIVE (at most 5 minutes) and fails with a
// clear error if the table exists.
func CreateTable(ctx context.Context, cfg aws.Config, name string) error {
	db := ddb.NewFromConfig(cfg)
	_, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: it already exists (pick another name, or use it as is)", name)
		}
		return fmt.Errorf("create table %s: %w", name, err)
	}
	w := ddb.NewTableExistsWaiter(db, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay = 20 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)}, 5*time.Minute); err != nil {
		return fmt.Errorf("create table %s: waiting for it to become active: %w", name, err)
	}
	return nil
}

// wrap turns SDK errors into errors a user can act on.
func (st *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: table %s does not exist (check the name and AWS_REGION, or create it): %w", what, st.table, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isCondFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}
