package dynamodb

// Mixed fleets: the predecessors' own code (watchbot-progress-py's modules
// with boto3, the Node library from npm) and the wp command sharing one
// table, as during a rolling deploy. Each side publishes to its own SNS
// endpoint, so every reduce is counted on the side that sent it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wp-tools/wp/internal/snsfake"
	"github.com/wp-tools/wp/internal/testservers"
)

const fleetTopic = "arn:aws:sns:us-east-1:123456789012:fleet"

type fleet struct {
	t      *testing.T
	st     *Store
	table  string
	libs   *testservers.Legacy
	wpBin  string
	wpSNS  *snsfake.Server // what wp publishes
	libSNS *snsfake.Server // what the libraries publish
	env    []string        // shared by every process
	wpURL  string
	libURL string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	libs, err := testservers.FindLegacy()
	if err != nil {
		t.Fatal(err)
	}
	bin := testservers.BuildWPT(t)
	// The table watchbot made, which the libraries and wp share during a
	// rolling deploy: no wp-jobs index, so wp ls scans it and lists the
	// libraries' jobs too.
	st, table := newWatchbotTable(t)
	f := &fleet{t: t, st: st, table: table, libs: libs, wpBin: bin, wpSNS: snsfake.New(), libSNS: snsfake.New()}
	if f.wpURL, err = f.wpSNS.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.wpSNS.Close)
	if f.libURL, err = f.libSNS.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.libSNS.Close)
	f.env = testservers.WPEnv(t.TempDir(),
		"ProgressTable=arn:aws:dynamodb:us-east-1:123456789012:table/"+table,
		"AWS_ENDPOINT_URL_DYNAMODB="+dynalite.URL,
		"WorkTopic="+fleetTopic,
		"AWS_DEFAULT_REGION=us-east-1", // the Python library's boto3
	)
	return f
}

// result is what a driver or wp printed and how it exited.
type result struct {
	code   int
	out    string // stdout
	errOut string // stderr
}

// value decodes the driver's JSON line.
func (r result) value(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		t.Fatalf("driver printed %q (stderr %q): %v", r.out, r.errOut, err)
	}
	return v
}

// errorName is the "error" the driver reported, "" when the call worked.
func (r result) errorName() string {
	var v struct{ Error string }
	json.Unmarshal([]byte(r.out), &v)
	return v.Error
}

func (r result) ran() bool { return strings.Contains(r.errOut, "ran\n") }

