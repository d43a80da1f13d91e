package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// batchFixture is job "j" of total parts created with batches of k, and
// the batch messages wp create would publish for it.
func batchFixture(t *testing.T, total int64, k int, tol string, opt Options) (*fixture, []Delivery) {
	t.Helper()
	f := newFixture(t, 1, opt)
	tl, err := backends.ParseTolerance(tol)
	if err != nil {
		t.Fatal(err)
	}
	f.store.Delete(context.Background(), "j")
	if err := f.store.CreateJob(context.Background(), backends.Job{ID: "j", Total: total, Tolerance: tl, Batch: k}); err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	for from := int64(0); from < total; from += int64(k) {
		var bodies []string
		for p := from; p < min(from+int64(k), total); p++ {
			bodies = append(bodies, string(MapBody(nil, "j", p, []byte(fmt.Sprintf(`{"n": %d, "url": "s3://x/%d"}`, p, p)))))
		}
		ds = append(ds, Delivery{Message: BatchBody("j", bodies), Subject: SubjectMap, ReceiveCount: 1})
	}
	return f, ds
}

// TestBatchBody_RoundTrip: a batch message gives each part back the very
// message it would have had alone, and BatchSize is its length.
func TestBatchBody_RoundTrip(t *testing.T) {
	var bodies []string
	for p := int64(40); p < 43; p++ {
		bodies = append(bodies, string(MapBody(nil, "job-1", p, []byte(fmt.Sprintf(`{ "n": 1.50, "s": "é\"q", "p": %d }`, p)))))
	}
	b := BatchBody("job-1", bodies)
	if got, want := len(b), BatchSize("job-1", bodies); got != want {
		t.Errorf("len(BatchBody) = %d, BatchSize = %d", got, want)
	}
	if !json.Valid([]byte(b)) {
		t.Fatalf("batch body is not JSON: %s", b)
	}
	m, err := ParseDelivery(Delivery{Message: b, Subject: SubjectMap}, DefaultFields)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Batch) != 3 || m.Part != 40 {
		t.Fatalf("parsed %d parts from %d, want 3 from 40", len(m.Batch), m.Part)
	}
	for i, p := range m.Batch {
		if p.Body != bodies[i] || p.Part != int64(40+i) {
			t.Errorf("part %d: body %q, want %q", p.Part, p.Body, bodies[i])
		}
	}
	// With no Subject, a batch is a map message too.
	if m, err := ParseDelivery(Delivery{Message: b}, DefaultFields); err != nil || m.Subject != SubjectMap {
		t.Errorf("a batch without a Subject: %v, %v; want a map message", m.Subject, err)
	}
}

// TestParseDelivery_BadBatch: a batch message that can never succeed is a
// PoisonError naming what is wrong.
func TestParseDelivery_BadBatch(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{`{"jobid":"j","batch":[]}`, "no parts"},
		{`{"jobid":"j","batch":{"partid":1}}`, "not an array"},
		{`{"jobid":"j","batch":[{"partid":1},{"partid":3}]}`, "not consecutive (part 3 after part 1)"},
		{`{"jobid":"j","batch":[{"partid":2},{"partid":1}]}`, "not consecutive"},
		{`{"jobid":"j","batch":[{"partid":1},{"partid":2,"jobid":"other"}]}`, `element 1 names another job ("other")`},
		{`{"jobid":"j","batch":[{"url":"x"}]}`, "element 0 has no partid"},
		{`{"jobid":"j","batch":[{"partid":-1}]}`, "negative"},
		{`{"jobid":"j","batch":["x"]}`, "element 0 is not a JSON object"},
		{`{"jobid":"j","partid":1,"batch":[{"partid":1}]}`, "partid of its own"},
	} {
		_, err := ParseDelivery(Delivery{Message: c.msg, Subject: SubjectMap}, DefaultFields)
		var pe *PoisonError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseDelivery(%s) = %v, want a PoisonError saying %q", c.msg, err, c.want)
		}
	}
}

