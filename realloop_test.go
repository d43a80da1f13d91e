package main

// The promises on the real loop: the real watchbot watcher (npm
// @mapbox/watchbot 4.7.1) polling a real SNS topic -> SQS queue -> dead-
// letter queue (npm fauxqs), running `wp run` once per message, as a
// watchbot container does. wp's own simulations (the deliver command of the
// scripts, fault_test.go) cover the many small cases; these cover what only
// the real loop shows: exit codes as the watcher treats them, its backoff,
// its SIGTERM, and the dead-letter queue.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/wp-tools/wp/internal/testservers"
)

// loop is one watchbot stack (topic, queue, dead-letter queue, and a tap
// that sees every message published), a progress store, and the wp that
// the test and the watchers run.
type loop struct {
	t     *testing.T
	sqs   *testservers.SQS
	stack *testservers.Stack
	tap   string
	wp    string
	dir   string
	// env is what every wp process gets: the store, the topic, the
	// emulator's endpoints.
	env []string
	// look, when set, is added to env for the test's own looks at the job
	// (wp info), so that they bypass a throttling proxy.
	look []string
}

// newLoop starts the emulator and a stack whose queue moves a message to
// its dead-letter queue after maxReceives receives, with a Redis store (or
// storeEnv, the store's variables, when given).
func newLoop(t *testing.T, maxReceives int, storeEnv ...string) *loop {
	t.Helper()
	l := &loop{t: t, sqs: testservers.StartSQST(t), wp: testservers.BuildWPT(t), dir: t.TempDir()}
	l.stack = l.sqs.NewStackT(t, testservers.StackOptions{Name: "loop", MaxReceiveCount: maxReceives, VisibilityTimeout: 30 * time.Second})
	var err error
	if l.tap, err = l.stack.Tap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(storeEnv) == 0 {
		r := testservers.StartRedisT(t)
		storeEnv = []string{"WP_PROGRESS=" + r.URL}
	}
	l.env = testservers.WPEnv(l.dir, append(append(l.sqs.Env(), "WorkTopic="+l.stack.TopicArn, "WP_STORE_TIMEOUT=20s"), storeEnv...)...)
	return l
}

// script writes a worker script and returns its path.
func (l *loop) script(name, body string) string {
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte("set -u\nD="+l.dir+"\n"+body), 0o755); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// watchers starts n real watchers running `wp run FLAGS -- sh SCRIPT`.
func (l *loop) watchers(n int, maxJobDuration time.Duration, script string, flags ...string) []*testservers.Watcher {
	cmd := append([]string{l.wp, "run"}, flags...)
	cmd = append(cmd, "--", "sh", script)
	return l.sqs.StartFleetT(l.t, n, testservers.WatcherOptions{
		QueueURL: l.stack.QueueURL, Command: cmd, MaxJobDuration: maxJobDuration, Env: l.env, Dir: l.dir,
	})
}

