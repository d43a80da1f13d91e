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
	"github.com/wp-tools/wp/backends/memstore"
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
	mem   *memstore.Store
	store *backends.Store
	pub   *memPub
	r     *Runner
	// ran is a file the command touches, so a test can tell it ran.
	ran string
}

func newFixture(t *testing.T, total int64, opt Options) *fixture {
	t.Helper()
	mem := memstore.New()
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

// signalWhenUp is a file for a command to create once it is up, and the
// channel that gets sig once it exists: a signal sent to a command that is
// surely running, and has set its traps.
func signalWhenUp(t *testing.T, sig os.Signal) (string, chan os.Signal) {
	t.Helper()
	sigs := make(chan os.Signal, 1)
	mark := filepath.Join(t.TempDir(), "up")
	go func() {
		// Not t.Fatal (not the test's goroutine): after 10 s the
		// signal goes anyway, and the test sees what came of it.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(mark); err == nil {
				break
			}
		}
		sigs <- sig
	}()
	return mark, sigs
}

// waitUntil polls cond until it holds, failing after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
		f.mem.BeforeComplete(func() { f.store.Fail(ctx, "j", "meanwhile") })
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
		mark, sigs := signalWhenUp(t, syscall.SIGTERM)
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
		f.mem.FailOn("Peek", errors.New("connection refused"))
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Unavailable)
		if res.Ran || f.didRun() {
			t.Error("the command ran although the job could not be read")
		}
	})
	t.Run("Unavailable_AfterRun", func(t *testing.T) {
		f := newFixture(t, 2, Options{})
		f.mem.FailOn("Complete", errors.New("connection reset"))
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 0"), nil)
		check(t, res, Unavailable)
		if !res.Ran || res.Recorded {
			t.Errorf("Ran, Recorded = %v, %v; want true, false", res.Ran, res.Recorded)
		}
	})
	t.Run("Unavailable_FailJobNotRecorded", func(t *testing.T) {
		f := newFixture(t, 2, Options{FailJobOn: CodeSet{3: true}})
		f.mem.FailOn("Fail", errors.New("connection reset"))
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
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Completed)
		if f.pub.reduces() != 1 || !f.status().ReduceSent {
			t.Errorf("reduces %d, ReduceSent %v; want 1, true", f.pub.reduces(), f.status().ReduceSent)
		}
	})
	t.Run("PublishFailed_ClaimReleased", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.pub.err = errors.New("SNS is down")
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Unavailable)
		if f.status().ReduceSent {
			t.Error("reduce recorded as sent although the publish failed")
		}
		// The claim was released: the very next delivery sends it.
		f.pub.err = nil
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Completed)
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
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), ClaimHeld)
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
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Completed)
		if f.pub.reduces() != 0 {
			t.Error("published while another worker held the claim")
		}
	})
	t.Run("LiveClaim_HolderRecordsSent", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 10 * time.Second})
		f.complete(0)
		f.store.ClaimReduce(ctx, "j", time.Hour)
		// The holder records the reduce once this worker is waiting on
		// its claim (it has looked at the job after being refused).
		go func() {
			for f.mem.Calls("Peek") == 0 {
				time.Sleep(time.Millisecond)
			}
			f.store.MarkReduceSent(ctx, "j")
		}()
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Completed)
		if f.pub.reduces() != 0 {
			t.Error("published a second reduce")
		}
	})
	t.Run("ClaimExpired_Resent", func(t *testing.T) {
		f := newFixture(t, 1, Options{ClaimWait: 10 * time.Second})
		f.complete(0)
		f.store.ClaimReduce(ctx, "j", 50*time.Millisecond) // a finisher that died
		// Its lease runs out: a claim can be taken again.
		waitUntil(t, "the dead finisher's lease runs out", func() bool {
			tok, ok, err := f.store.ClaimReduce(ctx, "j", time.Millisecond)
			if ok {
				f.store.ReleaseReduce(ctx, "j", tok)
			}
			return ok || err != nil
		})
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
		if f.pub.reduces() != 0 || f.mem.Calls("ClaimReduce") != 0 {
			t.Errorf("reduces %d, claims %d; want none", f.pub.reduces(), f.mem.Calls("ClaimReduce"))
		}
	})
	t.Run("ClaimFails", func(t *testing.T) {
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.mem.FailOn("ClaimReduce", errors.New("timeout"))
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Unavailable)
	})
	t.Run("RecordSentFails", func(t *testing.T) {
		// Published but not recorded: the documented window. The
		// delivery succeeds; the claim stays until its lease runs out.
		f := newFixture(t, 1, Options{})
		f.complete(0)
		f.mem.FailOn("MarkReduceSent", errors.New("timeout"))
		check(t, f.r.EnsureReduce(ctx, lg, backends.Status{ID: "j"}), Completed)
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

// lastReceive is receive n of part's message, the last one.
func lastReceive(part int64, n int) Delivery {
	d := mapMsg(part)
	d.ReceiveCount, d.Last = n, true
	return d
}

// receive is receive n of part's message, not the last.
func receive(part int64, n int) Delivery {
	d := mapMsg(part)
	d.ReceiveCount = n
	return d
}

func newToleratingFixture(t *testing.T, total int64, tol string, rof bool, opt Options) *fixture {
	t.Helper()
	f := newFixture(t, 1, opt)
	tl, err := backends.ParseTolerance(tol)
	if err != nil {
		t.Fatal(err)
	}
	f.store.Delete(context.Background(), "j")
	if err := f.store.CreateJob(context.Background(), backends.Job{ID: "j", Total: total, Tolerance: tl, ReduceOnFailure: rof}); err != nil {
		t.Fatal(err)
	}
	return f
}

func givenUp(t *testing.T, f *fixture) []backends.GivenUpPart {
	t.Helper()
	var out []backends.GivenUpPart
	if err := f.store.GivenUp(context.Background(), "j", func(p backends.GivenUpPart) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHandle_GiveUp(t *testing.T) {
	ctx := context.Background()
	t.Run("BeforeLastReceive_Retried", func(t *testing.T) {
		f := newToleratingFixture(t, 3, "1", false, Options{})
		check(t, f.r.Handle(ctx, receive(0, 2), f.cmd("exit 5"), nil), CommandFailed)
		if s := f.status(); s.GivenUp != 0 || s.Remaining != 3 {
			t.Errorf("GivenUp, Remaining = %d, %d; want 0, 3", s.GivenUp, s.Remaining)
		}
	})
	t.Run("LastReceive_GivenUp", func(t *testing.T) {
		f := newToleratingFixture(t, 3, "1", false, Options{})
		var errOut strings.Builder
		spec := f.cmd("echo start >&2; head -c 2000 /dev/zero | tr '\\0' x >&2; echo ' the end' >&2; exit 5")
		spec.Stderr = &errOut
		res := f.r.Handle(ctx, lastReceive(1, 4), spec, nil)
		check(t, res, GaveUp)
		if res.Status != 5 {
			t.Errorf("Status = %d, want 5 (wp run exits as the command did)", res.Status)
		}
		if !strings.HasPrefix(errOut.String(), "start\n") || !strings.HasSuffix(errOut.String(), " the end\n") {
			t.Errorf("stderr did not pass through whole: %d bytes", errOut.Len())
		}
		s := f.status()
		if s.GivenUp != 1 || s.Remaining != 2 || s.Failed {
			t.Errorf("GivenUp, Remaining, Failed = %d, %d, %v; want 1, 2, false", s.GivenUp, s.Remaining, s.Failed)
		}
		g := givenUp(t, f)
		if len(g) != 1 || g[0].Part != 1 || g[0].ExitCode != 5 || g[0].ReceiveCount != 4 || g[0].Signal != "" {
			t.Fatalf("given up = %+v, want part 1, exit 5, receive 4", g)
		}
		if len(g[0].Stderr) != backends.MaxStderrTail || !strings.HasSuffix(g[0].Stderr, "xx the end\n") {
			t.Errorf("stderr tail = %d bytes ending %q, want %d ending in the command's last line", len(g[0].Stderr), g[0].Stderr[max(0, len(g[0].Stderr)-20):], backends.MaxStderrTail)
		}
	})
	t.Run("Killed_GivenUpWithSignal", func(t *testing.T) {
		f := newToleratingFixture(t, 3, "1", false, Options{})
		res := f.r.Handle(ctx, lastReceive(0, 1), f.cmd("kill -KILL $$"), nil)
		check(t, res, GaveUp)
		if g := givenUp(t, f); len(g) != 1 || g[0].ExitCode != 137 || g[0].Signal != "SIGKILL" {
			t.Errorf("given up = %+v, want exit 137, SIGKILL", g)
		}
	})
	t.Run("CannotStart_GivenUp", func(t *testing.T) {
		f := newToleratingFixture(t, 3, "1", false, Options{})
		res := f.r.Handle(ctx, lastReceive(0, 1), child.Spec{Argv: []string{"no-such-command-wp-test"}}, nil)
		check(t, res, GaveUp)
		if res.Ran || !res.NotFound {
			t.Errorf("Ran, NotFound = %v, %v; want false, true", res.Ran, res.NotFound)
		}
		if g := givenUp(t, f); len(g) != 1 || g[0].ExitCode != 127 || !strings.Contains(g[0].Stderr, "no-such-command-wp-test") {
			t.Errorf("given up = %+v, want exit 127 and the start error", g)
		}
	})
	t.Run("EndsJobWithinTolerance_OneReduce", func(t *testing.T) {
		f := newToleratingFixture(t, 3, "1", false, Options{ClaimWait: time.Second})
		f.complete(0, 2)
		res := f.r.Handle(ctx, lastReceive(1, 2), f.cmd("exit 9"), nil)
		check(t, res, GaveUp)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Fatalf("%d reduces, want %d", got, want)
		}
		if strings.Contains(f.pub.sent[0], `"state"`) {
			t.Errorf("a job within its tolerance got a failed-state reduce: %s", f.pub.sent[0])
		}
		// The reduce's command sees how many parts were given up.
		env := filepath.Join(t.TempDir(), "env")
		check(t, f.r.Handle(ctx, Delivery{Message: `{"jobid":"j"}`, Subject: SubjectReduce}, f.cmd("env > "+env), nil), Reduced)
		b, _ := os.ReadFile(env)
		if !strings.Contains(string(b), "WP_PARTS_GIVEN_UP=1\n") || !strings.Contains(string(b), "WP_JOB_STATE=complete\n") {
			t.Errorf("reduce environment lacks WP_PARTS_GIVEN_UP=1 or WP_JOB_STATE=complete")
		}
		// A duplicate delivery that now succeeds converts the part.
		check(t, f.r.Handle(ctx, mapMsg(1), f.cmd("exit 0"), nil), AlreadyDone)
		if f.pub.reduces() != 1 {
			t.Error("a second reduce")
		}
	})
	t.Run("PastTolerance_FailsNoReduce", func(t *testing.T) {
		f := newToleratingFixture(t, 4, "1", false, Options{})
		check(t, f.r.Handle(ctx, lastReceive(0, 1), f.cmd("exit 9"), nil), GaveUp)
		res := f.r.Handle(ctx, lastReceive(1, 1), f.cmd("exit 9"), nil)
		check(t, res, GaveUp)
		if !res.JobFailed {
			t.Error("JobFailed = false for the give-up past the tolerance")
		}
		s := f.status()
		if !s.Failed || !s.FailedByTolerance || s.Error != "2 parts given up (tolerance 1)" {
			t.Errorf("job = failed %v by tolerance %v %q; want failed by tolerance with the count", s.Failed, s.FailedByTolerance, s.Error)
		}
		if f.pub.reduces() != 0 {
			t.Error("a reduce for a failed job without --reduce-on-failure")
		}
		f.didRun() // the parts given up ran
		check(t, f.r.Handle(ctx, mapMsg(2), f.cmd("exit 0"), nil), Skipped)
		if f.didRun() {
			t.Error("a later part ran after the job failed")
		}
	})
	t.Run("PastTolerance_ReduceOnFailure", func(t *testing.T) {
		f := newToleratingFixture(t, 4, "0", true, Options{ClaimWait: time.Second})
		check(t, f.r.Handle(ctx, lastReceive(0, 1), f.cmd("exit 9"), nil), GaveUp)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Fatalf("%d reduces, want %d", got, want)
		}
		if got, want := f.pub.sent[0], `reduce {"jobid":"j","metadata":{},"state":"failed","error":"1 parts given up (tolerance 0)"}`; got != want {
			t.Errorf("reduce = %s, want %s", got, want)
		}
		// Later deliveries send no second one.
		check(t, f.r.Handle(ctx, mapMsg(1), f.cmd("exit 0"), nil), Skipped)
		if f.pub.reduces() != 1 {
			t.Error("a second reduce")
		}
		env := filepath.Join(t.TempDir(), "env")
		check(t, f.r.Handle(ctx, Delivery{Message: `{"jobid":"j","state":"failed"}`, Subject: SubjectReduce}, f.cmd("env > "+env), nil), Reduced)
		b, _ := os.ReadFile(env)
		if !strings.Contains(string(b), "WP_JOB_STATE=failed\n") {
			t.Error("the failed job's reduce did not see WP_JOB_STATE=failed")
		}
	})
	t.Run("FailJobCode_ReduceOnFailure", func(t *testing.T) {
		f := newToleratingFixture(t, 4, "0", true, Options{FailJobOn: CodeSet{3: true}, ClaimWait: time.Second})
		res := f.r.Handle(ctx, mapMsg(0), f.cmd("exit 3"), nil)
		check(t, res, FailedJob)
		if got, want := f.pub.reduces(), 1; got != want {
			t.Fatalf("%d reduces, want %d", got, want)
		}
	})
	t.Run("FailedJob_ReduceSentByLaterDelivery", func(t *testing.T) {
		f := newToleratingFixture(t, 4, "0", true, Options{ClaimWait: time.Second})
		f.store.Fail(ctx, "j", "by hand") // as wp fail does: no reduce yet
		f.didRun()
		check(t, f.r.Handle(ctx, mapMsg(2), f.cmd("exit 0"), nil), Skipped)
		if f.didRun() {
			t.Error("a part of a failed job ran")
		}
		if got, want := f.pub.reduces(), 1; got != want {
			t.Errorf("%d reduces, want %d", got, want)
		}
	})
}

// TestHandle_GiveUp_NotWhenInterrupted: a signal wp forwarded (the task is
// stopping, Ctrl-C in wp local) records nothing, even on the last receive.
func TestHandle_GiveUp_NotWhenInterrupted(t *testing.T) {
	f := newToleratingFixture(t, 3, "0", false, Options{})
	mark, sigs := signalWhenUp(t, syscall.SIGTERM)
	res := f.r.Handle(context.Background(), lastReceive(0, 1), f.cmd("trap 'exit 1' TERM; touch "+mark+"; while :; do sleep 0.05; done"), sigs)
	check(t, res, Interrupted)
	if s := f.status(); s.GivenUp != 0 || s.Failed || s.Remaining != 3 {
		t.Errorf("job = given up %d, failed %v, remaining %d; want nothing recorded", s.GivenUp, s.Failed, s.Remaining)
	}
}