func (f *fleet) exec(env []string, stdin string, name string, args ...string) result {
	f.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(append([]string(nil), f.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{out: strings.TrimSpace(out.String()), errOut: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		f.t.Fatalf("run %s: %v", name, err)
	}
	return r
}

// py runs the Python library's driver.
func (f *fleet) py(args ...string) result {
	return f.exec([]string{
		"PYTHONPATH=" + f.libs.PyLibrary,
		"WP_TEST_DYNAMODB_ENDPOINT=" + dynalite.URL,
		"WP_TEST_SNS_ENDPOINT=" + f.libURL,
	}, "", f.libs.Python, append([]string{f.libs.PyDriver}, args...)...)
}

// node runs the Node library's driver.
func (f *fleet) node(args ...string) result {
	return f.exec([]string{
		"DynamoDbEndpoint=" + dynalite.URL,
		"WP_TEST_SNS_ENDPOINT=" + f.libURL,
		"AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1",
	}, "", f.libs.Node, append([]string{f.libs.NodeDriver}, args...)...)
}

// wp runs the wp command on the table.
func (f *fleet) wp(stdin string, env []string, args ...string) result {
	return f.exec(append([]string{
		"WP_PROGRESS=dynamodb://" + f.table,
		"AWS_ENDPOINT_URL_SNS=" + f.wpURL,
		"WP_STORE_TIMEOUT=30s",
	}, env...), stdin, f.wpBin, args...)
}

// wpRun delivers one message to `wp run -- true`.
func (f *fleet) wpRun(subject, message string) result {
	return f.wp("", []string{"Subject=" + subject, "Message=" + message}, "run", "--", "true")
}

func (f *fleet) reduces() (wp, libs int) { return f.wpSNS.Count("reduce"), f.libSNS.Count("reduce") }

// info is `wp info JOBID --json`.
func (f *fleet) info(id string) map[string]any {
	f.t.Helper()
	r := f.wp("", nil, "info", id, "--json")
	if r.code != 0 {
		f.t.Fatalf("wp info %s: exit %d: %s", id, r.code, r.errOut)
	}
	return r.value(f.t).(map[string]any)
}

func msg(job string, part int) string {
	return fmt.Sprintf(`{"jobid":%q,"partid":%d}`, job, part)
}

// nodeMsg is a map message as the Node library's examples publish it.
func nodeMsg(job string, part int) string {
	return fmt.Sprintf(`{"id":%q,"part":%d}`, job, part)
}

// wpRunNode delivers a Node-shaped message to wp run, which is told its
// field names.
func (f *fleet) wpRunNode(message string) result {
	return f.wp("", []string{"Subject=map", "Message=" + message}, "run", "--jobid-field", "id", "--partid-field", "part", "--", "true")
}

func mustOK(t *testing.T, what string, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d, stdout %s, stderr %s", what, r.code, r.out, r.errOut)
	}
}

// TestFleet_NodeNumbering reproduces the mixed fleet's first bug: the Node library
// completes every part of a job before wp ever reads it, and its worker
// dies before the reduce. wp run handed the redelivery of part 3 must send
// the reduce. And a job wp read while its numbering showed keeps it.
func TestFleet_NodeNumbering(t *testing.T) {
	f := newFleet(t)
	mustOK(t, "setTotal", f.node("settotal", "nj", "3"))
	for _, p := range []string{"3", "1", "2"} {
		mustOK(t, "completePart "+p, f.node("complete", "nj", p))
	}
	r := f.wpRunNode(nodeMsg("nj", 3))
	if r.code != 0 {
		t.Fatalf("wp run of part 3: exit %d, want 0; stderr:\n%s", r.code, r.errOut)
	}
	if wp, libs := f.reduces(); wp != 1 || libs != 0 {
		t.Errorf("reduces: wp %d, Node %d; want wp 1, Node 0", wp, libs)
	}
	if info := f.info("nj"); info["reduce_sent"] != true {
		t.Errorf("wp info after the reduce: %v, want reduce_sent", info)
	}
	// A second redelivery (of part 1) sends nothing more, on either side
	// (the Node worker with the reduceSent helper reads wp's record).
	mustOK(t, "wp run of part 1", f.wpRunNode(nodeMsg("nj", 1)))
	mustOK(t, "Node worker, part 2", f.node("part", "nj", "2", "helper"))
	if wp, libs := f.reduces(); wp != 1 || libs != 0 {
		t.Errorf("reduces after more redeliveries: wp %d, Node %d; want 1 and 0", wp, libs)
	}

	// wp info while part 3 is pending, then the Node library completes it.
	mustOK(t, "setTotal", f.node("settotal", "nj2", "3"))
	if got := f.info("nj2")["first_part"]; got != 1.0 {
		t.Errorf("first_part of a fresh Node job = %v, want 1", got)
	}
	mustOK(t, "completePart 3", f.node("complete", "nj2", "3"))
	if got := f.info("nj2")["first_part"]; got != 1.0 {
		t.Errorf("first_part after the Node library completed part 3 = %v, want still 1", got)
	}
	for _, p := range []int{1, 2} {
		mustOK(t, "wp run", f.wpRunNode(nodeMsg("nj2", p)))
	}
	if r := f.wpRunNode(nodeMsg("nj2", 0)); r.code != 3 {
		t.Errorf("wp run of part 0 of a Node job: exit %d, want 3 (not a part)", r.code)
	}
	if wp, _ := f.reduces(); wp != 2 {
		t.Errorf("%d reduces from wp, want 2 (one a job)", wp)
	}

	// A Node job finished by Node workers that use the reduceSent helper:
	// wp honours the flag, and its duplicates send nothing.
	mustOK(t, "setTotal", f.node("settotal", "nj3", "2"))
	for _, p := range []string{"1", "2"} {
		mustOK(t, "Node worker", f.node("part", "nj3", p, "helper"))
	}
	for _, p := range []int{1, 2} {
		mustOK(t, "wp run (duplicate)", f.wpRunNode(nodeMsg("nj3", p)))
	}
	if wp, libs := f.reduces(); wp != 2 || libs != 1 {
		t.Errorf("reduces: wp %d, Node %d; want 2 (nj, nj2) and 1 (nj3)", wp, libs)
	}
}

// TestFleet_PythonJobReduce: a Python job finished by wp records the
// reduce where the Python library reads it (keeping the user's metadata),
// so a duplicate handled by a Python worker sends no second reduce; and a
// Python worker that finished first is honoured by wp.
func TestFleet_PythonJobReduce(t *testing.T) {
	f := newFleet(t)
	mustOK(t, "create_job", f.py("create", "pj", "3", `{"name":"tiles"}`))
	maps := f.libSNS.Messages()
	if len(maps) != 3 {
		t.Fatalf("create_job published %d messages, want 3", len(maps))
	}
	for _, m := range maps {
		mustOK(t, "wp run", f.wpRun(m.Subject, m.Body))
	}
	if wp, libs := f.reduces(); wp != 1 || libs != 0 {
		t.Fatalf("reduces: wp %d, Python %d; want 1 and 0", wp, libs)
	}
	for p := 0; p < 3; p++ {
		r := f.py("part", "pj", fmt.Sprint(p))
		mustOK(t, "Python Part (duplicate)", r)
	}
	if wp, libs := f.reduces(); wp != 1 || libs != 0 {
		t.Errorf("after duplicates handled by Python workers: reduces wp %d, Python %d; want 1 and 0", wp, libs)
	}
	st := f.py("status", "pj").value(t).(map[string]any)
	if got, want := fmt.Sprint(st["metadata"]), "map[name:tiles reduce_message_sent:true]"; got != want {
		t.Errorf("Python status metadata = %s, want %s (the user's metadata kept)", got, want)
	}

	// The other way round: Python finishes, wp's duplicate adds nothing.
	mustOK(t, "create_job", f.py("create", "pj2", "2"))
	for p := 0; p < 2; p++ {
		mustOK(t, "Python Part", f.py("part", "pj2", fmt.Sprint(p)))
	}
	for p := 0; p < 2; p++ {
		mustOK(t, "wp run (duplicate)", f.wpRun("map", msg("pj2", p)))
	}
	if wp, libs := f.reduces(); wp != 1 || libs != 1 {
		t.Errorf("reduces: wp %d, Python %d; want 1 (pj) and 1 (pj2)", wp, libs)
	}
}

// wpCreate creates a job with wp create; it returns the map messages.
func (f *fleet) wpCreate(id string, n int) []snsfake.Message {
	f.t.Helper()
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "{\"n\": %d}\n", i)
	}
	before := len(f.wpSNS.Messages())
	mustOK(f.t, "wp create", f.wp(in.String(), nil, "create", "--jobid", id, "--metadata", `{"name":"wp-job"}`))
	return f.wpSNS.Messages()[before:]
}