// run runs wp to the end with stdin (nil for none) and returns its exit
// code and output.
func (l *loop) run(stdin []byte, args ...string) (int, string, string) {
	c := exec.Command(l.wp, args...)
	c.Env, c.Dir = l.env, l.dir
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("wp %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

func (l *loop) mustWP(stdin []byte, args ...string) string {
	l.t.Helper()
	code, out, errOut := l.run(stdin, args...)
	if code != 0 {
		l.t.Fatalf("wp %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

type loopJob struct {
	State     string `json:"state"`
	Completed int64  `json:"completed"`
	Remaining int64  `json:"remaining"`
	GivenUp   int64  `json:"given_up"`
	Error     string `json:"error"`
	Reduced   bool   `json:"reduced"`
}

func (l *loop) info(id string) loopJob {
	l.t.Helper()
	env := l.env
	l.env = append(append([]string{}, env...), l.look...)
	out := l.mustWP(nil, "info", id, "--json")
	l.env = env
	var j loopJob
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		l.t.Fatal(err)
	}
	return j
}

// waitFor polls cond until it holds, within timeout; the failure shows
// what the watchers printed.
func (l *loop) waitFor(what string, timeout time.Duration, ws []*testservers.Watcher, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for i, w := range ws {
				l.t.Logf("watcher %d:\n%s", i, w.Output())
			}
			l.t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queuesEmpty: nothing in the work queue, nothing in the dead-letter queue.
func (l *loop) queuesEmpty() bool {
	q, err1 := l.stack.QueueCounts(context.Background())
	d, err2 := l.stack.DeadLetterCounts(context.Background())
	return err1 == nil && err2 == nil && q.Total() == 0 && d.Total() == 0
}

// published counts what was published to the topic, by subject.
func (l *loop) published() map[string]int {
	l.t.Helper()
	c, err := l.stack.TapSubjects(context.Background(), l.tap)
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func nparts(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "{\"i\":%d}\n", i)
	}
	return b.Bytes()
}

// runs reads the file each command appends its part id to, as counts.
func (l *loop) runs(name string) map[string]int {
	b, _ := os.ReadFile(filepath.Join(l.dir, name))
	c := map[string]int{}
	for _, f := range strings.Fields(string(b)) {
		c[f]++
	}
	return c
}

// TestRealLoop_ReducesOnce: two watchers, 30 parts, every map message
// published twice (SNS and SQS deliver at least once): every part's
// command ran, the job reduced, exactly one reduce message was published,
// and both queues are empty.
func TestRealLoop_ReducesOnce(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 3)
	script := l.script("w.sh", `case "$WP_SUBJECT" in
map) echo "$WP_PART_ID" >> $D/ran ;;
reduce) echo reduce >> $D/reduced ;;
esac`)
	ws := l.watchers(2, 0, script, "--max-receives", "3")
	l.mustWP(nparts(30), "create", "--jobid", "once")
	// The duplicates: every map message once more, as SNS may.
	for i := 0; i < 30; i++ {
		l.stack.PublishT(t, "map", fmt.Sprintf(`{"jobid":"once","partid":%d,"i":%d}`, i, i))
	}
	l.waitFor("the job reduced and the queues empty", 2*time.Minute, ws, func() bool {
		return l.info("once").Reduced && l.queuesEmpty()
	})
	if ran := l.runs("ran"); len(ran) != 30 {
		t.Errorf("%d parts ran, want 30: %v", len(ran), ran)
	}
	if got := l.published(); got["reduce"] != 1 || got["map"] != 60 {
		t.Errorf("published %v, want 60 map messages and exactly 1 reduce", got)
	}
	if n := l.runs("reduced")["reduce"]; n != 1 {
		t.Errorf("the reduce command ran %d times, want 1", n)
	}
}

// TestRealLoop_FailJob: a --fail-job-on code (3, which watchbot drops as a
// failure not to retry) fails the job: the message is deleted, the other
// parts are skipped, no reduce is published, nothing reaches the
// dead-letter queue.
func TestRealLoop_FailJob(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 3)
	script := l.script("w.sh", `[ "$WP_SUBJECT" = reduce ] && exit 0
[ "$WP_PART_ID" = 4 ] && exit 3
sleep 0.2; echo "$WP_PART_ID" >> $D/ran`)
	ws := l.watchers(1, 0, script, "--fail-job-on", "3")
	l.mustWP(nparts(10), "create", "--jobid", "fj")
	l.waitFor("the job failed and the queues empty", 2*time.Minute, ws, func() bool {
		return l.info("fj").State == "failed" && l.queuesEmpty()
	})
	if j := l.info("fj"); j.Error != "part 4 exited with code 3" {
		t.Errorf("error = %q, want part 4's", j.Error)
	}
	if got := l.published(); got["reduce"] != 0 {
		t.Errorf("published %v: a reduce for a failed job", got)
	}
	if ran := l.runs("ran"); ran["4"] != 0 {
		t.Errorf("runs %v: part 4 recorded", ran)
	}
}

// TestRealLoop_GiveUpWithinTolerance: a part that fails on every receive is
// given up on its last one (--max-receives = the queue's maxReceiveCount);
// within the job's tolerance the job reduces, once; the message still goes
// to the dead-letter queue, and wp dead-letter then finds it had ended.
func TestRealLoop_GiveUpWithinTolerance(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 2)
	script := l.script("w.sh", `[ "$WP_SUBJECT" = reduce ] && { echo "$WP_PARTS_GIVEN_UP" >> $D/reduced; exit 0; }
[ "$WP_PART_ID" = 1 ] && { echo "boom on receive $ApproximateReceiveCount" >&2; exit 1; }
exit 0`)
	ws := l.watchers(1, 0, script, "--max-receives", "2")
	l.mustWP(nparts(4), "create", "--jobid", "tol", "--tolerate", "1")
	l.waitFor("the job reduced", 2*time.Minute, ws, func() bool { return l.info("tol").Reduced })
	if j := l.info("tol"); j.GivenUp != 1 || j.Completed != 3 {
		t.Errorf("job = %+v, want 3 completed, 1 given up", j)
	}
	if got := l.mustWP(nil, "pending", "tol", "--given-up"); !strings.Contains(got, "receive 2") || !strings.Contains(got, "boom on receive 2") {
		t.Errorf("given up: %q, want part 1 on receive 2 with its stderr", got)
	}
	l.waitFor("the failing message in the dead-letter queue", time.Minute, ws, func() bool {
		d, err := l.stack.DeadLetterCounts(context.Background())
		return err == nil && d.Visible == 1
	})
	out := l.mustWP(nil, "dead-letter", "--queue", l.stack.DeadLetterURL)
	if !strings.Contains(out, "already ended") {
		t.Errorf("dead-letter: %q, want the message found already ended", out)
	}
	if got := l.published(); got["reduce"] != 1 {
		t.Errorf("published %v, want exactly 1 reduce", got)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dir, "reduced")); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("the reduce saw WP_PARTS_GIVEN_UP %q, want 1, once", b)
	}
}