// TestBatch_AllSucceed: every part runs once with the environment of its
// own map message, in order; all are recorded in one CompleteParts; the
// batch that ends the job sends the one reduce.
func TestBatch_AllSucceed(t *testing.T) {
	f, ds := batchFixture(t, 5, 3, "0", Options{})
	out := filepath.Join(t.TempDir(), "out")
	cmd := f.cmd(`echo "$WP_PART_ID $WP_PART_N $WP_PART_URL $Message" >> ` + out)
	res := f.r.Handle(context.Background(), ds[0], cmd, nil)
	check(t, res, Completed)
	if got := f.mem.Calls("CompleteParts"); got != 1 {
		t.Errorf("%d CompleteParts calls for a batch of 3, want 1", got)
	}
	check(t, f.r.Handle(context.Background(), ds[1], cmd, nil), Finished)
	if got, want := f.pub.reduces(), 1; got != want {
		t.Errorf("%d reduces, want %d", got, want)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 {
		t.Fatalf("the command ran %d times, want 5:\n%s", len(lines), b)
	}
	for i, l := range lines {
		want := fmt.Sprintf(`%d %d s3://x/%d {"jobid":"j","partid":%d,"n": %d, "url": "s3://x/%d"}`, i, i, i, i, i, i)
		if l != want {
			t.Errorf("run %d: %q, want %q", i, l, want)
		}
	}
	if len(res.Parts) != 3 || res.Parts[2].Outcome != Completed {
		t.Errorf("Parts = %+v, want 3 completed", res.Parts)
	}
}

// TestBatch_ThirdFailsTwice: the third part fails on two receives, then
// succeeds: the other parts ran once (their completion was recorded on the
// first receive, and a later receive runs only what is pending), the
// message was retried twice, and the job reduces once.
func TestBatch_ThirdFailsTwice(t *testing.T) {
	f, ds := batchFixture(t, 4, 4, "0", Options{})
	runs := filepath.Join(t.TempDir(), "runs")
	cmd := f.cmd(`echo "$WP_PART_ID" >> ` + runs + `; [ "$WP_PART_ID" = 2 ] && [ "$ApproximateReceiveCount" -lt 3 ] && exit 7; exit 0`)
	for receive := 1; receive <= 3; receive++ {
		d := ds[0]
		d.ReceiveCount = receive
		cmd.Env = append(os.Environ(), fmt.Sprintf("ApproximateReceiveCount=%d", receive))
		res := f.r.Handle(context.Background(), d, cmd, nil)
		want := CommandFailed
		if receive == 3 {
			want = Finished
		}
		check(t, res, want)
		if receive < 3 && res.Status != 7 {
			t.Errorf("receive %d: Status %d, want the failing part's 7", receive, res.Status)
		}
	}
	b, _ := os.ReadFile(runs)
	if got, want := strings.Fields(string(b)), []string{"0", "1", "2", "3", "2", "2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parts run: %v, want %v", got, want)
	}
	if s := f.status(); s.Remaining != 0 || f.pub.reduces() != 1 {
		t.Errorf("Remaining %d, %d reduces; want 0 and 1", s.Remaining, f.pub.reduces())
	}
}

// TestBatch_LastReceiveGivesUp: on the last delivery, each part still
// failing is given up on its own, with its own stderr; the others are
// completed; within the tolerance the job reduces.
func TestBatch_LastReceiveGivesUp(t *testing.T) {
	f, ds := batchFixture(t, 4, 4, "2", Options{})
	d := ds[0]
	d.ReceiveCount, d.Last = 5, true
	res := f.r.Handle(context.Background(), d, f.cmd(`echo "boom $WP_PART_ID" >&2; [ "$WP_PART_ID" = 1 ] && exit 3; [ "$WP_PART_ID" = 3 ] && exit 4; exit 0`), nil)
	check(t, res, GaveUp)
	if res.Status != 3 {
		t.Errorf("Status %d, want the first failing part's 3", res.Status)
	}
	g := givenUp(t, f)
	if len(g) != 2 || g[0].Part != 1 || g[0].ExitCode != 3 || g[1].Part != 3 || g[1].ExitCode != 4 ||
		!strings.Contains(g[0].Stderr, "boom 1") || strings.Contains(g[0].Stderr, "boom 0") || g[0].ReceiveCount != 5 {
		t.Errorf("given up = %+v, want parts 1 (exit 3) and 3 (exit 4), each with its own stderr", g)
	}
	if s := f.status(); s.Remaining != 0 || s.GivenUp != 2 || f.pub.reduces() != 1 {
		t.Errorf("Remaining %d GivenUp %d reduces %d; want 0, 2, 1", s.Remaining, s.GivenUp, f.pub.reduces())
	}
}

// TestBatch_FailJob: a fail-job code fails the job; the parts after it
// do not run; nothing of the batch is recorded complete but the parts
// before it.
func TestBatch_FailJob(t *testing.T) {
	f, ds := batchFixture(t, 4, 4, "0", Options{FailJobOn: CodeSet{9: true}})
	runs := filepath.Join(t.TempDir(), "runs")
	res := f.r.Handle(context.Background(), ds[0], f.cmd(`echo "$WP_PART_ID" >> `+runs+`; [ "$WP_PART_ID" = 1 ] && exit 9; exit 0`), nil)
	check(t, res, FailedJob)
	if !res.JobFailed || res.Status != 9 {
		t.Errorf("JobFailed %v Status %d; want true, 9", res.JobFailed, res.Status)
	}
	if b, _ := os.ReadFile(runs); strings.TrimSpace(string(b)) != "0\n1" {
		t.Errorf("parts run: %q, want 0 and 1", b)
	}
	if s := f.status(); !s.Failed {
		t.Error("the job did not fail")
	}
}

