package main

// Fault injection with real wp processes on every store: duplicate storms,
// a crash in the reduce window, a store outage, SIGTERM to a worker with
// grandchildren, and an interrupted wp create. Each test asserts what wp
// promises: exactly one reduce, nothing completed for a part whose command
// did not exit 0, and the documented exit codes.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/internal/child"
	"github.com/wp-tools/wp/internal/snsfake"
	"github.com/wp-tools/wp/internal/testservers"
)

// faultStores are the stores every fault scenario runs on.
var faultStores = []string{"redis", "sqlite", "dynamodb"}

// wpEnv is one store, one SNS endpoint and the environment wp runs with.
type wpEnv struct {
	t     *testing.T
	store string
	sns   *snsfake.Server
	redis *testservers.Server // when store == "redis"
	dir   string
	env   []string
	wp    string
}

// newWPEnv starts the store and an SNS endpoint and returns the environment
// for wp processes. Services that cannot start fail the test.
func newWPEnv(t *testing.T, wp, store string) *wpEnv {
	t.Helper()
	e := &wpEnv{t: t, store: store, dir: t.TempDir(), wp: wp}
	e.sns = snsfake.New()
	snsURL, err := e.sns.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.sns.Close)
	e.env = testservers.WPEnv(e.dir, "AWS_ENDPOINT_URL="+snsURL, "WorkTopic="+testTopic, "WP_STORE_TIMEOUT=20s")
	switch store {
	case "redis":
		e.redis = testservers.StartRedisT(t)
		e.env = append(e.env, "WP_PROGRESS="+e.redis.URL)
	case "redis-cluster":
		c := testservers.StartRedisClusterT(t, 3, 0)
		e.env = append(e.env, "WP_PROGRESS="+c.URL)
	case "":
		// The caller starts the store and appends WP_PROGRESS.
	case "sqlite":
		e.env = append(e.env, "WP_PROGRESS=sqlite://"+filepath.Join(e.dir, "progress.db"))
	case "dynamodb":
		d := testservers.StartDynaliteT(t)
		e.env = append(e.env, "AWS_ENDPOINT_URL_DYNAMODB="+d.URL, "WP_PROGRESS=dynamodb://progress")
		e.mustWP(nil, "table", "create", "progress")
	default:
		t.Fatalf("unknown store %q", store)
	}
	return e
}

// result is how one wp process ended.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// command builds a wp process with the environment plus extra.
func (e *wpEnv) command(extra []string, args ...string) *exec.Cmd {
	c := exec.Command(e.wp, args...)
	c.Dir = e.dir
	c.Env = append(append([]string{}, e.env...), extra...)
	return c
}

