package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// URL options read by wp itself; they are taken out of the URL before
// go-redis parses it.
const (
	// optAddr names one more seed node of a Redis Cluster (go-redis's
	// ParseClusterURL convention); it may be given many times.
	optAddr = "addr"
	// optMinReplicas: every write that matters waits (WAIT) until this
	// many replicas have it.
	optMinReplicas = "min_replicas"
	// optReplicaTimeout bounds that wait.
	optReplicaTimeout = "replica_timeout"

	defaultReplicaTimeout = time.Second
)

// options is what a redis:// or rediss:// URL says.
type options struct {
	// node is the client options of the URL's own node, with this
	// package's defaults; a cluster client is built from them.
	node *goredis.Options
	// seeds are host:port of the URL's node, then of each ?addr=.
	seeds []string
	// minReplicas > 0 makes writes wait for that many replicas, at most
	// replicaTimeout.
	minReplicas    int
	replicaTimeout time.Duration
}

// parseOptions turns a redis:// or rediss:// URL into client options with
// this package's defaults. Its errors never hold the password.
func parseOptions(u *url.URL) (*options, error) {
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis store: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errors.New("redis store URL must look like redis://[:password@]host[:port][/db]")
	}
	pw, _ := u.User.Password()
	redact := func(s string) string {
		if pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
		return s
	}
	o := &options{replicaTimeout: defaultReplicaTimeout}
	q := u.Query()
	one := func(name string) (string, error) {
		if len(q[name]) > 1 {
			return "", fmt.Errorf("redis store URL: option %s is given %d times", name, len(q[name]))
		}
		return q.Get(name), nil
	}
	if q.Has(optMinReplicas) {
		v, err := one(optMinReplicas)
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("redis store URL: %s=%q is not a number of replicas (0 or more)", optMinReplicas, redact(v))
		}
		o.minReplicas = n
	}
	if q.Has(optReplicaTimeout) {
		v, err := one(optReplicaTimeout)
		if err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Errorf("redis store URL: %s=%q is not a duration of at least 1ms (such as 500ms or 2s)", optReplicaTimeout, redact(v))
		}
		if o.minReplicas == 0 {
			return nil, fmt.Errorf("redis store URL: %s has no effect without %s", optReplicaTimeout, optMinReplicas)
		}
		o.replicaTimeout = d
	}
	var more []string
	for _, a := range q[optAddr] {
		h, p, err := net.SplitHostPort(a)
		if err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("redis store URL: %s=%q is not host:port", optAddr, redact(a))
		}
		more = append(more, net.JoinHostPort(h, p))
	}
	q.Del(optMinReplicas)
	q.Del(optReplicaTimeout)
	q.Del(optAddr)
	rest := *u
	rest.RawQuery = q.Encode()

	opt, err := goredis.ParseURL(rest.String())
	if err != nil {
		// go-redis's messages name only the bad part (db, option,
		// path), but a url.Error would quote the whole URL: keep only
		// its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis store URL: %s", redact(err.Error()))
	}
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
	if !q.Has("pipeline_pool_size") {
		// Pipelines (batched completions, waited writes, List) share
		// the main pool: go-redis's separate pipeline pool would cost
		// a wp run process a second connection for a waited write.
		opt.PipelinePoolSize = -1
	}
	opt.DialerRetries = defaultDialAttempts
	opt.ContextTimeoutEnabled = true
	// wp talks to plain Redis; skip the extra handshake for managed
	// service maintenance notices.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if o.minReplicas > 0 && opt.ReadTimeout > 0 && o.replicaTimeout >= opt.ReadTimeout {
		// WAIT shares a pipeline with the write, and the pipeline's
		// reply is waited for at most read_timeout.
		return nil, fmt.Errorf("redis store URL: %s=%v must be shorter than read_timeout (%v)", optReplicaTimeout, o.replicaTimeout, opt.ReadTimeout)
	}
	o.node = opt
	o.seeds = append([]string{opt.Addr}, more...)
	return o, nil
}

// clusterOptions are the options of a cluster client seeded with every
// seed, carrying over the URL's TLS, credentials, timeouts and pool.
func (o *options) clusterOptions() *goredis.ClusterOptions {
	n := o.node
	return &goredis.ClusterOptions{
		Addrs:                    o.seeds,
		ClientName:               n.ClientName,
		Protocol:                 n.Protocol,
		Username:                 n.Username,
		Password:                 n.Password,
		MaxRetries:               n.MaxRetries,
		MinRetryBackoff:          n.MinRetryBackoff,
		MaxRetryBackoff:          n.MaxRetryBackoff,
		DialTimeout:              n.DialTimeout,
		DialerRetries:            n.DialerRetries,
		DialerRetryTimeout:       n.DialerRetryTimeout,
		ReadTimeout:              n.ReadTimeout,
		WriteTimeout:             n.WriteTimeout,
		ContextTimeoutEnabled:    n.ContextTimeoutEnabled,
		PoolFIFO:                 n.PoolFIFO,
		PoolSize:                 n.PoolSize,
		MaxConcurrentDials:       n.MaxConcurrentDials,
		PoolTimeout:              n.PoolTimeout,
		MinIdleConns:             n.MinIdleConns,
		MaxIdleConns:             n.MaxIdleConns,
		MaxActiveConns:           n.MaxActiveConns,
		ConnMaxIdleTime:          n.ConnMaxIdleTime,
		ConnMaxLifetime:          n.ConnMaxLifetime,
		ConnMaxLifetimeJitter:    n.ConnMaxLifetimeJitter,
		PipelinePoolSize:         n.PipelinePoolSize,
		ReadBufferSize:           n.ReadBufferSize,
		WriteBufferSize:          n.WriteBufferSize,
		TLSConfig:                n.TLSConfig,
		DisableIdentity:          n.DisableIdentity,
		MaintNotificationsConfig: n.MaintNotificationsConfig,
		// wp sends only single-key commands and scripts, which go to
		// their key's slot. Routing policies would make every process
		// fetch COMMAND (a reply of tens of KB) before its first call.
		DisableRoutingPolicies: true,
	}
}