// TestBatch_Signal: a signal stops the batch: the part it interrupted
// records nothing, later parts do not start, the parts before it are
// recorded.
func TestBatch_Signal(t *testing.T) {
	f, ds := batchFixture(t, 4, 4, "0", Options{})
	mark, sigs := signalWhenUp(t, syscall.SIGTERM)
	runs := filepath.Join(t.TempDir(), "runs")
	res := f.r.Handle(context.Background(), ds[0], f.cmd(`echo "$WP_PART_ID" >> `+runs+`; [ "$WP_PART_ID" = 2 ] && { trap 'exit 0' TERM; touch `+mark+`; while :; do sleep 0.05; done; }; exit 0`), sigs)
	check(t, res, Interrupted)
	if b, _ := os.ReadFile(runs); strings.TrimSpace(string(b)) != "0\n1\n2" {
		t.Errorf("parts run: %q, want 0, 1 and 2", b)
	}
	var pending []int64
	f.store.Pending(context.Background(), "j", func(p int64) error { pending = append(pending, p); return nil })
	if fmt.Sprint(pending) != "[2 3]" {
		t.Errorf("pending = %v, want [2 3]", pending)
	}
}

// TestBatch_Refused: a batch message of a job created without batches,
// or naming parts outside the job, is dropped without running anything.
func TestBatch_Refused(t *testing.T) {
	f := newFixture(t, 5, Options{}) // job j without batches
	b := BatchBody("j", []string{string(MapBody(nil, "j", 0, []byte(`{}`))), string(MapBody(nil, "j", 1, []byte(`{}`)))})
	res := f.r.Handle(context.Background(), Delivery{Message: b, Subject: SubjectMap}, f.cmd("exit 0"), nil)
	check(t, res, Dropped)
	if f.didRun() || !strings.Contains(res.Err.Error(), "created without batches") {
		t.Errorf("ran %v, err %v; want not run and the reason", f.didRun(), res.Err)
	}
	g, _ := batchFixture(t, 3, 2, "0", Options{})
	b = BatchBody("j", []string{string(MapBody(nil, "j", 2, []byte(`{}`))), string(MapBody(nil, "j", 3, []byte(`{}`)))})
	check(t, g.r.Handle(context.Background(), Delivery{Message: b, Subject: SubjectMap}, g.cmd("exit 0"), nil), Dropped)
	if g.didRun() {
		t.Error("a batch naming a part outside the job ran")
	}
}

// TestBatch_Jobs: with Jobs, the parts run side by side.
func TestBatch_Jobs(t *testing.T) {
	f, ds := batchFixture(t, 4, 4, "0", Options{Jobs: 4})
	dir := t.TempDir()
	// Each part waits until all four have started: only side by side can
	// they all finish.
	cmd := f.cmd(fmt.Sprintf(`touch %s/$WP_PART_ID; i=0; while [ $(ls %s | wc -l) -lt 4 ]; do sleep 0.02; i=$((i+1)); [ $i -gt 500 ] && exit 5; done; exit 0`, dir, dir))
	check(t, f.r.Handle(context.Background(), ds[0], cmd, nil), Finished)
}

// TestBatch_StormOneFinisher: every batch delivered twice, concurrently:
// one reduce.
func TestBatch_StormOneFinisher(t *testing.T) {
	f, ds := batchFixture(t, 64, 8, "0", Options{ClaimWait: time.Second})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for _, d := range append(ds, ds...) {
		wg.Add(1)
		go func(d Delivery) {
			defer wg.Done()
			res := f.r.Handle(context.Background(), d, f.cmd("exit 0"), nil)
			if res.Outcome != Completed && res.Outcome != Finished && res.Outcome != AlreadyDone {
				bad.Add(1)
			}
		}(d)
	}
	wg.Wait()
	if bad.Load() != 0 || f.pub.reduces() != 1 || f.status().Remaining != 0 {
		t.Errorf("%d bad outcomes, %d reduces, %d remaining; want 0, 1, 0", bad.Load(), f.pub.reduces(), f.status().Remaining)
	}
}