// TestRealLoop_SIGTERM: past maxJobDuration the watcher SIGTERMs the
// command's process tree (wp run and its command): wp forwards it, records
// nothing, exits 128+15, and the watcher retries the message, whose next
// receive completes the part.
func TestRealLoop_SIGTERM(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 5)
	script := l.script("w.sh", `[ "$WP_SUBJECT" = reduce ] && exit 0
if [ "$ApproximateReceiveCount" = 1 ]; then
	trap 'echo "got TERM" >> $D/term; exit 0' TERM
	while :; do sleep 0.1; done
fi
echo "$WP_PART_ID $ApproximateReceiveCount" >> $D/ran`)
	ws := l.watchers(1, 2*time.Second, script)
	l.mustWP(nparts(1), "create", "--jobid", "term")
	l.waitFor("the job reduced", 2*time.Minute, ws, func() bool { return l.info("term").Reduced })
	if b, _ := os.ReadFile(filepath.Join(l.dir, "term")); !strings.Contains(string(b), "got TERM") {
		t.Errorf("the command did not get SIGTERM on its first receive:\n%s", ws[0].Output())
	}
	if b, _ := os.ReadFile(filepath.Join(l.dir, "ran")); strings.TrimSpace(string(b)) != "0 2" {
		t.Errorf("completed runs %q, want part 0 on receive 2 only (the interrupted one recorded nothing)", b)
	}
	// tree-kill signals the watcher's shell too, so the watcher logs the
	// signal; wp's own line says what it exited with.
	if !strings.Contains(ws[0].Output(), "part 0 interrupted by SIGTERM: nothing recorded") || !strings.Contains(ws[0].Output(), "exit 143: the message will be retried") {
		t.Errorf("wp did not say it was interrupted and exited 143 on the first receive:\n%s", ws[0].Output())
	}
}

