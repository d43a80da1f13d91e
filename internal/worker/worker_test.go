package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/child"
)

// memPub records what the engine publishes; err, when set, fails every
// publish.
type memPub struct {
	mu   sync.Mutex
	sent []string
	err  error
}

func (p *memPub) Publish(_ context.Context, subject, body string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.sent = append(p.sent, subject+" "+body)
	return nil
}

func (p *memPub) reduces() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sent {
		if strings.HasPrefix(s, "reduce ") {
			n++
		}
	}
	return n
}

// fixture is a store holding job "j" of total parts, a publisher, and a
// runner over them.
type fixture struct {
	t     *testing.T
	mem   *memStore
	store *backends.Store
	pub   *memPub
	r     *Runner
	// ran is a file the command touches, so a test can tell it ran.
	ran string
}

func newFixture(t *testing.T, total int64, opt Options) *fixture {
	t.Helper()
	mem := newMemStore()
	st := backends.New(mem, time.Minute)
	if err := st.CreateJob(context.Background(), backends.Job{ID: "j", Total: total, Metadata: []byte(`{"k":"v"}`)}); err != nil {
		t.Fatal(err)
	}
	if opt.ReduceLease == 0 {
		opt.ReduceLease = time.Minute
	}
	if opt.Grace == 0 {
		opt.Grace = 2 * time.Second
	}
	pub := &memPub{}
	return &fixture{t: t, mem: mem, store: st, pub: pub, r: New(st, pub, opt), ran: filepath.Join(t.TempDir(), "ran")}
}

// cmd is a command that records that it ran, then runs script.
func (f *fixture) cmd(script string) child.Spec {
	return child.Spec{Argv: []string{"sh", "-c", "touch " + f.ran + "; " + script}, Env: os.Environ()}
}

func (f *fixture) didRun() bool {
	_, err := os.Stat(f.ran)
	os.Remove(f.ran)
	return err == nil
}

func (f *fixture) status() backends.Status {
	f.t.Helper()
	s, err := f.store.Status(context.Background(), "j")
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) complete(parts ...int64) {
	f.t.Helper()
	for _, p := range parts {
		if _, err := f.store.Complete(context.Background(), "j", p); err != nil {
			f.t.Fatal(err)
		}
	}
}

func mapMsg(part int64) Delivery {
	return Delivery{Message: fmt.Sprintf(`{"jobid":"j","partid":%d,"url":"s3://x"}`, part), Subject: SubjectMap}
}

func check(t *testing.T, res Result, want Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("Outcome = %v (err %v), want %v", res.Outcome, res.Err, want)
	}
}