// TestFleet_OldWorkersOnWPJob: an old worker handed a message of a job wp
// created fails, completes nothing and sends no reduce; the libraries'
// status, pending and listing calls fail on wp's items rather than
// answering wrong; wp then finishes the job and sends its one reduce.
func TestFleet_OldWorkersOnWPJob(t *testing.T) {
	f := newFleet(t)
	maps := f.wpCreate("wj", 5)

	r := f.py("part", "wj", "0")
	if r.code == 0 || !strings.Contains(r.out, "ValidationException") || !r.ran() {
		t.Errorf("Python Part without fail_job_on: exit %d, %s; want the user's code run, then a ValidationException from complete_part", r.code, r.out)
	}
	r = f.py("part", "wj", "0", "fail")
	if r.code == 0 || r.errorName() != "TypeError" || r.ran() {
		t.Errorf("Python Part with fail_job_on: exit %d, %s (ran %v); want a TypeError from its status read before the user's code", r.code, r.out, r.ran())
	}
	r = f.node("part", "wj", "1")
	if r.code == 0 || r.ran() || !strings.Contains(r.errOut, "TypeError") {
		t.Errorf("Node map worker: exit %d, stderr %q; want a TypeError from status before the work", r.code, r.errOut)
	}
	r = f.node("complete", "wj", "1")
	if r.code == 0 || r.errorName() != "ValidationException" {
		t.Errorf("Node completePart: exit %d, %s; want ValidationException", r.code, r.out)
	}
	for _, c := range []struct {
		name string
		r    result
		want string // in stdout (Python) or stderr (Node)
	}{
		{"Python status", f.py("status", "wj"), "TypeError"},
		{"Python list_pending_parts", f.py("pending", "wj"), "TypeError"},
		{"Python complete_part", f.py("complete", "wj", "2"), "ValidationException"},
		{"Node status", f.node("status", "wj"), "TypeError"},
		{"Node status with a part", f.node("status", "wj", "2"), "TypeError"},
	} {
		if c.r.code == 0 || !strings.Contains(c.r.out+c.r.errOut, c.want) {
			t.Errorf("%s on a wp job: exit %d, stdout %s, stderr %.300s; want a failure with %s", c.name, c.r.code, c.r.out, c.r.errOut, c.want)
		}
	}
	if wp, libs := f.reduces(); wp != 0 || libs != 0 {
		t.Fatalf("reduces after the old workers: wp %d, libraries %d; want none", wp, libs)
	}
	if info := f.info("wj"); info["remaining"] != 5.0 || info["reduce_sent"] != false {
		t.Fatalf("wp info after the old workers: %v; want 5 remaining, no reduce", info)
	}
	// An old worker's own reduce flag, set by hand, proves nothing.
	mustOK(t, "Node reduceSent", f.node("reduce-sent", "wj"))
	for _, m := range maps {
		mustOK(t, "wp run", f.wpRun(m.Subject, m.Body))
	}
	if wp, libs := f.reduces(); wp != 1 || libs != 0 {
		t.Errorf("reduces: wp %d, libraries %d; want 1 and 0", wp, libs)
	}
	// The listing with the Python library fails on a table holding wp jobs;
	// the list of ids names wp's shard and group items too.
	if r := f.py("ls"); r.code == 0 || (r.errorName() != "TypeError" && r.errorName() != "KeyError") {
		t.Errorf("Python list_jobs on a table with a wp job: %s, want a TypeError or KeyError", r.out)
	}
	ids := f.py("ls-ids").value(t).([]any)
	if got, want := fmt.Sprint(ids), "[wj wj#g00000 wj#s00000]"; got != want {
		t.Errorf("Python list_jobs(status=False) = %s, want %s", got, want)
	}
	// Failing a wp job from an old library is seen by wp.
	f.wpCreate("wj2", 2)
	mustOK(t, "Node failJob", f.node("fail", "wj2", "boom"))
	if info := f.info("wj2"); info["state"] != "failed" || info["error"] != "boom" {
		t.Errorf("wp info of a wp job failed by the Node library: %v", info)
	}
	f.wpCreate("wj3", 2)
	mustOK(t, "Python fail_job", f.py("fail", "wj3", "bad input"))
	if info := f.info("wj3"); info["state"] != "failed" || info["error"] != "bad input" {
		t.Errorf("wp info of a wp job failed by the Python library: %v", info)
	}
}

