package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

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
	// totals are the totals of wp jobs this process has read or created,
	// so that CompleteParts can check its parts without a read (wp run
	// always peeks first).
	totals *totalCache
}

// totalCache keeps job totals by id (at most maxCachedTotals: a wp process
// works on a few jobs).
type totalCache struct {
	mu sync.Mutex
	m  map[string]int64
}

const maxCachedTotals = 4096

func (c *totalCache) get(id string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[id]
	return n, ok
}

func (c *totalCache) put(id string, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedTotals {
		clear(c.m)
	}
	c.m[id] = total
}

func (c *totalCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
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
		totals:      &totalCache{m: map[string]int64{}},
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

// wrap turns SDK errors into errors a user can act on: a missing table is
// named, and a refusal for throughput (once the SDK's own retries are
// spent) matches backends.ErrThrottled.
func (st *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: table %s does not exist (check the name and AWS_REGION, or create it): %w", what, st.table, err)
	}
	if isThrottle(err) {
		return fmt.Errorf("%s: %w: %w", what, backends.ErrThrottled, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isThrottle tells DynamoDB's refusals for throughput: a provisioned table's
// (or index's) capacity exceeded, an on-demand table's or the account's
// request rate.
func isThrottle(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded":
		return true
	}
	return false
}

func isCondFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}