// TestPersist_Throttled: a completion the store refuses for throughput is
// tried again until it is taken; past ThrottleWait the delivery gives up.
func TestPersist_Throttled(t *testing.T) {
	f := newFixture(t, 2, Options{ThrottleWait: 10 * time.Second})
	var n atomic.Int64
	f.mem.BeforeComplete(func() {
		if n.Add(1) <= 3 {
			f.mem.FailOn("Complete", fmt.Errorf("slow down: %w", backends.ErrThrottled))
		} else {
			f.mem.FailOn("Complete", nil)
		}
	})
	check(t, f.r.Handle(context.Background(), mapMsg(0), f.cmd("exit 0"), nil), Completed)
	if got := f.mem.Calls("Complete"); got != 4 {
		t.Errorf("%d Complete calls, want 4 (3 throttled)", got)
	}

	g := newFixture(t, 2, Options{ThrottleWait: 200 * time.Millisecond})
	g.mem.FailOn("Complete", backends.ErrThrottled)
	res := g.r.Handle(context.Background(), mapMsg(0), g.cmd("exit 0"), nil)
	check(t, res, Unavailable)
	if calls := g.mem.Calls("Complete"); calls < 2 {
		t.Errorf("%d Complete calls in 200ms of throttling, want it tried again", calls)
	}
	// Another error is not retried.
	h := newFixture(t, 2, Options{ThrottleWait: 10 * time.Second})
	h.mem.FailOn("Complete", errors.New("connection refused"))
	check(t, h.r.Handle(context.Background(), mapMsg(0), h.cmd("exit 0"), nil), Unavailable)
	if calls := h.mem.Calls("Complete"); calls != 1 {
		t.Errorf("%d Complete calls for a refused connection, want 1", calls)
	}
}

// TestGiveUpPart: the dead-letter sweep's give-up ends the job as a
// command's give-up does, once.
func TestGiveUpPart(t *testing.T) {
	f := newToleratingFixture(t, 2, "1", false, Options{})
	f.complete(0)
	job := f.status()
	res := f.r.GiveUpPart(context.Background(), job, 1, backends.GiveUpInfo{ReceiveCount: 11, Reason: "dead-lettered"})
	check(t, res, GaveUp)
	if f.pub.reduces() != 1 {
		t.Errorf("%d reduces, want 1", f.pub.reduces())
	}
	res = f.r.GiveUpPart(context.Background(), job, 1, backends.GiveUpInfo{Reason: "dead-lettered"})
	check(t, res, GaveUp)
	if !res.Duplicate || f.pub.reduces() != 1 {
		t.Errorf("again: Duplicate %v, %d reduces; want true and still 1", res.Duplicate, f.pub.reduces())
	}
	g := givenUp(t, f)
	sort.Slice(g, func(a, b int) bool { return g[a].Part < g[b].Part })
	if len(g) != 1 || g[0].Reason != "dead-lettered" || g[0].ReceiveCount != 11 {
		t.Errorf("given up = %+v", g)
	}
}

// TestPacker: batches hold consecutive parts only, at most Parts and Bytes,
// never across a shard; a lone part is a plain message; every part is in
// exactly one message, in order.
func TestPacker(t *testing.T) {
	parts := []int64{0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 15, 16, 17}
	i := 0
	next := func() (int64, string, bool, error) {
		if i == len(parts) {
			return 0, "", false, nil
		}
		i++
		p := parts[i-1]
		return p, string(MapBody(nil, "j", p, []byte(`{"x":"abcdefghij"}`))), true, nil
	}
	one := string(MapBody(nil, "j", 0, []byte(`{"x":"abcdefghij"}`)))
	pk := Packer{JobID: "j", Parts: 4, Shard: 8, Bytes: BatchSize("j", []string{one, one, one}) + 2}
	pack := pk.Pack(next)
	var got []string
	for {
		msg, ps, ok, err := pack()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if len(msg) > pk.Bytes {
			t.Errorf("message of %d bytes, over %d", len(msg), pk.Bytes)
		}
		m, err := ParseDelivery(Delivery{Message: msg, Subject: SubjectMap}, DefaultFields)
		if err != nil {
			t.Fatalf("packed message %s: %v", msg, err)
		}
		if fmt.Sprint(m.Parts()) != fmt.Sprint(ps) {
			t.Errorf("message holds %v, Pack says %v", m.Parts(), ps)
		}
		if len(ps) == 1 && m.Batch != nil {
			t.Errorf("a lone part %v went as a batch", ps)
		}
		got = append(got, fmt.Sprint(ps))
	}
	// Bytes allow 3 a message; shard 8 splits 6|9 anyway, 15|16.
	want := []string{"[0 1 2]", "[3 4 5]", "[6]", "[9 10 11]", "[15]", "[16 17]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
}
