package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
	"github.com/wp-tools/wp/internal/testservers"
)

// The cluster tests share one 3-master cluster (no replicas), started by
// the first test that needs it and stopped by TestMain.
var (
	clusterOnce sync.Once
	cluster     *testservers.Cluster
	clusterErr  error
)

func sharedCluster(t testing.TB) *testservers.Cluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = testservers.StartRedisCluster(3, 0) })
	if clusterErr != nil {
		t.Fatalf("start a 3-master redis cluster: %v", clusterErr)
	}
	return cluster
}

func stopSharedCluster() {
	if cluster != nil {
		cluster.Stop()
	}
}

// openURL opens url and empties every master it reaches.
func openURL(t testing.TB, url string) *Store {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	st, err := backends.Open(ctx, url, 0)
	if err != nil {
		t.Fatalf("open %s: %v", backends.Redact(url), err)
	}
	t.Cleanup(func() { st.Close() })
	rs := st.Driver().(*Store)
	if rs.cluster != nil {
		err = rs.cluster.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			return m.FlushDB(ctx).Err()
		})
	} else {
		err = rs.c.FlushDB(ctx).Err()
	}
	if err != nil {
		t.Fatalf("FLUSHDB: %v", err)
	}
	return rs
}

// openCluster opens the shared cluster by its first node, emptied.
func openCluster(t testing.TB) *Store {
	t.Helper()
	st := openURL(t, sharedCluster(t).URL)
	if !st.Cluster() {
		t.Fatal("Open of a cluster node did not pick the cluster client")
	}
	return st
}

// TestClusterConformance: the whole conformance suite on a real 3-master
// cluster, through a URL that names one node.
func TestClusterConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store { return backends.New(openCluster(t), time.Minute) })
}