func TestHandle_Outcomes(t *testing.T) {
	ctx := context.Background()
	t.Run("Completed", func(t *testing.T) {
		f := newFixture(t, 3, Options{})
		res := f.r.Handle(ctx, mapMsg(1), f.cmd("exit 0"), nil)
		check(t, res, Completed)
		if !res.Ran || !res.Recorded || !f.didRun() {
			t.Errorf("Ran, Recorded = %v, %v; want both, and the command run", res.Ran, res.Recorded)
		}
		if got, want := f.status().Remaining, int64(2); got != want {
			t.Errorf("Remaining = %d, want %d", got, want)
		}
		if f.pub.reduces() != 0 {
			t.Error("a reduce was published for a job not done")
		}
	})
	t.Run("Completed_Duplicate", func(t *testing.T) {
		f := newFixture(t, 3, Options{})
		f.complete(1)
		check(t, f.r.Handle(ctx, mapMsg(1), f.cmd("exit 0"), nil), Completed)
		if got, want := f.status().Remaining, int64(2); got != want {
			t.Errorf("Remaining = %d, want %d", got, want)
		}
	})
	t.Run("Finished", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.complete(0)
		res := f.r.Handle(ctx, mapMsg(1), f.cmd("exit 0"), nil)
		check(t, res, Finished)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Fatalf("%d reduces published, want %d", got, want)
		}
		if got, want := f.pub.sent[0], `reduce {"jobid":"j","metadata":{"k":"v"}}`; got != want {
			t.Errorf("published %q, want %q", got, want)
		}
		if !f.status().ReduceSent {
			t.Error("reduce not recorded as sent")
		}
	})
	t.Run("AlreadyDone_SendsMissingReduce", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.complete(0, 1)
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, AlreadyDone)
		if res.Ran || f.didRun() {
			t.Error("the command ran for a job whose parts are all complete")
		}
		if got, want := f.pub.reduces(), 1; got != want {
			t.Errorf("%d reduces published, want %d", got, want)
		}
	})
	t.Run("Skipped_JobFailed", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		if err := f.store.Fail(ctx, "j", "broken"); err != nil {
			t.Fatal(err)
		}
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Skipped)
		if res.Ran || f.didRun() {
			t.Error("the command ran for a failed job")
		}
	})
	t.Run("Skipped_JobFailedWhileRunning", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.mem.beforeComplete = func() { f.store.Fail(ctx, "j", "meanwhile") }
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Skipped)
		if !res.Ran || res.Recorded {
			t.Errorf("Ran, Recorded = %v, %v; want true, false", res.Ran, res.Recorded)
		}
		if got, want := f.status().Remaining, int64(2); got != want {
			t.Errorf("Remaining = %d, want %d (nothing recorded)", got, want)
		}
	})
	t.Run("FailedJob", func(t *testing.T) {
		f := newFixture(t, 2, Options{FailJobOn: CodeSet{3: true}})
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 3"), nil)
		check(t, res, FailedJob)
		if res.Status != 3 {
			t.Errorf("Status = %d, want 3", res.Status)
		}
		if s := f.status(); !s.Failed || s.Error != "part 0 exited with code 3" {
			t.Errorf("job = failed %v %q, want failed with the part's code", s.Failed, s.Error)
		}
	})
	t.Run("CommandFailed", func(t *testing.T) {
		f := newFixture(t, 2, Options{FailJobOn: CodeSet{3: true}})
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 5"), nil)
		check(t, res, CommandFailed)
		if res.Status != 5 || res.Recorded {
			t.Errorf("Status, Recorded = %d, %v; want 5, false", res.Status, res.Recorded)
		}
		if s := f.status(); s.Failed || s.Remaining != 2 {
			t.Errorf("job = %+v, want untouched", s)
		}
	})
	t.Run("CannotStart", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		res := f.r.Handle(ctx, mapMsg(0), child.Spec{Argv: []string{"no-such-command-wp-test"}}, nil)
		check(t, res, CannotStart)
		if !res.NotFound || res.Err == nil {
			t.Errorf("NotFound, Err = %v, %v; want true and an error", res.NotFound, res.Err)
		}
	})
	t.Run("Interrupted", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		sigs := make(chan os.Signal, 1)
		mark := filepath.Join(t.TempDir(), "up")
		go func() {
			for {
				if _, err := os.Stat(mark); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			sigs <- syscall.SIGTERM
		}()
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("trap 'exit 0' TERM; touch "+mark+"; while :; do sleep 0.05; done"), sigs)
		check(t, res, Interrupted)
		if res.Signal != syscall.SIGTERM || res.Status != 0 || res.Recorded {
			t.Errorf("Signal, Status, Recorded = %v, %d, %v; want SIGTERM, 0, false", res.Signal, res.Status, res.Recorded)
		}
		if got, want := f.status().Remaining, int64(2); got != want {
			t.Errorf("Remaining = %d, want %d (an interrupted part records nothing, even after exit 0)", got, want)
		}
	})
	t.Run("Dropped", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		for name, d := range map[string]Delivery{
			"not json":     {Message: "nope", Subject: SubjectMap},
			"no such job":  {Message: `{"jobid":"other","partid":0}`, Subject: SubjectMap},
			"out of range": {Message: `{"jobid":"j","partid":2}`, Subject: SubjectMap},
			"bad subject":  {Message: `{"jobid":"j","partid":0}`, Subject: "mapp"},
		} {
			res := f.r.Handle(ctx, d, f.cmd("exit 0"), nil)
			if res.Outcome != Dropped || res.Err == nil {
				t.Errorf("%s: Outcome, Err = %v, %v; want dropped with an error", name, res.Outcome, res.Err)
			}
			if f.didRun() {
				t.Errorf("%s: the command ran", name)
			}
		}
	})
	t.Run("Unavailable_BeforeRun", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.mem.setFail("Peek", errors.New("connection refused"))
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Unavailable)
		if res.Ran || f.didRun() {
			t.Error("the command ran although the job could not be read")
		}
	})
	t.Run("Unavailable_AfterRun", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.mem.setFail("Complete", errors.New("connection reset"))
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Unavailable)
		if !res.Ran || res.Recorded {
			t.Errorf("Ran, Recorded = %v, %v; want true, false", res.Ran, res.Recorded)
		}
	})
	t.Run("Unavailable_FailJobNotRecorded", func(t *testing.T) {
		f := newFixture(t, 2, Options{FailJobOn: CodeSet{3: true}})
		f.mem.setFail("Fail", errors.New("connection reset"))
		check(t, f.r.Handle(ctx, mapMsg(0), f.cmd("exit 3"), nil), Unavailable)
	})
	t.Run("Reduced", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		env := filepath.Join(t.TempDir(), "env")
		res := f.r.Handle(ctx, Delivery{Message: `{"jobid":"j","metadata":{"k":"v"}}`, Subject: SubjectReduce}, f.cmd("env > "+env), nil)
		check(t, res, Reduced)
		if !f.status().Reduced {
			t.Error("job not recorded as reduced")
		}
		b, _ := os.ReadFile(env)
		if !strings.Contains(string(b), "WP_SUBJECT=reduce\n") || !strings.Contains(string(b), `WP_METADATA={"k":"v"}`) {
			t.Errorf("reduce environment lacks WP_SUBJECT or WP_METADATA:\n%s", b)
		}
	})
	t.Run("Reduce_Skipped", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.store.MarkReduced(ctx, "j")
		res := f.r.Handle(ctx, Delivery{Message: `{"jobid":"j"}`, Subject: SubjectReduce}, f.cmd("exit 0"), nil)
		check(t, res, Skipped)
		if f.didRun() {
			t.Error("a duplicate reduce ran")
		}
	})
	t.Run("Reduce_CommandFailed", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		check(t, f.r.Handle(ctx, Delivery{Message: `{"jobid":"j"}`, Subject: SubjectReduce}, f.cmd("exit 9"), nil), CommandFailed)
		if f.status().Reduced {
			t.Error("a failed reduce recorded the job as reduced")
		}
	})
}