// nodeInfo is what INFO says about a server.
type nodeInfo struct {
	cluster bool   // cluster_enabled:1
	replica bool   // role:slave
	master  string // a replica's master, host:port
}

// parseInfo reads the fields of INFO replication and INFO cluster replies.
func parseInfo(replies ...string) nodeInfo {
	f := map[string]string{}
	for _, r := range replies {
		for _, line := range strings.Split(r, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				f[k] = v
			}
		}
	}
	ni := nodeInfo{cluster: f["cluster_enabled"] == "1", replica: f["role"] == "slave"}
	if ni.replica {
		ni.master = net.JoinHostPort(f["master_host"], f["master_port"])
	}
	return ni
}

// probe connects to the first seed that answers and asks it, in one round
// trip (INFO replication cluster, in place of a PING), whether it is a
// cluster node and whether it is a replica. It returns that seed's client,
// still open, whose connection the standalone store goes on using. (Not a
// pipeline of two INFOs: go-redis runs pipelines on a pool of their own,
// which would cost a second connection.)
func (o *options) probe(ctx context.Context) (*goredis.Client, nodeInfo, error) {
	var errs []string
	var last error
	for _, seed := range o.seeds {
		opt := *o.node
		opt.Addr = seed
		c := goredis.NewClient(&opt)
		info, err := c.Info(ctx, "replication", "cluster").Result()
		if err != nil && strings.HasPrefix(err.Error(), "ERR") {
			// Before Redis 7, INFO takes one section: ask for the
			// default ones, which hold both.
			info, err = c.Info(ctx).Result()
		}
		if err == nil {
			return c, parseInfo(info), nil
		}
		if strings.Contains(err.Error(), "SELECT is not allowed in cluster mode") {
			c.Close()
			return nil, nodeInfo{}, fmt.Errorf("%s runs in cluster mode, which has only db 0; the URL asks for db %d", seed, o.node.DB)
		}
		if strings.HasPrefix(err.Error(), "NOPERM") {
			// A user without +info: assume a standalone primary, as
			// before INFO was asked, if it answers PING.
			if perr := c.Ping(ctx).Err(); perr == nil {
				return c, nodeInfo{}, nil
			}
		}
		c.Close()
		last = err
		errs = append(errs, fmt.Sprintf("%s: %v", seed, err))
		if !isNetError(err) || ctx.Err() != nil {
			// A wrong password or an ended context: the other seeds
			// would answer the same.
			break
		}
	}
	if len(errs) == 1 {
		return nil, nodeInfo{}, last
	}
	return nil, nodeInfo{}, &seedsError{msg: "no seed node answered: " + strings.Join(errs, "; "), last: last}
}

// seedsError says what every seed answered, and unwraps to the last error
// (for errors.Is(err, context.DeadlineExceeded)).
type seedsError struct {
	msg  string
	last error
}

func (e *seedsError) Error() string { return e.msg }
func (e *seedsError) Unwrap() error { return e.last }

// connect opens the client the URL calls for: a cluster client when the
// first seed that answers runs in cluster mode, else a client of that
// server. On a cluster it also reads the slot map.
func (o *options) connect(ctx context.Context) (goredis.UniversalClient, *goredis.ClusterClient, error) {
	c, ni, err := o.probe(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !ni.cluster {
		switch {
		case ni.replica:
			c.Close()
			return nil, nil, fmt.Errorf("%s is a read-only replica of %s: point the URL at the primary", c.Options().Addr, ni.master)
		case len(o.seeds) > 1:
			c.Close()
			return nil, nil, fmt.Errorf("%s= names more nodes of a Redis Cluster, but %s is not in cluster mode", optAddr, c.Options().Addr)
		}
		return c, nil, nil
	}
	c.Close()
	if o.node.DB != 0 {
		return nil, nil, fmt.Errorf("%s runs in cluster mode, which has only db 0; the URL asks for db %d", o.node.Addr, o.node.DB)
	}
	cc := goredis.NewClusterClient(o.clusterOptions())
	// Read the slot map now (ForEachMaster does), so that a cluster that
	// does not answer is reported here. The masters are not pinged: the
	// first call dials its key's master, and each dial would cost a wp
	// run process a connection handshake.
	var masters atomic.Int32 // ForEachMaster calls fn concurrently
	err = cc.ForEachMaster(ctx, func(context.Context, *goredis.Client) error {
		masters.Add(1)
		return nil
	})
	if err == nil && masters.Load() == 0 {
		err = errors.New("no master serves any slot (has the cluster been created?)")
	}
	if err != nil {
		cc.Close()
		return nil, nil, fmt.Errorf("redis cluster seeded by %s: %w", strings.Join(o.seeds, ", "), err)
	}
	return cc, cc, nil
}

// isNetError reports an error of the network (dial, reset, timeout), as
// opposed to an answer from Redis.
func isNetError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded)
}

// isDialError reports a connection that could not be made (so nothing was
// sent on it).
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