// TestCluster_EveryNode: a URL naming any node, master or replica-less,
// reaches every job; the standalone server keeps the single-node client.
func TestCluster_EveryNode(t *testing.T) {
	cl := sharedCluster(t)
	ctx := testCtx(t, time.Minute)
	first := openCluster(t)
	const jobs = 30
	for i := 0; i < jobs; i++ {
		if err := first.CreateJob(ctx, backends.Job{ID: fmt.Sprintf("node-%02d", i), Total: 2}); err != nil {
			t.Fatalf("CreateJob through %s: %v", cl.Addrs[0], err)
		}
	}
	// The jobs live on every master, not only the one the URL names.
	per := map[string]int{}
	for i := 0; i < jobs; i++ {
		m, err := first.cluster.MasterForKey(ctx, jobKey(fmt.Sprintf("node-%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		per[m.Options().Addr]++
	}
	if len(per) != 3 {
		t.Errorf("%d jobs are spread over %d masters (%v), want all 3", jobs, len(per), per)
	}
	for _, addr := range cl.Addrs {
		st, err := backends.Open(ctx, "redis://"+addr+"/0", 0)
		if err != nil {
			t.Fatalf("open by %s: %v", addr, err)
		}
		n := 0
		if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error { n++; return nil }); err != nil {
			t.Fatalf("List by %s: %v", addr, err)
		}
		if n != jobs {
			t.Errorf("List by %s sees %d jobs, want %d", addr, n, jobs)
		}
		for i := 0; i < jobs; i++ {
			id := fmt.Sprintf("node-%02d", i)
			if _, err := st.Complete(ctx, id, int64(i%2)); err != nil {
				t.Errorf("Complete(%s) by %s: %v", id, addr, err)
			}
		}
		st.Close()
	}
	single := openShared(t)
	if single.Cluster() {
		t.Error("a standalone server got the cluster client")
	}
}

// TestCluster_Seeds: ?addr= gives more seeds; the first that answers is
// used. A cluster with no reachable seed is an error naming each seed,
// password redacted.
func TestCluster_Seeds(t *testing.T) {
	cl := sharedCluster(t)
	ctx := testCtx(t, time.Minute)
	dead1, _ := testservers.FreePort()
	dead2, _ := testservers.FreePort()
	u := fmt.Sprintf("redis://127.0.0.1:%d/0?addr=%s&dial_timeout=1s", dead1, cl.Addrs[1])
	st, err := backends.Open(ctx, u, 0)
	if err != nil {
		t.Fatalf("open with a dead first seed and a live ?addr=: %v", err)
	}
	if !st.Driver().(*Store).Cluster() {
		t.Error("not a cluster client")
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "seeded", Total: 1}); err != nil {
		t.Fatal(err)
	}
	st.Delete(ctx, "seeded")
	st.Close()

	const pw = "seed-Secret-42"
	u = fmt.Sprintf("redis://:%s@127.0.0.1:%d/0?addr=127.0.0.1:%d&dial_timeout=1s", pw, dead1, dead2)
	_, err = backends.Open(ctx, u, 0)
	if err == nil {
		t.Fatal("open with no reachable seed succeeded")
	}
	for _, want := range []string{strconv.Itoa(dead1), strconv.Itoa(dead2), "no seed node answered", "redis://:xxxxx@"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error %q holds the password", err)
	}
	t.Logf("no reachable seed: %v", err)

	// ?addr= on a standalone server is a mistake worth saying.
	u = shared.URL + "?addr=" + cl.Addrs[0]
	if _, err := backends.Open(ctx, u, 0); err == nil || !strings.Contains(err.Error(), "not in cluster mode") {
		t.Errorf("?addr= with a standalone server: err = %v, want one saying it is not in cluster mode", err)
	}
	// A cluster has only db 0.
	if _, err := backends.Open(ctx, "redis://"+cl.Addrs[0]+"/3", 0); err == nil || !strings.Contains(err.Error(), "only db 0") {
		t.Errorf("db 3 on a cluster: err = %v, want one saying only db 0", err)
	}
}

// TestCluster_BatchAcrossSlots: concurrent completions of many jobs, whose
// slots live on different masters, share pipelines (batch.go); each job
// still has exactly one finisher.
func TestCluster_BatchAcrossSlots(t *testing.T) {
	st := openCluster(t)
	batchAcrossSlots(t, st)
}

func batchAcrossSlots(t *testing.T, st backends.Driver) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	const jobs, parts = 24, 50
	for j := 0; j < jobs; j++ {
		if err := st.CreateJob(ctx, backends.Job{ID: fmt.Sprintf("slots-%02d", j), Total: parts}); err != nil {
			t.Fatal(err)
		}
	}
	work := make(chan [2]int, 2*jobs*parts)
	for p := 0; p < parts; p++ {
		for j := 0; j < jobs; j++ {
			work <- [2]int{j, p}
			work <- [2]int{j, p}
		}
	}
	close(work)
	var finishers [jobs]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for jp := range work {
				c, err := st.Complete(ctx, fmt.Sprintf("slots-%02d", jp[0]), int64(jp[1]))
				if err != nil {
					errs <- err
					return
				}
				if c.Finisher {
					finishers[jp[0]].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Complete: %v", err)
	}
	for j := range finishers {
		if got := finishers[j].Load(); got != 1 {
			t.Errorf("job slots-%02d: %d finishers, want 1", j, got)
		}
		s, err := st.Status(ctx, fmt.Sprintf("slots-%02d", j))
		if err != nil || s.Remaining != 0 {
			t.Errorf("job slots-%02d: %+v, %v; want 0 remaining", j, s, err)
		}
	}
}

// startReplica starts a replica of the standalone server master and waits
// until its first sync is done.
func startReplica(t *testing.T, master *testservers.Server) *testservers.Server {
	t.Helper()
	host, port, _ := strings.Cut(master.Addr, ":")
	r := testservers.StartRedisT(t, "--replicaof", host, port)
	waitLinkUp(t, r.URL)
	return r
}

func waitLinkUp(t *testing.T, url string) {
	t.Helper()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := testservers.WaitLinkUp(testCtx(t, time.Minute), opt.Addr); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaSeed: a URL naming a standalone replica is refused at Open
// with an error that says so and names the URL, password redacted; a
// cluster URL naming a replica works (writes go to the masters).
func TestReplicaSeed(t *testing.T) {
	const pw = "Repl-pw-5521"
	master := testservers.StartRedisT(t, "--requirepass", pw, "--masterauth", pw)
	host, port, _ := strings.Cut(master.Addr, ":")
	replica := testservers.StartRedisT(t, "--replicaof", host, port, "--masterauth", pw, "--requirepass", pw)
	u := "redis://:" + pw + "@" + replica.Addr + "/0"
	_, err := backends.Open(testCtx(t, time.Minute), u, 0)
	if err == nil {
		t.Fatal("Open of a replica succeeded")
	}
	for _, want := range []string{"read-only replica of " + master.Addr, "point the URL at the primary", "redis://:xxxxx@" + replica.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error %q holds the password", err)
	}
	t.Logf("replica seed: %v", err)
}

// TestWait: with ?min_replicas=1 against a primary with one replica, the
// conformance suite passes; with more replicas asked than exist, and with
// the replica stopped, writes fail with ErrReplication (never success) and
// reads still work.
func TestWait(t *testing.T) {
	master := testservers.StartRedisT(t)
	replica := startReplica(t, master)
	waited := master.URL + "?min_replicas=1&replica_timeout=2s"
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) *backends.Store { return backends.New(openURL(t, waited), time.Minute) })
	})
	t.Run("BatchAcrossSlots", func(t *testing.T) { batchAcrossSlots(t, openURL(t, waited)) })
	t.Run("DuplicateIsReplicated", func(t *testing.T) {
		// A duplicate completion writes, so WAIT covers what it
		// reports even when the first completion came from another
		// connection.
		st := openURL(t, waited)
		ctx := testCtx(t, time.Minute)
		if err := st.CreateJob(ctx, backends.Job{ID: "dup", Total: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Complete(ctx, "dup", 0); err != nil {
			t.Fatal(err)
		}
		before := replOffset(t, st)
		c, err := st.Complete(ctx, "dup", 0)
		if err != nil || !c.Duplicate {
			t.Fatalf("second Complete = %+v, %v; want a duplicate", c, err)
		}
		if after := replOffset(t, st); after <= before {
			t.Errorf("master_repl_offset %d -> %d across a waited duplicate completion: it wrote nothing for WAIT to cover", before, after)
		}
	})
	t.Run("TooFew", func(t *testing.T) {
		st := openURL(t, master.URL+"?min_replicas=2&replica_timeout=100ms")
		expectReplicationErrors(t, st)
	})
	t.Run("ReplicaStopped", func(t *testing.T) {
		st := openURL(t, master.URL+"?min_replicas=1&replica_timeout=200ms")
		pid := serverPid(t, replica.URL)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(pid, syscall.SIGCONT)
		expectReplicationErrors(t, st)
	})
}

func replOffset(t *testing.T, st *Store) int64 {
	t.Helper()
	info, err := st.c.InfoMap(context.Background(), "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(info["Replication"]["master_repl_offset"], 10, 64)
	if err != nil {
		t.Fatalf("master_repl_offset: %v", err)
	}
	return n
}

func serverPid(t *testing.T, url string) int {
	t.Helper()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	info, err := c.InfoMap(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// expectReplicationErrors: every write wp reports as done fails with
// ErrReplication when the replicas cannot acknowledge it; reads work.
func expectReplicationErrors(t *testing.T, st *Store) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	isRepl := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrReplication) {
			t.Errorf("%s: err = %v, want ErrReplication", what, err)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}
	isRepl("CreateJob", st.CreateJob(ctx, backends.Job{ID: "few", Total: 3}))
	_, err := st.Complete(ctx, "few", 0)
	isRepl("Complete", err)
	_, err = st.Complete(ctx, "few", 0)
	isRepl("Complete (duplicate)", err)
	_, err = st.CompleteParts(ctx, "few", []int64{0})
	isRepl("CompleteParts (duplicate)", err)
	isRepl("SetExpiry", st.SetExpiry(ctx, "few", time.Now().Add(time.Hour)))
	isRepl("SetExpiry (never)", st.SetExpiry(ctx, "few", time.Time{}))
	// Batched completions fail the same way.
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.Complete(ctx, "few", int64(1+i%2)); err == nil {
				ok.Add(1)
			} else if !errors.Is(err, ErrReplication) {
				t.Errorf("concurrent Complete: %v, want ErrReplication", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 0 {
		t.Errorf("%d concurrent completions succeeded without a replica's acknowledgement", ok.Load())
	}
	// Every part is now on the master: the claim and sent must wait too.
	_, claimed, err := st.ClaimReduce(ctx, "few", time.Minute)
	if claimed {
		t.Error("ClaimReduce succeeded without a replica's acknowledgement")
	}
	isRepl("ClaimReduce", err)
	isRepl("MarkReduceSent", st.MarkReduceSent(ctx, "few"))
	// What wp run would succeed on without a write of its own waits too.
	_, claimed, err = st.ClaimReduce(ctx, "few", time.Minute)
	if claimed {
		t.Error("ClaimReduce of a job whose reduce is sent succeeded")
	}
	isRepl("ClaimReduce (reduce sent)", err)
	_, err = st.Peek(ctx, "few")
	isRepl("Peek (every part complete)", err)
	// A running job is read without waiting.
	isRepl("CreateJob", st.CreateJob(ctx, backends.Job{ID: "few-running", Total: 2}))
	if p, err := st.Peek(ctx, "few-running"); err != nil || p.Remaining != 2 {
		t.Errorf("Peek of a running job = %+v, %v; want it read without waiting", p, err)
	}
	_, err = st.CompleteParts(ctx, "few-running", []int64{1})
	isRepl("CompleteParts", err)
	_, err = st.GiveUp(ctx, "few-running", 0, backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10, At: time.Now()})
	isRepl("GiveUp", err)
	_, err = st.GiveUp(ctx, "few-running", 0, backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10, At: time.Now()})
	isRepl("GiveUp (duplicate)", err)
	isRepl("Fail", st.Fail(ctx, "few", "test"))
	_, err = st.Complete(ctx, "few", 0)
	isRepl("Complete (job failed)", err)
	if s, err := st.Status(ctx, "few"); err != nil || !s.Failed {
		t.Errorf("Status = %+v, %v; want the failed job (reads do not wait)", s, err)
	}
}

// TestClusterWait: on 3 masters with one replica each, through a URL whose
// seed is a replica, with ?min_replicas=1: the conformance suite, and
// batched completions of many jobs (one pipeline and one WAIT per master).
func TestClusterWait(t *testing.T) {
	cl := testservers.StartRedisClusterT(t, 3, 1)
	ctx := testCtx(t, time.Minute)
	var seed string
	for _, a := range cl.Addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		info, err := c.Info(ctx, "replication").Result()
		c.Close()
		if err == nil && strings.Contains(info, "role:slave") {
			seed = a
			break
		}
	}
	if seed == "" {
		t.Fatal("no replica in the cluster")
	}
	u := "redis://" + seed + "/0?min_replicas=1&replica_timeout=2s"
	backendtest.Run(t, func(t *testing.T) *backends.Store {
		st := openURL(t, u)
		if !st.Cluster() {
			t.Fatal("a replica seed of a cluster did not pick the cluster client")
		}
		return backends.New(st, time.Minute)
	})
	batchAcrossSlots(t, openURL(t, u))
}

// TestNoInfoPermission: a user whose ACL denies INFO still connects (Open
// falls back to PING and the single-node client).
func TestNoInfoPermission(t *testing.T) {
	const pw = "Acl-pw-3391"
	srv := testservers.StartRedisT(t, "--user", "worker", "on", ">"+pw, "~*", "&*", "+@all", "-info")
	st, err := backends.Open(testCtx(t, time.Minute), "redis://worker:"+pw+"@"+srv.Addr+"/0", time.Minute)
	if err != nil {
		t.Fatalf("Open as a user without +info: %v", err)
	}
	defer st.Close()
	ctx := testCtx(t, time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "acl", Total: 1}); err != nil {
		t.Fatal(err)
	}
	if c, err := st.Complete(ctx, "acl", 0); err != nil || !c.Finisher {
		t.Errorf("Complete = %+v, %v; want the finisher", c, err)
	}
}