// TestEnsureReduce covers each branch of the reduce claim protocol.
func TestEnsureReduce(t *testing.T) {
	ctx := context.Background()
	lg := newFixture(t, 1, Options{}).r.opt.Log
	t.Run("ClaimWonAndSent", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Completed)
		if f.pub.reduces() != 1 || !f.status().ReduceSent {
			t.Errorf("reduces %d, ReduceSent %v; want 1, true", f.pub.reduces(), f.status().ReduceSent)
		}
	})
	t.Run("PublishFailed_ClaimReleased", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.pub.err = errors.New("SNS is down")
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Unavailable)
		if f.status().ReduceSent {
			t.Error("reduce recorded as sent although the publish failed")
		}
		// The claim was released: the very next delivery sends it.
		f.pub.err = nil
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Completed)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Errorf("%d reduces published, want %d", got, want)
		}
	})
	t.Run("LiveClaim_WaitedOut", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 300 * time.Millisecond})
		f.complete(0)
		if _, ok, err := f.store.ClaimReduce(ctx, "j", time.Hour); !ok || err != nil {
			t.Fatalf("ClaimReduce: %v, %v", ok, err)
		}
		t0 := time.Now()
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), ClaimHeld)
		if time.Since(t0) < 300*time.Millisecond {
			t.Errorf("gave up after %v, before the claim wait", time.Since(t0))
		}
		if f.pub.reduces() != 0 {
			t.Error("published while another worker held the claim")
		}
	})
	t.Run("LiveClaim_NoWait", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.store.ClaimReduce(ctx, "j", time.Hour)
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Completed)
		if f.pub.reduces() != 0 {
			t.Error("published while another worker held the claim")
		}
	})
	t.Run("LiveClaim_HolderRecordsSent", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 10 * time.Second})
		f.complete(0)
		f.store.ClaimReduce(ctx, "j", time.Hour)
		go func() {
			time.Sleep(200 * time.Millisecond)
			f.store.MarkReduceSent(ctx, "j")
		}()
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Completed)
		if f.pub.reduces() != 0 {
			t.Error("published a second reduce")
		}
	})
	t.Run("ClaimExpired_Resent", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 10 * time.Second})
		f.complete(0)
		f.store.ClaimReduce(ctx, "j", 100*time.Millisecond) // a finisher that died
		time.Sleep(150 * time.Millisecond)
		check(t, f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil), AlreadyDone)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Errorf("%d reduces published, want %d", got, want)
		}
	})
	t.Run("AlreadySent", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 10 * time.Second})
		f.complete(0)
		f.store.MarkReduceSent(ctx, "j")
		check(t, f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil), AlreadyDone)
		if f.pub.reduces() != 0 || f.mem.count("ClaimReduce") != 0 {
			t.Errorf("reduces %d, claims %d; want none", f.pub.reduces(), f.mem.count("ClaimReduce"))
		}
	})
	t.Run("ClaimFails", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.mem.setFail("ClaimReduce", errors.New("timeout"))
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Unavailable)
	})
	t.Run("RecordSentFails", func(t *testing.T) {
		// Published but not recorded: the documented window. The
		// delivery succeeds; the claim stays until its lease runs out.
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.mem.setFail("MarkReduceSent", errors.New("timeout"))
		check(t, f.r.EnsureReduce(ctx, lg, "j", nil, false), Completed)
		if _, ok, _ := f.store.ClaimReduce(ctx, "j", time.Minute); ok {
			t.Error("the claim was released after a published reduce")
		}
	})
}