// TestRealLoop_Exit3And4: a message wp can never handle (a job the store
// lacks) exits 3, which the watcher deletes; a command exiting 4 makes wp
// exit 4, which the watcher puts back on the queue, and the next receive
// completes the part.
func TestRealLoop_Exit3And4(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 5)
	script := l.script("w.sh", `[ "$WP_SUBJECT" = reduce ] && exit 0
[ "$ApproximateReceiveCount" = 1 ] && exit 4
echo "$WP_PART_ID $ApproximateReceiveCount" >> $D/ran`)
	ws := l.watchers(1, 0, script)
	l.stack.PublishT(t, "map", `{"jobid":"nosuch","partid":0}`)
	l.mustWP(nparts(1), "create", "--jobid", "four")
	l.waitFor("the job reduced and the queues empty", 2*time.Minute, ws, func() bool {
		return l.info("four").Reduced && l.queuesEmpty()
	})
	out := ws[0].Output()
	if !strings.Contains(out, `"code":3`) || !strings.Contains(out, "no such job") {
		t.Errorf("the message of an unknown job: want wp's exit 3 and why:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dir, "ran")); strings.TrimSpace(string(b)) != "0 2" {
		t.Errorf("runs %q, want part 0 recorded on receive 2 after exit 4 on receive 1", b)
	}
}

// killedOnLastReceive: part 1's worker is SIGKILLed (the whole wp run, as an
// out-of-memory kill or an ECS stop would) on its last receive, after
// failing on the first: nothing is recorded, and its message reaches the
// dead-letter queue.
func killedOnLastReceive(t *testing.T, l *loop, id string, createFlags ...string) []*testservers.Watcher {
	script := l.script("w.sh", `case "$WP_SUBJECT" in
reduce) echo "reduce $WP_JOB_STATE" >> $D/reduced; exit 0 ;;
esac
if [ "$WP_PART_ID" = 1 ]; then
	[ "$ApproximateReceiveCount" = 1 ] && exit 1
	kill -KILL $PPID; sleep 1
fi
exit 0`)
	ws := l.watchers(1, 0, script, "--max-receives", "2")
	l.mustWP(nparts(3), append([]string{"create", "--jobid", id}, createFlags...)...)
	l.waitFor("part 1's message in the dead-letter queue", 2*time.Minute, ws, func() bool {
		d, err := l.stack.DeadLetterCounts(context.Background())
		return err == nil && d.Visible == 1
	})
	j := l.info(id)
	if j.State != "running" || j.Remaining != 1 || j.GivenUp != 0 {
		t.Fatalf("job after its worker was killed = %+v: want it running with part 1 pending, nothing given up (the defect the sweep ends)", j)
	}
	return ws
}

// TestRealLoop_DeadLetter: the sweep ends what a killed worker left: a
// dry run changes nothing; the sweep gives the part up, and within its
// tolerance the job reduces, exactly once.
func TestRealLoop_DeadLetter(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 2)
	ws := killedOnLastReceive(t, l, "dl", "--tolerate", "1")
	out := l.mustWP(nil, "dead-letter", "--queue", l.stack.DeadLetterURL, "--dry-run")
	if !strings.Contains(out, "would be: given up") {
		t.Errorf("dry run: %q, want what it would do", out)
	}
	if j := l.info("dl"); j.Remaining != 1 || j.GivenUp != 0 {
		t.Errorf("after the dry run the job is %+v: it changed", j)
	}
	if d, _ := l.stack.DeadLetterCounts(context.Background()); d.Visible != 1 {
		t.Errorf("after the dry run the dead-letter queue holds %v: want the message, visible", d)
	}
	code, out, errOut := l.run(nil, "dead-letter", "--queue", l.stack.DeadLetterURL, "--json")
	if code != 0 || !strings.Contains(out, `"action":"given up"`) || !strings.Contains(out, `"given_up":[1]`) {
		t.Fatalf("dead-letter: exit %d\n%s%s", code, out, errOut)
	}
	l.waitFor("the job reduced and the queues empty", 2*time.Minute, ws, func() bool {
		return l.info("dl").Reduced && l.queuesEmpty()
	})
	if got := l.published(); got["reduce"] != 1 {
		t.Errorf("published %v, want exactly 1 reduce", got)
	}
	if got := l.mustWP(nil, "pending", "dl", "--given-up"); !strings.Contains(got, "dead-lettered") {
		t.Errorf("given up: %q, want the reason dead-lettered", got)
	}
	// Run again: an empty queue, nothing to do.
	if out := l.mustWP(nil, "dead-letter", "--queue", l.stack.DeadLetterURL); out != "" {
		t.Errorf("a second sweep printed %q, want nothing", out)
	}
}