// TestFleet_LegacyCallsBesideWPJobs: the libraries' calls on their own jobs
// keep working in a table that holds wp jobs, and wp lists all of them.
func TestFleet_LegacyCallsBesideWPJobs(t *testing.T) {
	f := newFleet(t)
	f.wpCreate("wj", 3)
	mustOK(t, "create_job", f.py("create", "pj", "3"))
	mustOK(t, "setTotal", f.node("settotal", "nj", "3"))
	mustOK(t, "Python Part", f.py("part", "pj", "0"))
	// wp lists the jobs while nj's part 3 is pending, which tells its
	// numbering; wp records it, so it survives the Node library's
	// completion of part 3.
	mustOK(t, "wp ls", f.wp("", nil, "ls"))
	mustOK(t, "Node completePart", f.node("complete", "nj", "3"))
	if st := f.py("status", "pj").value(t).(map[string]any); fmt.Sprint(st["progress"]) != "0.3333333333333333" {
		t.Errorf("Python status of its job = %v", st)
	}
	if p := f.py("pending", "pj").value(t); fmt.Sprint(p) != "[1 2]" {
		t.Errorf("Python list_pending_parts = %v, want [1 2]", p)
	}
	if st := f.node("status", "nj").value(t).(map[string]any); fmt.Sprint(st["progress"]) != "0.33" {
		t.Errorf("Node status of its job = %v", st)
	}
	r := f.wp("", nil, "ls", "--json")
	mustOK(t, "wp ls", r)
	got := map[string]string{}
	for _, j := range r.value(t).([]any) {
		m := j.(map[string]any)
		got[m["jobid"].(string)] = fmt.Sprintf("first %v remaining %v", m["first_part"], m["remaining"])
	}
	want := map[string]string{"wj": "first 0 remaining 3", "pj": "first 0 remaining 2", "nj": "first 1 remaining 2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("wp ls = %v, want %v", got, want)
	}
	for id, want := range map[string]string{"nj": "[1,2]", "pj": "[1,2]", "wj": "[0,1,2]"} {
		r = f.wp("", nil, "pending", id, "--array")
		if r.code != 0 || r.out != want {
			t.Errorf("wp pending %s = %q (exit %d), want %s", id, r.out, r.code, want)
		}
	}
}