// TestHandle_Storm: every part delivered twice, concurrently: exactly one
// reduce.
func TestHandle_Storm(t *testing.T) {
	f := newFixture(t, 40, Options{ClaimWait: 5 * time.Second})
	var wg sync.WaitGroup
	for p := int64(0); p < 40; p++ {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := f.r.Handle(context.Background(), mapMsg(p), child.Spec{Argv: []string{"true"}}, nil)
				if res.Outcome != Completed && res.Outcome != Finished && res.Outcome != AlreadyDone {
					t.Errorf("part %d: %v (%v)", p, res.Outcome, res.Err)
				}
			}()
		}
	}
	wg.Wait()
	if got, want := f.pub.reduces(), 1; got != want {
		t.Errorf("%d reduces, want %d", got, want)
	}
}

func TestParseDelivery_Fields(t *testing.T) {
	names := FieldNames{JobID: "id", PartID: "part"}
	m, err := ParseDelivery(Delivery{Message: `{"id":"nj","part":3,"url":"x"}`, Subject: "map"}, names)
	if err != nil || m.JobID != "nj" || m.Part != 3 {
		t.Fatalf("ParseDelivery = %+v, %v; want job nj part 3", m, err)
	}
	_, err = ParseDelivery(Delivery{Message: `{"jobid":"nj","partid":3}`, Subject: "map"}, names)
	var pe *PoisonError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "no id field") {
		t.Errorf("err = %v, want a poison error naming the id field", err)
	}
	env := PartEnv(nil, m, names, nil)
	for _, kv := range env {
		if strings.HasPrefix(kv, "WP_PART_PART=") || strings.HasPrefix(kv, "WP_PART_ID=nj") {
			t.Errorf("the id fields leaked into the part's fields: %q", kv)
		}
	}
}