// run runs wp to the end, with stdin from in (nil for none).
func (e *wpEnv) run(extra []string, in []byte, args ...string) result {
	c := e.command(extra, args...)
	if in != nil {
		c.Stdin = bytes.NewReader(in)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("wp %s: %v", strings.Join(args, " "), err)
		}
		code = child.ShellStatus(ee.ProcessState)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (e *wpEnv) mustWP(in []byte, args ...string) result {
	e.t.Helper()
	r := e.run(nil, in, args...)
	if r.code != 0 {
		e.t.Fatalf("wp %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// parts is n NDJSON parts.
func parts(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "{\"i\":%d}\n", i)
	}
	return b.Bytes()
}

// create makes a job of n parts and returns its map messages in part order.
func (e *wpEnv) create(id string, n int) []snsfake.Message {
	e.t.Helper()
	r := e.mustWP(parts(n), "create", "--jobid", id, "--metadata", `{"job":"`+id+`"}`)
	if strings.TrimSpace(r.stdout) != id {
		e.t.Fatalf("wp create printed %q, want %q", r.stdout, id)
	}
	return e.maps(id, n)
}

// maps returns job id's map messages, one per part, in part order.
func (e *wpEnv) maps(id string, n int) []snsfake.Message {
	e.t.Helper()
	byPart := make([]snsfake.Message, n)
	seen := 0
	for _, m := range e.sns.Messages() {
		if m.Subject != "map" || !strings.Contains(m.Body, `"jobid":"`+id+`"`) {
			continue
		}
		p := partOf(m.Body)
		if p < 0 || p >= int64(n) {
			e.t.Fatalf("map message for part %d of a %d-part job: %s", p, n, m.Body)
		}
		if byPart[p].Body == "" {
			seen++
		}
		byPart[p] = m
	}
	if seen != n {
		e.t.Fatalf("%d of %d parts of %s were published", seen, n, id)
	}
	return byPart
}

// deliverEnv is the environment watchbot gives a worker for message m.
func deliverEnv(m snsfake.Message, extra ...string) []string {
	return append([]string{"Message=" + m.Body, "Subject=" + m.Subject, "MessageId=" + m.MessageId, "ApproximateReceiveCount=1"}, extra...)
}

// deliver runs `wp run -- CMD` once per message, par at a time, and returns
// the results in the order of msgs.
func (e *wpEnv) deliver(msgs []snsfake.Message, par int, extra []string, cmd ...string) []result {
	out := make([]result, len(msgs))
	idx := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				out[i] = e.run(deliverEnv(msgs[i], extra...), nil, append([]string{"run", "--"}, cmd...)...)
			}
		}()
	}
	for i := range msgs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return out
}

// info is wp info --json.
type jobInfo struct {
	State      string `json:"state"`
	Total      int64  `json:"total"`
	Completed  int64  `json:"completed"`
	Remaining  int64  `json:"remaining"`
	Failed     bool   `json:"failed"`
	ReduceSent bool   `json:"reduce_sent"`
}

func (e *wpEnv) info(id string) jobInfo {
	e.t.Helper()
	r := e.mustWP(nil, "info", id, "--json")
	var ji jobInfo
	if err := json.Unmarshal([]byte(r.stdout), &ji); err != nil {
		e.t.Fatalf("wp info --json: %v\n%s", err, r.stdout)
	}
	return ji
}

func (e *wpEnv) pending(id string) string {
	e.t.Helper()
	return strings.TrimSpace(e.mustWP(nil, "pending", id).stdout)
}

// reduces counts the reduce messages published for job id.
func (e *wpEnv) reduces(id string) int {
	n := 0
	for _, m := range e.sns.Messages() {
		if m.Subject == "reduce" && strings.Contains(m.Body, `"jobid":"`+id+`"`) {
			n++
		}
	}
	return n
}

// checkDone asserts the job is complete with its reduce sent exactly once.
func (e *wpEnv) checkDone(id string, n int) {
	e.t.Helper()
	if got := e.reduces(id); got != 1 {
		e.t.Errorf("%d reduce messages for %s, want exactly 1", got, id)
	}
	if p := e.pending(id); p != "" {
		e.t.Errorf("wp pending %s is not empty: %.200s", id, p)
	}
	ji := e.info(id)
	if ji.State != "complete" || ji.Completed != int64(n) || ji.Remaining != 0 || !ji.ReduceSent {
		e.t.Errorf("wp info %s = %+v, want complete, %d completed, reduce sent", id, ji, n)
	}
}

// forEachStore runs f as a parallel subtest on every store.
func forEachStore(t *testing.T, wp string, f func(t *testing.T, e *wpEnv)) {
	forStores(t, wp, faultStores, f)
}

// forStores runs f as a parallel subtest on each of stores.
func forStores(t *testing.T, wp string, stores []string, f func(t *testing.T, e *wpEnv)) {
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			f(t, newWPEnv(t, wp, s))
		})
	}
}