// delivery is one copy of a map message on the simulated queue.
type delivery struct {
	job, body string
	part      int
	tries     int
}

// worker handles one delivery on one side and says whether the message is
// gone from the queue (exit 0, or wp's exit 3) or comes back.
type worker func(f *fleet, d delivery) (gone bool)

func wpWorker(f *fleet, d delivery) bool {
	r := f.wpRun("map", d.body)
	return r.code == 0 || r.code == 3
}

// wpNodeWorker is wp run on a fleet whose messages have the Node
// examples' shape.
func wpNodeWorker(f *fleet, d delivery) bool {
	r := f.wpRunNode(d.body)
	return r.code == 0 || r.code == 3
}

func pyWorker(f *fleet, d delivery) bool { return f.py("part", d.job, fmt.Sprint(d.part)).code == 0 }

func nodeWorker(f *fleet, d delivery) bool {
	return f.node("part", d.job, fmt.Sprint(d.part), "helper").code == 0
}

// deliverTwice puts every message on the queue twice and has `procs`
// concurrent consumers take them, each delivery going to a random side;
// a delivery whose worker failed goes back on the queue, as SQS does, up to
// 30 times.
func (f *fleet) deliverTwice(ds []delivery, sides []worker, procs int, seed int64) {
	f.t.Helper()
	rnd := rand.New(rand.NewSource(seed))
	var mu sync.Mutex
	queue := append(append([]delivery(nil), ds...), ds...)
	rnd.Shuffle(len(queue), func(i, j int) { queue[i], queue[j] = queue[j], queue[i] })
	pending := len(queue)
	var failed []string
	var wg sync.WaitGroup
	for w := 0; w < procs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if pending == 0 || len(failed) > 0 {
					mu.Unlock()
					return
				}
				if len(queue) == 0 {
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // a failed delivery is on its way back
					continue
				}
				d := queue[0]
				queue = queue[1:]
				side := sides[rnd.Intn(len(sides))]
				mu.Unlock()
				gone := side(f, d)
				mu.Lock()
				switch {
				case gone:
					pending--
				case d.tries == 30:
					failed = append(failed, d.body)
				default:
					d.tries++
					queue = append(queue, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		f.t.Fatalf("messages still failing after 30 deliveries: %v", failed)
	}
}

// TestFleet_MixedDuplicates: one job at a time, completed from both sides
// at once, every message delivered twice.
//
// What is correct: the Python library's reduce guard reads its flag, sends,
// then sets the flag, so two Python workers (or a Python worker and wp)
// can both send inside that window; the Node helper's guard is the same.
// wp's claim is atomic among wp workers and honours either library's flag
// once set, so wp's side sends at most one reduce, and none when a
// library's flag was set before its claim. On a wp job the old workers
// fail and wp sends exactly one.
func TestFleet_MixedDuplicates(t *testing.T) {
	const n = 8
	t.Run("python-job", func(t *testing.T) {
		f := newFleet(t)
		mustOK(t, "create_job", f.py("create", "pj", fmt.Sprint(n)))
		var ds []delivery
		for _, m := range f.libSNS.Messages() {
			var b struct{ Partid int }
			json.Unmarshal([]byte(m.Body), &b)
			ds = append(ds, delivery{job: "pj", body: m.Body, part: b.Partid})
		}
		f.deliverTwice(ds, []worker{wpWorker, pyWorker}, 4, 1)
		wp, libs := f.reduces()
		t.Logf("reduces: wp %d, Python %d", wp, libs)
		if wp > 1 || wp+libs < 1 {
			t.Errorf("reduces: wp %d, Python %d; want wp at most 1 and at least 1 in all", wp, libs)
		}
		// Every message once more on each side: nobody sends again.
		for _, d := range ds {
			mustOK(t, "wp run", f.wpRun("map", d.body))
			mustOK(t, "Python Part", f.py("part", "pj", fmt.Sprint(d.part)))
		}
		if wp2, libs2 := f.reduces(); wp2 != wp || libs2 != libs {
			t.Errorf("late duplicates sent reduces: wp %d -> %d, Python %d -> %d", wp, wp2, libs, libs2)
		}
	})
	t.Run("node-job", func(t *testing.T) {
		f := newFleet(t)
		mustOK(t, "setTotal", f.node("settotal", "nj", fmt.Sprint(n)))
		var ds []delivery
		for p := 1; p <= n; p++ {
			ds = append(ds, delivery{job: "nj", body: nodeMsg("nj", p), part: p})
		}
		f.deliverTwice(ds, []worker{wpNodeWorker, nodeWorker}, 4, 2)
		wp, libs := f.reduces()
		t.Logf("reduces: wp %d, Node %d", wp, libs)
		if wp > 1 || wp+libs < 1 {
			t.Errorf("reduces: wp %d, Node %d; want wp at most 1 and at least 1 in all", wp, libs)
		}
		for _, d := range ds {
			mustOK(t, "wp run", f.wpRunNode(d.body))
			mustOK(t, "Node worker", f.node("part", "nj", fmt.Sprint(d.part), "helper"))
		}
		if wp2, libs2 := f.reduces(); wp2 != wp || libs2 != libs {
			t.Errorf("late duplicates sent reduces: wp %d -> %d, Node %d -> %d", wp, wp2, libs, libs2)
		}
	})
	t.Run("wp-job", func(t *testing.T) {
		f := newFleet(t)
		var ds []delivery
		for _, m := range f.wpCreate("wj", n) {
			var b struct{ Partid int }
			json.Unmarshal([]byte(m.Body), &b)
			ds = append(ds, delivery{job: "wj", body: m.Body, part: b.Partid})
		}
		f.deliverTwice(ds, []worker{wpWorker, pyWorker, nodeWorker}, 4, 3)
		if wp, libs := f.reduces(); wp != 1 || libs != 0 {
			t.Errorf("reduces: wp %d, libraries %d; want exactly 1 from wp", wp, libs)
		}
		if info := f.info("wj"); info["remaining"] != 0.0 || info["reduce_sent"] != true {
			t.Errorf("wp info = %v, want done and reduced", info)
		}
	})
}