// TestRealLoop_DeadLetterPastTolerance: with no tolerance the sweep's
// give-up fails the job; a job created with --reduce-on-failure still
// sends its reduce, once, with the failed state.
func TestRealLoop_DeadLetterPastTolerance(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 2)
	ws := killedOnLastReceive(t, l, "dlf", "--reduce-on-failure")
	l.mustWP(nil, "dead-letter", "--queue", l.stack.DeadLetterURL)
	l.waitFor("the failed job's reduce ran", 2*time.Minute, ws, func() bool {
		b, _ := os.ReadFile(filepath.Join(l.dir, "reduced"))
		return strings.Contains(string(b), "reduce failed") && l.queuesEmpty()
	})
	if j := l.info("dlf"); j.State != "failed" || !strings.Contains(j.Error, "1 parts given up (tolerance 0)") {
		t.Errorf("job = %+v, want failed by its tolerance", j)
	}
	if got := l.published(); got["reduce"] != 1 {
		t.Errorf("published %v, want exactly 1 reduce", got)
	}
}

// TestRealLoop_DeadLetterRacesDuplicate: while the sweep runs, a duplicate
// delivery of the dead-lettered part completes it: whichever comes first,
// the part ends once and the job reduces once.
func TestRealLoop_DeadLetterRacesDuplicate(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 2)
	ws := killedOnLastReceive(t, l, "dld", "--tolerate", "1")
	var wg sync.WaitGroup
	wg.Add(2)
	var sweep, dup string
	go func() {
		defer wg.Done()
		_, sweep, _ = l.run(nil, "dead-letter", "--queue", l.stack.DeadLetterURL)
	}()
	go func() {
		defer wg.Done()
		c := exec.Command(l.wp, "run", "--", "true")
		c.Env = append(append([]string{}, l.env...), "Subject=map", `Message={"jobid":"dld","partid":1,"i":1}`, "ApproximateReceiveCount=1")
		b, _ := c.CombinedOutput()
		dup = string(b)
	}()
	wg.Wait()
	l.waitFor("the job reduced and the queues empty", 2*time.Minute, ws, func() bool {
		return l.info("dld").Reduced && l.queuesEmpty()
	})
	j := l.info("dld")
	if j.Completed+j.GivenUp != 3 || j.Remaining != 0 {
		t.Errorf("job = %+v, want its 3 parts ended once each", j)
	}
	if got := l.published(); got["reduce"] != 1 {
		t.Errorf("published %v, want exactly 1 reduce\nsweep: %s\nduplicate: %s", got, sweep, dup)
	}
}