// TestFault runs every fault scenario, in parallel, with one wp binary.
func TestFault(t *testing.T) {
	wp := testservers.BuildWPT(t)
	for _, sc := range []struct {
		name string
		f    func(*testing.T, string)
	}{
		{"DuplicateStorm", faultDuplicateStorm},
		{"ReduceWindow", faultReduceWindow},
		{"StoreOutage", faultStoreOutage},
		{"SIGTERM", faultSIGTERM},
		{"CreateInterrupted", faultCreateInterrupted},
		{"ClusterFailover", faultClusterFailover},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.f(t, wp)
		})
	}
}

// faultDuplicateStorm: a 500-part job, every map message delivered
// twice, 8 wp run processes at a time in random order: exactly one reduce,
// nothing pending, the job complete; on every store, and on a 3-master
// Redis Cluster. A delivery may exit 75 when another worker has held the
// reduce claim for wp run's wait (on a loaded machine the finisher can take
// that long to publish): watchbot delivers such a message again, and so
// does this test, until every delivery exits 0.
func faultDuplicateStorm(t *testing.T, wp string) {
	const n = 500
	forStores(t, wp, append(faultStores[:len(faultStores):len(faultStores)], "redis-cluster"), func(t *testing.T, e *wpEnv) {
		msgs := e.create("storm", n)
		deliveries := append(append([]snsfake.Message{}, msgs...), msgs...)
		rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		start := time.Now()
		res := e.deliver(deliveries, 8, nil, "true")
		t.Logf("%s: %d deliveries in %v", e.store, len(deliveries), time.Since(start))
		finished := 0
		for round := 0; ; round++ {
			var again []snsfake.Message
			for i, r := range res {
				switch {
				case r.code == exitRetry:
					again = append(again, deliveries[i])
				case r.code != 0:
					t.Fatalf("delivery %d (%s): %s", i, deliveries[i].Body, r)
				}
				if strings.Contains(r.stderr, "this completion finished the job") {
					finished++
				}
			}
			if len(again) == 0 {
				break
			}
			if round == 10 {
				t.Fatalf("%d deliveries still exit 75 after %d rounds of redelivery", len(again), round)
			}
			t.Logf("%s: %d deliveries exited 75 (retry); delivering them again", e.store, len(again))
			deliveries = again
			res = e.deliver(deliveries, 8, nil, "true")
		}
		if finished != 1 {
			t.Errorf("%d deliveries say they finished the job, want 1", finished)
		}
		e.checkDone("storm", n)
	})
}

