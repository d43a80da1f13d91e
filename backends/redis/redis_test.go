package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
	"github.com/wp-tools/wp/internal/testservers"
)

// shared is the redis-server most tests and the benchmark use; tests that
// need a server of their own (a password, a stopped process) start one.
var shared *testservers.Server

func TestMain(m *testing.M) {
	s, err := testservers.StartRedis()
	if err != nil {
		fmt.Fprintf(os.Stderr, "backends/redis tests need a real redis-server: %v\n", err)
		os.Exit(1)
	}
	shared = s
	code := m.Run()
	s.Stop()
	stopSharedCluster()
	if trustedPKI.dir != "" {
		os.RemoveAll(trustedPKI.dir)
	}
	os.Exit(code)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// openShared opens the shared server's db 0, emptied.
func openShared(t testing.TB) *Store {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	st, err := backends.Open(ctx, shared.URL, 0)
	if err != nil {
		t.Fatalf("open %s: %v", shared.URL, err)
	}
	t.Cleanup(func() { st.Close() })
	rs := st.Driver().(*Store)
	if err := rs.c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("FLUSHDB: %v", err)
	}
	return rs
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store { return backends.New(openShared(t), time.Minute) })
}

func TestParseURL(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	tests := []struct {
		name    string
		url     string
		wantErr string // substring; empty for success
		check   func(t *testing.T, addr string, db int, tls bool, user, pw string)
	}{
		{name: "plain", url: "redis://127.0.0.1:6390", check: func(t *testing.T, addr string, db int, tls bool, user, pw string) {
			if addr != "127.0.0.1:6390" || db != 0 || tls || pw != "" {
				t.Errorf("got addr %q db %d tls %v pw %q, want 127.0.0.1:6390 0 false none", addr, db, tls, pw)
			}
		}},
		{name: "default port", url: "redis://cache.internal", check: func(t *testing.T, addr string, db int, tls bool, user, pw string) {
			if addr != "cache.internal:6379" {
				t.Errorf("addr = %q, want cache.internal:6379", addr)
			}
		}},
		{name: "tls password db", url: "rediss://:" + secret + "@cache.internal:6380/2", check: func(t *testing.T, addr string, db int, tls bool, user, pw string) {
			if addr != "cache.internal:6380" || db != 2 || !tls || pw != secret || user != "" {
				t.Errorf("got addr %q db %d tls %v user %q pw %q", addr, db, tls, user, pw)
			}
		}},
		{name: "user and password", url: "redis://worker:" + secret + "@h/3", check: func(t *testing.T, addr string, db int, tls bool, user, pw string) {
			if user != "worker" || pw != secret || db != 3 {
				t.Errorf("got user %q pw %q db %d, want worker, the secret, 3", user, pw, db)
			}
		}},
		{name: "db in query", url: "redis://h/0?db=5", check: func(t *testing.T, addr string, db int, tls bool, user, pw string) {
			if db != 5 {
				t.Errorf("db = %d, want 5", db)
			}
		}},
		{name: "bad db", url: "redis://:" + secret + "@h/first", wantErr: "invalid database number"},
		{name: "two path parts", url: "redis://:" + secret + "@h/1/2", wantErr: "invalid URL path"},
		{name: "unknown option", url: "redis://:" + secret + "@h/0?colour=blue", wantErr: "unexpected option: colour"},
		{name: "bad option value", url: "redis://:" + secret + "@h/0?dial_timeout=soon", wantErr: "dial_timeout"},
		{name: "min_replicas not a number", url: "redis://:" + secret + "@h/0?min_replicas=abc", wantErr: `min_replicas="abc" is not a number`},
		{name: "min_replicas negative", url: "redis://:" + secret + "@h/0?min_replicas=-1", wantErr: `min_replicas="-1"`},
		{name: "min_replicas twice", url: "redis://:" + secret + "@h/0?min_replicas=1&min_replicas=2", wantErr: "min_replicas is given 2 times"},
		{name: "replica_timeout not a duration", url: "redis://:" + secret + "@h/0?min_replicas=1&replica_timeout=soon", wantErr: `replica_timeout="soon"`},
		{name: "replica_timeout alone", url: "redis://:" + secret + "@h/0?replica_timeout=1s", wantErr: "replica_timeout has no effect without min_replicas"},
		{name: "replica_timeout past read_timeout", url: "redis://:" + secret + "@h/0?min_replicas=1&replica_timeout=5s", wantErr: "must be shorter than read_timeout"},
		{name: "addr not host:port", url: "redis://:" + secret + "@h/0?addr=other-host", wantErr: `addr="other-host" is not host:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := backends.ParseURL(tc.url)
			if err != nil {
				t.Fatalf("backends.ParseURL: %v", err)
			}
			opt, err := parseOptions(u)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("parseOptions(%s) succeeded, want an error with %q", backends.Redact(tc.url), tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not say %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds the password", err)
				}
				// Through the registry too: the whole chain a user reads.
				_, err = backends.Open(testCtx(t, time.Minute), tc.url, 0)
				if err == nil {
					t.Fatal("backends.Open succeeded, want an error")
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("backends.Open error %q holds the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptions(%s): %v", backends.Redact(tc.url), err)
			}
			tc.check(t, opt.node.Addr, opt.node.DB, opt.node.TLSConfig != nil, opt.node.Username, opt.node.Password)
		})
	}
}

func TestParseURL_Defaults(t *testing.T) {
	u, _ := backends.ParseURL("redis://h/0")
	o, err := parseOptions(u)
	if err != nil {
		t.Fatal(err)
	}
	opt := o.node
	if opt.DialTimeout != defaultDialTimeout || opt.ReadTimeout != defaultReadTimeout || opt.WriteTimeout != defaultWriteTimeout {
		t.Errorf("timeouts dial %v read %v write %v, want %v %v %v", opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, defaultDialTimeout, defaultReadTimeout, defaultWriteTimeout)
	}
	if got, want := opt.MaxRetries, defaultMaxRetries; got != want {
		t.Errorf("MaxRetries = %d, want %d", got, want)
	}
	if opt.PoolSize < 32 {
		t.Errorf("PoolSize = %d, want at least 32", opt.PoolSize)
	}
	if !opt.ContextTimeoutEnabled {
		t.Error("ContextTimeoutEnabled is off: a caller's deadline would not bound a call")
	}

	u, _ = backends.ParseURL("redis://h/0?dial_timeout=1s&read_timeout=2&max_retries=0&pool_size=7")
	o, err = parseOptions(u)
	if err != nil {
		t.Fatal(err)
	}
	opt = o.node
	if opt.DialTimeout != time.Second || opt.ReadTimeout != 2*time.Second || opt.MaxRetries != 0 || opt.PoolSize != 7 {
		t.Errorf("URL options not honoured: dial %v read %v retries %d pool %d", opt.DialTimeout, opt.ReadTimeout, opt.MaxRetries, opt.PoolSize)
	}
}

// TestParseURL_WpOptions: wp's own URL options (seeds, replication waits)
// are read and kept from go-redis, whose other options still work.
func TestParseURL_WpOptions(t *testing.T) {
	u, _ := backends.ParseURL("rediss://:pw@cfg.example:6380/0?addr=n2.example:6380&addr=10.0.0.3:7000&min_replicas=2&replica_timeout=750ms&read_timeout=3s")
	o, err := parseOptions(u)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(o.seeds, ","), "cfg.example:6380,n2.example:6380,10.0.0.3:7000"; got != want {
		t.Errorf("seeds = %s, want %s", got, want)
	}
	if o.minReplicas != 2 || o.replicaTimeout != 750*time.Millisecond {
		t.Errorf("min_replicas %d replica_timeout %v, want 2 750ms", o.minReplicas, o.replicaTimeout)
	}
	co := o.clusterOptions()
	if co.TLSConfig == nil || co.TLSConfig.ServerName != "cfg.example" || co.Password != "pw" || co.ReadTimeout != 3*time.Second ||
		co.DialTimeout != defaultDialTimeout || co.MaxRetries != defaultMaxRetries || co.PoolSize != o.node.PoolSize || !co.ContextTimeoutEnabled {
		t.Errorf("cluster options do not carry the URL's settings and the defaults: %+v", co)
	}
	u, _ = backends.ParseURL("redis://h/0")
	if o, err = parseOptions(u); err != nil || o.minReplicas != 0 || len(o.seeds) != 1 {
		t.Errorf("plain URL: %+v, %v; want no replication waits and one seed", o, err)
	}
}

func TestSchemesRegistered(t *testing.T) {
	have := map[string]bool{}
	for _, s := range backends.Schemes() {
		have[s] = true
	}
	for _, s := range []string{"redis", "rediss"} {
		if !have[s] {
			t.Errorf("scheme %q not registered (have %v)", s, backends.Schemes())
		}
	}
}

func TestPassword(t *testing.T) {
	const right, wrong = "Right-pw-7731", "Wrong-pw-9054"
	srv := testservers.StartRedisT(t, "--requirepass", right)
	ctx := testCtx(t, time.Minute)

	st, err := backends.Open(ctx, "redis://:"+right+"@"+srv.Addr+"/0", 0)
	if err != nil {
		t.Fatalf("open with the right password: %v", err)
	}
	defer st.Close()
	if err := st.CreateJob(ctx, backends.Job{ID: "pw-job", Total: 2}); err != nil {
		t.Fatalf("CreateJob with the right password: %v", err)
	}
	if c, err := st.Complete(ctx, "pw-job", 1); err != nil || c.Done {
		t.Fatalf("Complete = %+v, %v; want recorded, not done", c, err)
	}

	for _, u := range []string{
		"redis://:" + wrong + "@" + srv.Addr + "/0",
		"redis://default:" + wrong + "@" + srv.Addr + "/0",
	} {
		_, err := backends.Open(ctx, u, 0)
		if err == nil {
			t.Fatalf("open %s succeeded, want an auth error", backends.Redact(u))
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("error %q holds the password", err)
		}
		t.Logf("wrong password: %v", err)
	}
	if _, err := backends.Open(ctx, srv.URL, 0); err == nil {
		t.Error("open without a password succeeded against a server that requires one")
	}
}

func TestUnreachable(t *testing.T) {
	port, err := testservers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens there: Open must say so, not hang.
	u := "redis://:pw-unreach-1@127.0.0.1:" + strconv.Itoa(port) + "/0"
	st, err := backends.Open(testCtx(t, 2*time.Minute), u, 0)
	if err == nil {
		st.Close()
		t.Fatal("Open of a port nothing listens on succeeded")
	}
	if strings.Contains(err.Error(), "pw-unreach-1") {
		t.Errorf("error %q holds the password", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not name the address", err)
	}
	t.Logf("unreachable: %v", err)
}

// TestStoppedServer: a server that stops answering (SIGSTOP, as a hung or
// partitioned Redis would) makes Complete fail instead of waiting forever,
// and the store works again once the server is back.
func TestStoppedServer(t *testing.T) {
	srv := testservers.StartRedisT(t)
	ctx := testCtx(t, time.Minute)
	st, err := backends.Open(ctx, srv.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs := st.Driver().(*Store)
	if err := st.CreateJob(ctx, backends.Job{ID: "stopped", Total: 3}); err != nil {
		t.Fatal(err)
	}
	info, err := rs.c.InfoMap(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	if err != nil || pid <= 0 {
		t.Fatalf("redis process_id = %q: %v", info["Server"]["process_id"], err)
	}
	// A second store with a short read timeout and no retries, opened
	// (and connected) before the stop: its bound must hold without any
	// deadline from the caller.
	short, err := backends.Open(ctx, srv.URL+"?read_timeout=500ms&max_retries=0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)

	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	calls := []struct {
		name string
		ctx  context.Context
		st   *backends.Store
	}{
		{"caller deadline", cctx, st},
		{"read_timeout without a caller deadline", context.Background(), short},
	}
	for _, call := range calls {
		done := make(chan error, 1)
		t0 := time.Now()
		go func() {
			_, err := call.st.Complete(call.ctx, "stopped", 0)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: Complete against a stopped server succeeded", call.name)
			}
			t.Logf("%s: stopped server after %v: %v", call.name, time.Since(t0), err)
		case <-time.After(5 * time.Minute):
			t.Fatalf("%s: Complete against a stopped server did not return", call.name)
		}
	}

	cont()
	t0 := time.Now()
	c, err := st.Complete(ctx, "stopped", 1)
	t.Logf("after resume %v", time.Since(t0))
	if err != nil {
		t.Fatalf("Complete after the server resumed: %v", err)
	}
	if c.Duplicate {
		t.Errorf("Complete(1) after resume = %+v, want a new completion", c)
	}
}

// TestInvalidJobID: ids holding Redis key or glob characters never reach
// the server (backends.Store refuses them; the conformance suite checks the
// errors of every method).
func TestInvalidJobID(t *testing.T) {
	rs := openShared(t)
	st := backends.New(rs, time.Minute)
	ctx := testCtx(t, time.Minute)
	for _, id := range []string{"", "a*b", "x}:job", "{y}", "has space"} {
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 1}); err == nil {
			t.Errorf("CreateJob(%q) succeeded, want an invalid id error", id)
		}
		if _, err := st.Status(ctx, id); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("Status(%q) err = %v, want ErrNotFound", id, err)
		}
	}
	if n := rs.c.DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys written by refused CreateJob calls", n)
	}
}

// TestLayout pins the documented key layout: other tools and operators
// read it.
func TestLayout(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "lay-1", Total: 10, Metadata: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	h := st.c.HGetAll(ctx, "wp:{lay-1}:job").Val()
	if h["total"] != "10" || h["remaining"] != "10" || h["meta"] != `{"a":1}` || h["created"] == "" {
		t.Errorf("job hash = %v", h)
	}
	if n := st.c.Exists(ctx, "wp:{lay-1}:done").Val(); n != 0 {
		t.Errorf("a new job has a done bitmap: creation should write only the hash")
	}
	if _, err := st.Complete(ctx, "lay-1", 9); err != nil {
		t.Fatal(err)
	}
	if bit := st.c.GetBit(ctx, "wp:{lay-1}:done", 9).Val(); bit != 1 {
		t.Errorf("bit 9 of the done bitmap = %d after completing part 9, want 1", bit)
	}
	if got := st.c.HGet(ctx, "wp:{lay-1}:job", "remaining").Val(); got != "9" {
		t.Errorf("remaining = %q, want 9", got)
	}
}

// TestScriptCacheLost: after SCRIPT FLUSH (or a server restart) Complete
// loads its script again, for a lone call and for pipelined batches.
func TestScriptCacheLost(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	const total = 400
	if err := st.CreateJob(ctx, backends.Job{ID: "flushed", Total: total}); err != nil {
		t.Fatal(err)
	}
	if err := st.c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if c, err := st.Complete(ctx, "flushed", 0); err != nil || c.Duplicate {
		t.Fatalf("lone Complete after SCRIPT FLUSH = %+v, %v", c, err)
	}
	if err := st.c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var finishers atomic.Int64
	errs := make(chan error, total)
	for p := int64(1); p < total; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := st.Complete(ctx, "flushed", p)
			if err != nil {
				errs <- err
				return
			}
			if c.Finisher {
				finishers.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Complete after SCRIPT FLUSH: %v", err)
	}
	if got, want := finishers.Load(), int64(1); got != want {
		t.Errorf("finishers = %d, want %d", got, want)
	}
	s, err := st.Status(ctx, "flushed")
	if err != nil {
		t.Fatal(err)
	}
	if s.Remaining != 0 {
		t.Errorf("Remaining = %d, want 0", s.Remaining)
	}
}

// TestCompleteContext: a caller whose context has ended gets its error and
// nothing is recorded; a closed store refuses calls.
func TestCompleteContext(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "ctx-job", Total: 2}); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Complete(dead, "ctx-job", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Complete with a cancelled context: err = %v, want context.Canceled", err)
	}
	if s, err := st.Status(ctx, "ctx-job"); err != nil || s.Remaining != 2 {
		t.Errorf("after a cancelled Complete: %+v, %v; want 2 remaining", s, err)
	}
	st2, err := backends.Open(ctx, shared.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := st2.Complete(ctx, "ctx-job", 0); err == nil {
		t.Error("Complete on a closed store succeeded")
	}
}