// TestClusterPassword: the URL's password reaches every node of a cluster
// whose nodes all require it; a wrong one is an error that does not show
// it.
func TestClusterPassword(t *testing.T) {
	const pw, wrong = "Clu-pw-8120", "Clu-wrong-4471"
	c, err := testservers.StartRedisClusterWith(testservers.ClusterOptions{Masters: 3, Password: pw})
	if err != nil {
		t.Fatalf("start a 3-master redis cluster with a password: %v", err)
	}
	t.Cleanup(c.Stop)
	st := openURL(t, c.URL)
	if !st.Cluster() {
		t.Fatal("not a cluster client")
	}
	batchAcrossSlots(t, st)
	_, err = backends.Open(testCtx(t, time.Minute), "redis://:"+wrong+"@"+c.Addrs[1]+"/0", 0)
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q holds the password", err)
	}
	t.Logf("wrong password: %v", err)
}

// TestClusterFailover: one long-lived store (as in wp local) with
// ?min_replicas=1 on 3 masters with a replica each; 32 goroutines complete
// the parts of a job, every part twice, while the job's master is
// SIGKILLed, its replica takes over and the killed node is started again
// (it rejoins as the new master's replica, so waited writes succeed again).
// Every part whose completion succeeded is complete afterwards; the same
// store, still open, completes the rest; there is never more than one
// finisher.
func TestClusterFailover(t *testing.T) {
	const total = 2000
	cl := testservers.StartRedisClusterT(t, 3, 1)
	u := cl.URL + "?min_replicas=1&replica_timeout=1s"
	for _, a := range cl.Addrs[1:] {
		u += "&addr=" + a
	}
	st := openURL(t, u)
	ctx := testCtx(t, 5*time.Minute)
	if err := st.CreateJob(ctx, backends.Job{ID: "fo", Total: total}); err != nil {
		t.Fatal(err)
	}
	victim, err := cl.MasterFor(ctx, jobKey("fo"))
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan int64, 2*total)
	for p := int64(0); p < total; p++ {
		work <- p
		work <- p
	}
	close(work)
	var acked [total]atomic.Bool
	var finishers, fails, calls atomic.Int64
	killed := make(chan struct{})
	failover := make(chan error, 1)
	go func() {
		<-killed
		t0 := time.Now()
		if err := cl.Kill(victim); err != nil {
			failover <- err
			return
		}
		for {
			m, err := cl.MasterFor(ctx, jobKey("fo"))
			if err == nil && m != victim {
				t.Logf("%s killed; %s serves the job's slot %v later", victim, m, time.Since(t0))
				break
			}
			if ctx.Err() != nil {
				failover <- fmt.Errorf("no replica took over from %s: %v", victim, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cl.Restart(victim); err != nil {
			failover <- err
			return
		}
		failover <- cl.WaitHealthy(ctx)
	}()
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, err := st.Complete(cctx, "fo", p)
				cancel()
				if calls.Add(1) == total/2 {
					close(killed)
				}
				if err != nil {
					fails.Add(1)
					continue
				}
				acked[p].Store(true)
				if c.Finisher {
					finishers.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if err := <-failover; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls, %d failed", calls.Load(), fails.Load())
	pend := map[int64]bool{}
	if err := st.Pending(ctx, "fo", func(p int64) error { pend[p] = true; return nil }); err != nil {
		t.Fatalf("Pending after the failover: %v", err)
	}
	for p := range pend {
		if acked[p].Load() {
			t.Errorf("part %d is pending after the failover, but its completion succeeded", p)
		}
	}
	// The same store, still open, finishes the job.
	for p := range pend {
		c, err := st.Complete(ctx, "fo", p)
		if err != nil {
			t.Fatalf("Complete(%d) after the failover: %v", p, err)
		}
		if c.Finisher {
			finishers.Add(1)
		}
	}
	s, err := st.Status(ctx, "fo")
	if err != nil || s.Remaining != 0 {
		t.Fatalf("Status = %+v, %v; want 0 remaining", s, err)
	}
	// A finisher whose reply was lost to the failover leaves none; there
	// is never more than one.
	if got := finishers.Load(); got > 1 {
		t.Errorf("%d finishers, want at most 1", got)
	}
	t.Logf("%d parts completed again after the failover; %d finisher(s)", len(pend), finishers.Load())
}

// TestCluster_Index: on a cluster the index is written by its own master
// before the job: its score is the job's created, a refused CreateJob of
// an existing id leaves it so, Delete and a past SetExpiry remove it, and
// List drops an entry whose job is gone unless it is young enough to be a
// creation in flight.
func TestCluster_Index(t *testing.T) {
	st := openCluster(t)
	ctx := testCtx(t, time.Minute)
	score := func(id string) string {
		t.Helper()
		z, err := st.c.ZScore(ctx, indexKey, id).Result()
		if errors.Is(err, goredis.Nil) {
			return "none"
		}
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatFloat(z, 'f', -1, 64)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "cix", Total: 2}); err != nil {
		t.Fatal(err)
	}
	created := st.c.HGet(ctx, jobKey("cix"), "created").Val()
	if got := score("cix"); got != created {
		t.Errorf("index score %s, want created %s", got, created)
	}
	time.Sleep(5 * time.Millisecond)
	if err := st.CreateJob(ctx, backends.Job{ID: "cix", Total: 3}); !errors.Is(err, backends.ErrExists) {
		t.Fatalf("second CreateJob: %v, want ErrExists", err)
	}
	if got := score("cix"); got != created {
		t.Errorf("index score %s after a refused CreateJob, want created %s still", got, created)
	}
	now := time.Now()
	st.c.ZAdd(ctx, indexKey, goredis.Z{Score: float64(now.UnixMilli()), Member: "in-flight"},
		goredis.Z{Score: float64(now.Add(-time.Hour).UnixMilli()), Member: "crashed"})
	var ids []string
	if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error { ids = append(ids, s.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[cix]" {
		t.Errorf("List = %v, want [cix]", ids)
	}
	if score("in-flight") == "none" || score("crashed") != "none" {
		t.Errorf("after List: in-flight %s, crashed %s; want the young entry kept, the old one dropped", score("in-flight"), score("crashed"))
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "cix2", Total: 2}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "cix"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetExpiry(ctx, "cix2", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if score("cix") != "none" || score("cix2") != "none" {
		t.Errorf("index entries of a deleted and an expired job: %s, %s; want none", score("cix"), score("cix2"))
	}
}