// waitFor polls cond every 10ms until it holds; it fails the test with what
// after a generous limit (a hang guard, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// faultReduceWindow: the finisher is SIGKILLed while SNS holds its
// reduce request. Redeliveries while its claim is live exit 75 (retry), not
// 0, so the message that could send the reduce is never deleted; once the
// lease has run out a redelivery sends the reduce, exactly once. And when
// SNS answers the reduce with a server error, the finisher exits 75 and the
// redelivery sends it.
func faultReduceWindow(t *testing.T, wp string) {
	forEachStore(t, wp, func(t *testing.T, e *wpEnv) {
		// The lease is longer than wp run's wait for another worker's
		// claim (reduceClaimWait), so the first redelivery sees a live claim.
		lease := []string{"WP_REDUCE_LEASE=12s"}
		msgs := e.create("crash", 3)
		for _, r := range e.deliver(msgs[:2], 2, lease, "true") {
			if r.code != 0 {
				t.Fatalf("part: %s", r)
			}
		}
		release := e.sns.HoldSubject("reduce")
		c := e.command(deliverEnv(msgs[2], lease...), "run", "--", "true")
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the finisher to publish its reduce", func() bool { return e.sns.Held() > 0 })
		if err := c.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		// The held request's client is gone: SNS drops it, nothing sent.
		waitFor(t, "SNS to drop the dead finisher's request", func() bool { return e.sns.Held() == 0 })
		release()
		if got := e.reduces("crash"); got != 0 {
			t.Fatalf("%d reduces after the finisher died before SNS accepted it, want 0", got)
		}
		if ji := e.info("crash"); ji.Remaining != 0 || ji.ReduceSent {
			t.Fatalf("after the crash: %+v, want every part done and no reduce recorded", ji)
		}
		// Redeliveries of any part: while the dead finisher's claim is
		// live they must not exit 0 (the message would be deleted and the
		// reduce could be lost); once it has run out, one of them sends
		// the reduce, and never more than one.
		tries := 0
		for e.reduces("crash") == 0 {
			tries++
			if tries > 500 {
				t.Fatal("no redelivery sent the reduce")
			}
			r := e.deliver([]snsfake.Message{msgs[tries%3]}, 1, lease, "sh", "-c", "echo ran")[0]
			if strings.Contains(r.stdout, "ran") {
				t.Fatalf("a redelivery of a complete job ran the command: %s", r)
			}
			if e.reduces("crash") == 0 && r.code != exitRetry {
				t.Fatalf("redelivery %d sent no reduce and exited %d, want %d (retry, so the reduce is not lost): %s", tries, r.code, exitRetry, r)
			}
			if e.reduces("crash") > 0 && r.code != 0 {
				t.Fatalf("the redelivery that sent the reduce exited %d: %s", r.code, r)
			}
		}
		t.Logf("%s: the reduce went out on redelivery %d", e.store, tries)
		if tries < 2 {
			t.Errorf("the first redelivery sent the reduce although the dead finisher's claim was live")
		}
		for _, r := range e.deliver(append(msgs, msgs...), 3, lease, "true") {
			if r.code != 0 {
				t.Fatalf("late duplicate: %s", r)
			}
		}
		e.checkDone("crash", 3)

		// SNS answers the reduce with a server error: the finisher exits
		// 75 and its redelivery sends the reduce.
		msgs = e.create("snserr", 2)
		if r := e.deliver(msgs[:1], 1, nil, "true")[0]; r.code != 0 {
			t.Fatal(r)
		}
		e.sns.FailSubject("reduce")
		r := e.deliver(msgs[1:], 1, nil, "true")[0]
		if r.code != exitRetry || !strings.Contains(r.stderr, "cannot publish the reduce") {
			t.Fatalf("finisher with SNS failing: %s; want exit %d", r, exitRetry)
		}
		e.sns.FailSubject("")
		if r := e.deliver(msgs[1:], 1, nil, "sh", "-c", "echo ran")[0]; r.code != 0 || strings.Contains(r.stdout, "ran") {
			t.Fatalf("redelivery after SNS recovered: %s", r)
		}
		e.checkDone("snserr", 2)
	})
}

// redisPid is the redis-server's process id, from INFO.
func redisPid(t *testing.T, url string) int {
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
	if err != nil || pid <= 0 {
		t.Fatalf("redis process_id %q: %v", info["Server"]["process_id"], err)
	}
	return pid
}