// TestRealLoop_Throttled: the table provisioned as watchbot makes it (30
// write units a second: a proxy in front of dynalite refuses writes beyond
// them, as DynamoDB does), 32 watchers at once: every part completes, no
// command runs twice because its completion was throttled, and nothing
// reaches the dead-letter queue.
func TestRealLoop_Throttled(t *testing.T) {
	t.Parallel()
	d := testservers.StartDynaliteT(t)
	proxy := testservers.StartDynamoProxyT(t, d.URL, testservers.ProxyOptions{})
	l := newLoop(t, 3, "AWS_ENDPOINT_URL_DYNAMODB="+proxy.URL, "WP_PROGRESS=dynamodb://progress")
	l.look = []string{"AWS_ENDPOINT_URL_DYNAMODB=" + d.URL} // the test's looks are not the workers'

	l.mustWP(nil, "table", "create", "progress")
	const n = 160
	l.mustWP(nparts(n), "create", "--jobid", "thr")
	// From now on, the table's 30 units.
	// No burst: real DynamoDB banks up to 5 minutes of unused units, which
	// would let this small job through unthrottled.
	proxy.SetLimits(testservers.ProxyOptions{WriteUnitsPerSecond: 30, ReadUnitsPerSecond: 30, WriteBurst: 1, ReadBurst: 1})
	script := l.script("w.sh", `[ "$WP_SUBJECT" = reduce ] && exit 0
echo "$WP_PART_ID" >> $D/ran`)
	ws := l.watchers(32, 0, script, "--max-receives", "3")
	l.waitFor("the job reduced and the queues empty", 4*time.Minute, ws, func() bool {
		return l.info("thr").Reduced && l.queuesEmpty()
	})
	ran := l.runs("ran")
	var twice []string
	for p, c := range ran {
		if c != 1 {
			twice = append(twice, p+"×"+strconv.Itoa(c))
		}
	}
	sort.Strings(twice)
	if len(ran) != n || len(twice) > 0 {
		t.Errorf("%d parts ran, want %d, each once; more than once: %v", len(ran), n, twice)
	}
	st := proxy.Stats()
	if st.Throttled == 0 {
		t.Errorf("the proxy throttled nothing (%+v): the test did not test throttling", st.OpStats)
	}
	t.Logf("proxy: %d requests, %d throttled, %.0f write units", st.Requests, st.Throttled, st.WriteUnits)
}

// TestRealLoop_DeadLetterBadInput: what the sweep cannot handle stays in
// the queue and is listed: a body that is not JSON, a message that is not
// wp's, one of a job the store lacks; a --queue that is not an SQS queue
// URL is a usage error; a queue that cannot be reached, an error naming it.
func TestRealLoop_DeadLetterBadInput(t *testing.T) {
	t.Parallel()
	l := newLoop(t, 2)
	ctx := context.Background()
	for _, body := range []string{
		`not json at all`,
		`{"Type":"Notification","Subject":"map","Message":"{\"hello\":\"world\"}"}`,
		`{"Type":"Notification","Subject":"map","Message":"{\"jobid\":\"nosuch\",\"partid\":3}"}`,
	} {
		if _, err := l.sqs.SQSClient.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(l.stack.DeadLetterURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := l.run(nil, "dead-letter", "--queue", l.stack.DeadLetterURL)
	if code != 0 {
		t.Fatalf("dead-letter: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"not a wp message (left in the queue)\t-\t-\tMessage is not a JSON object", "not a wp message (left in the queue)\t-\t-\tMessage has no jobid field", "unknown job (left in the queue)\tnosuch\tpart 3\tthe progress store has no job nosuch"} {
		if !strings.Contains(out, want) {
			t.Errorf("dead-letter printed:\n%s\nwant a line with %q", out, want)
		}
	}
	if !strings.Contains(errOut, "messages=3 left_in_queue=3") {
		t.Errorf("dead-letter's summary: %q, want 3 messages, 3 left", errOut)
	}
	l.waitFor("the 3 messages visible in the dead-letter queue again", 30*time.Second, nil, func() bool {
		d, err := l.stack.DeadLetterCounts(ctx)
		return err == nil && d.Visible == 3
	})
	if code, _, errOut := l.run(nil, "dead-letter", "--queue", "my-dlq"); code != 2 || !strings.Contains(errOut, `--queue: "my-dlq" is not an SQS queue URL`) {
		t.Errorf("--queue my-dlq: exit %d, %q; want 2 and why", code, errOut)
	}
	port, _ := testservers.FreePort()
	gone := fmt.Sprintf("http://sqs.us-east-1.localhost:%d/000000000000/gone", port)
	c := exec.Command(l.wp, "dead-letter", "--queue", gone)
	c.Env = append(append([]string{}, l.env...), "AWS_ENDPOINT_URL_SQS=http://127.0.0.1:"+strconv.Itoa(port))
	b, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(b), "read the dead-letter queue "+gone) {
		t.Errorf("an unreachable queue: %v\n%s\nwant exit 1 naming the queue", err, b)
	}
}