// faultStoreOutage: Redis stops answering (SIGSTOP keeps its data).
// Before the command: wp run exits 75 within WP_STORE_TIMEOUT and does not
// run the command. While the command runs: wp exits 75 and records nothing.
// After the server is back, redeliveries finish the job, one reduce.
func faultStoreOutage(t *testing.T, wp string) {
	e := newWPEnv(t, wp, "redis")
	pid := redisPid(t, e.redis.URL)
	stop := func() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	cont := func() { syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	short := []string{"WP_STORE_TIMEOUT=3s"}
	msgs := e.create("outage", 4)

	// The store is down before wp run starts.
	stop()
	marker := filepath.Join(e.dir, "ran")
	for _, m := range msgs[:2] {
		start := time.Now()
		r := e.deliver([]snsfake.Message{m}, 1, short, "touch", marker)[0]
		t.Logf("store down before the command: exit %d after %v", r.code, time.Since(start))
		if r.code != exitRetry {
			t.Fatalf("store down before the command: %s; want exit %d", r, exitRetry)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("the command ran although the store was unreachable")
		}
	}
	cont()

	// The store goes down while the command runs (part 0, and part 3 after
	// parts 1 and 2 are done, so that it would be the finisher).
	for _, r := range e.deliver(msgs[1:3], 2, nil, "true") {
		if r.code != 0 {
			t.Fatal(r)
		}
	}
	for _, m := range []snsfake.Message{msgs[0], msgs[3]} {
		started := filepath.Join(e.dir, fmt.Sprintf("started-%d", partOf(m.Body)))
		goFile := filepath.Join(e.dir, fmt.Sprintf("go-%d", partOf(m.Body)))
		script := fmt.Sprintf("touch %s; while [ ! -e %s ]; do sleep 0.02; done", started, goFile)
		done := make(chan result, 1)
		go func() { done <- e.deliver([]snsfake.Message{m}, 1, short, "sh", "-c", script)[0] }()
		waitFor(t, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
		stop()
		if err := os.WriteFile(goFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var r result
		select {
		case r = <-done:
		case <-time.After(3 * time.Minute):
			cont()
			t.Fatal("wp run hung with the store unreachable")
		}
		t.Logf("store down while the command ran: exit %d %v after the command ended", r.code, time.Since(start))
		if r.code != exitRetry {
			cont()
			t.Fatalf("store down while the command ran: %s; want exit %d", r, exitRetry)
		}
		cont()
	}
	// wp gave up on its Complete call, but the call may have reached the
	// server before it stopped, and then ran when it resumed: whether parts
	// 0 and 3 are recorded is unknown to wp (their commands did exit 0, so
	// either is right). What must hold: parts 1 and 2 stay done, no reduce
	// went out, and the redeliveries below finish the job.
	ji := e.info("outage")
	t.Logf("after the outage: %+v (pending: %q)", ji, e.pending("outage"))
	if ji.Remaining > 2 || ji.ReduceSent || e.reduces("outage") != 0 {
		t.Fatalf("after the outage: %+v, %d reduces; want parts 1 and 2 done and no reduce", ji, e.reduces("outage"))
	}
	// Redelivered, twice each: the job finishes, one reduce.
	for _, r := range e.deliver(append(msgs, msgs...), 4, nil, "true") {
		if r.code != 0 {
			t.Fatal(r)
		}
	}
	e.checkDone("outage", 4)
}

// faultSIGTERM: SIGTERM to wp run while its command runs reaches the
// command's whole process group (grandchildren too); the part is not
// completed even though the command exits 0 on the signal; wp exits 128+15;
// no process is left behind.
func faultSIGTERM(t *testing.T, wp string) {
	forEachStore(t, wp, func(t *testing.T, e *wpEnv) {
		msgs := e.create("term", 2)
		pids := filepath.Join(e.dir, "pids")
		ready := filepath.Join(e.dir, "ready")
		got := filepath.Join(e.dir, "got")
		// The worker starts a grandchild that itself starts one; on TERM
		// it waits for them, then exits 0 (as a careless trap would).
		script := fmt.Sprintf(`sleep 300 & echo $! >> %[1]s
sh -c 'trap "echo gc >> %[3]s; exit 0" TERM; sleep 300 & echo $! >> %[1]s; wait' & echo $! >> %[1]s
echo $$ >> %[1]s
trap 'echo worker >> %[3]s; wait; exit 0' TERM
touch %[2]s
wait`, pids, ready, got)
		c := e.command(deliverEnv(msgs[0]), "run", "--grace", "20s", "--", "sh", "-c", script)
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the worker to start", func() bool { _, err := os.Stat(ready); return err == nil })
		// The grandchild writes its pid before "ready" only by luck of
		// ordering; wait for all four.
		waitFor(t, "four pids", func() bool {
			b, _ := os.ReadFile(pids)
			return len(strings.Fields(string(b))) == 4
		})
		if err := c.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		code := child.ShellStatus(c.ProcessState)
		if code != 128+int(syscall.SIGTERM) {
			t.Errorf("wp run after SIGTERM exited %d, want %d\n%s", code, 128+int(syscall.SIGTERM), errb.String())
		}
		if !strings.Contains(errb.String(), "nothing recorded") {
			t.Errorf("wp run did not say nothing was recorded:\n%s", errb.String())
		}
		b, _ := os.ReadFile(got)
		if !strings.Contains(string(b), "worker") || !strings.Contains(string(b), "gc") {
			t.Errorf("the signal did not reach the worker and its grandchild; they logged %q", b)
		}
		pb, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(pb)) {
			pid, _ := strconv.Atoi(f)
			waitFor(t, fmt.Sprintf("process %d to go", pid), func() bool {
				return syscall.Kill(pid, 0) != nil || isZombie(pid)
			})
		}
		if ji := e.info("term"); ji.Remaining != 2 {
			t.Errorf("after SIGTERM: %+v; want nothing completed", ji)
		}
		if e.reduces("term") != 0 {
			t.Error("a reduce was sent")
		}
	})
}

// faultCreateInterrupted: wp create whose publishing fails part way
// exits non-zero, names the job id and prints the command that finishes it;
// re-running with --jobid publishes everything, and the duplicate map
// messages are harmless.
func faultCreateInterrupted(t *testing.T, wp string) {
	const n = 200
	forEachStore(t, wp, func(t *testing.T, e *wpEnv) {
		// Every batch entry after the first 50 accepted fails, so publishing
		// stops part way with about a quarter of the parts sent.
		var mu sync.Mutex
		accepted := 0
		e.sns.FailEntries(func(subject, body string) bool {
			mu.Lock()
			defer mu.Unlock()
			if accepted < 50 {
				accepted++
				return false
			}
			return true
		})
		r := e.run([]string{"WP_LOG_FORMAT=text"}, parts(n), "create", "--jobid", "half", "--concurrency", "4")
		if r.code == 0 {
			t.Fatalf("wp create succeeded with SNS failing: %s", r)
		}
		if r.stdout != "" {
			t.Errorf("wp create printed %q on stdout after a failure, want nothing", r.stdout)
		}
		for _, want := range []string{"jobid=half", "published=", "wp create --jobid half", "finish publishing"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("wp create's error does not say %q:\n%s", want, r.stderr)
			}
		}
		sent := e.sns.Count("map")
		if sent == 0 || sent >= n {
			t.Fatalf("%d of %d map messages published before the failure; want some but not all", sent, n)
		}
		e.sns.FailEntries(nil)
		// The first messages are delivered now, before the re-run: they
		// complete parts of the stored job.
		early := e.sns.Messages()
		for _, r := range e.deliver(early, 4, nil, "true") {
			if r.code != 0 {
				t.Fatalf("delivery of an early message: %s", r)
			}
		}
		r = e.run(nil, parts(n), "create", "--jobid", "half")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "half" {
			t.Fatalf("re-run: %s", r)
		}
		if got := e.sns.Count("map"); got != sent+n {
			t.Fatalf("%d map messages after the re-run, want %d + %d", got, sent, n)
		}
		// Deliver every message published, early ones again too.
		all := e.sns.Messages()
		var maps []snsfake.Message
		for _, m := range all {
			if m.Subject == "map" {
				maps = append(maps, m)
			}
		}
		rand.Shuffle(len(maps), func(i, j int) { maps[i], maps[j] = maps[j], maps[i] })
		for _, r := range e.deliver(maps, 8, nil, "true") {
			if r.code != 0 {
				t.Fatalf("delivery: %s", r)
			}
		}
		e.checkDone("half", n)
	})
}

// faultClusterFailover: a Redis Cluster of 3 masters with one replica each,
// wp told to wait for one replica (?min_replicas=1). A 300-part job, every
// map message delivered twice, 8 wp run processes at a time; a quarter of
// the way through, the master serving the job's slot is SIGKILLed. Its
// replica takes over; the killed node is started again and rejoins as a
// replica. Then: every wp run exited 0 or 75, and every part that a wp run
// exited 0 for is complete on the new master (nothing acknowledged was
// lost). Redelivering what exited 75, as watchbot would, finishes the job
// with exactly one reduce.
func faultClusterFailover(t *testing.T, wp string) {
	const n = 300
	c := testservers.StartRedisClusterT(t, 3, 1)
	e := newWPEnv(t, wp, "")
	seeds := c.Addrs[0] + "/0?min_replicas=1&replica_timeout=1s"
	for _, a := range c.Addrs[1:] {
		seeds += "&addr=" + a
	}
	e.store = "redis-cluster"
	e.env = append(e.env, "WP_PROGRESS=redis://"+seeds)
	msgs := e.create("failover", n)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	victim, err := c.MasterFor(ctx, "wp:{failover}:job")
	if err != nil {
		t.Fatal(err)
	}

	deliveries := append(append([]snsfake.Message{}, msgs...), msgs...)
	rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	res := make([]result, len(deliveries))
	idx := make(chan int)
	var done atomic.Int64
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				res[i] = e.run(deliverEnv(deliveries[i]), nil, "run", "--", "true")
				if done.Add(1) == int64(len(deliveries)/4) {
					close(killed)
				}
			}
		}()
	}
	// The failover runs beside the storm: kill, wait for the replica to
	// take the slot over, start the killed node again, wait until it has
	// synced from its new master.
	failover := make(chan error, 1)
	go func() {
		<-killed
		t0 := time.Now()
		if err := c.Kill(victim); err != nil {
			failover <- err
			return
		}
		for {
			m, err := c.MasterFor(ctx, "wp:{failover}:job")
			if err == nil && m != victim {
				t.Logf("%s killed after %d deliveries; %s serves the job's slot %v later", victim, len(deliveries)/4, m, time.Since(t0))
				break
			}
			if ctx.Err() != nil {
				failover <- fmt.Errorf("no replica took over from %s: %v", victim, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := c.Restart(victim); err != nil {
			failover <- err
			return
		}
		failover <- c.WaitHealthy(ctx)
	}()
	for i := range deliveries {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if err := <-failover; err != nil {
		t.Fatal(err)
	}

	acked := map[int64]bool{}
	counts := map[int]int{}
	for i, r := range res {
		counts[r.code]++
		switch r.code {
		case 0:
			acked[partOf(deliveries[i].Body)] = true
		case exitRetry:
		default:
			t.Errorf("delivery %d (%s) during the failover: %s; want exit 0 or 75", i, deliveries[i].Body, r)
		}
	}
	t.Logf("exit codes of %d deliveries during the failover: %v", len(res), counts)
	if counts[exitRetry] == 0 {
		t.Logf("no delivery exited 75: the failover fell between calls")
	}
	for _, line := range strings.Fields(e.pending("failover")) {
		p, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			t.Fatalf("wp pending printed %q", line)
		}
		if acked[p] {
			t.Errorf("part %d is pending after the failover, but a wp run exited 0 for it: an acknowledged completion was lost", p)
		}
	}
	// Watchbot retries what exited 75.
	var retry []snsfake.Message
	for p, m := range msgs {
		if !acked[int64(p)] {
			retry = append(retry, m)
		}
	}
	for round := 0; len(retry) > 0; round++ {
		if round == 10 {
			t.Fatalf("%d messages still exit non-zero after 10 rounds of redelivery", len(retry))
		}
		var again []snsfake.Message
		for i, r := range e.deliver(retry, 8, nil, "true") {
			if r.code != 0 {
				again = append(again, retry[i])
			}
		}
		retry = again
	}
	e.checkDone("failover", n)
}
