package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/memstore"
	"github.com/wp-tools/wp/internal/display"
)

// job is a store holding job "j" of n parts, and its parts file.
type job struct {
	t     *testing.T
	mem   *memstore.Store
	store *backends.Store
	parts string
	dir   string
}

func newJob(t *testing.T, n int, tol backends.Tolerance) *job {
	return newBatchJob(t, n, tol, 0)
}

// newBatchJob is newJob whose messages are batches of batch parts.
func newBatchJob(t *testing.T, n int, tol backends.Tolerance, batch int) *job {
	t.Helper()
	mem := memstore.New()
	st := backends.New(mem, time.Minute)
	if err := st.CreateJob(context.Background(), backends.Job{ID: "j", Total: int64(n), Metadata: []byte(`{"m":1}`), Tolerance: tol, Batch: batch, BatchBytes: 262144}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	i := 0
	pf, err := CreateParts(filepath.Join(dir, "parts", "j.ndjson"), func() (string, bool, error) {
		if i == n {
			return "", false, nil
		}
		i++
		return fmt.Sprintf(`{"jobid":"j","partid":%d,"n":%d}`, i-1, i-1), true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Keep(false); err != nil {
		t.Fatal(err)
	}
	return &job{t: t, mem: mem, store: st, parts: filepath.Join(dir, "parts", "j.ndjson"), dir: dir}
}

// run runs the job with script as the command (sh -c), its output in out.
func (j *job) run(ctx context.Context, script string, opt Options) (Summary, string) {
	j.t.Helper()
	var out bytes.Buffer
	opt.Argv = []string{"sh", "-c", script}
	opt.Env = append(os.Environ(), "DIR="+j.dir)
	opt.PartsFile = j.parts
	opt.Out = display.NewOutput(&out, &out)
	opt.Prefix = true
	if opt.Grace == 0 {
		opt.Grace = 5 * time.Second
	}
	if opt.ReduceLease == 0 {
		opt.ReduceLease = time.Minute
	}
	opt.Backoff = time.Millisecond
	s, err := Run(ctx, j.store, "j", opt)
	if err != nil {
		j.t.Fatalf("Run: %v", err)
	}
	return s, out.String()
}

// TestRun_WatchbotEnvironment: each run of a part is a receive of one
// message: the same MessageId, SentTimestamp and first receive on every
// attempt, the receive count going up, as SQS gives them; and the reduce
// runs once after every part completed.
func TestRun_WatchbotEnvironment(t *testing.T) {
	j := newJob(t, 3, backends.Tolerance{})
	s, out := j.run(context.Background(), `
		echo "$WP_SUBJECT ${WP_PART_ID:-r} $ApproximateReceiveCount $MessageId $SentTimestamp $ApproximateFirstReceiveTimestamp $Subject"
		if [ "$WP_SUBJECT" = map ] && [ "$WP_PART_ID" = 1 ] && [ "$ApproximateReceiveCount" -lt 3 ]; then exit 9; fi`,
		Options{Jobs: 2, Retries: 2})
	if s.Done != 3 || s.Retried != 2 || s.Reduce != 0 || s.JobFailed || s.Interrupted != nil {
		t.Fatalf("summary = %+v, want 3 done, 2 retried, reduce exit 0", s)
	}
	if s.Job.State() != backends.StateReduced {
		t.Errorf("job state %s, want reduced", s.Job.State())
	}
	var part1 []string
	reduces := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "[part 1] ")
		if !ok {
			if strings.HasPrefix(sc.Text(), "[reduce] reduce ") {
				reduces++
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) != 7 || f[0] != "map" || f[1] != "1" || f[6] != "map" {
			t.Fatalf("line %q: want part 1's map run and Subject=map", sc.Text())
		}
		part1 = append(part1, line)
	}
	if len(part1) != 3 {
		t.Fatalf("part 1 ran %d times, want 3:\n%s", len(part1), out)
	}
	for i, l := range part1 {
		f := strings.Fields(l)
		if got, want := f[2], fmt.Sprint(i+1); got != want {
			t.Errorf("run %d of part 1: ApproximateReceiveCount %s, want %s", i+1, got, want)
		}
		first := strings.Fields(part1[0])
		if f[3] != first[3] || f[4] != first[4] || f[5] != first[5] || f[3] == "" {
			t.Errorf("run %d of part 1: MessageId, SentTimestamp, ApproximateFirstReceiveTimestamp = %v, want the first run's %v", i+1, f[3:6], first[3:6])
		}
	}
	if reduces != 1 {
		t.Errorf("the reduce ran %d times, want 1", reduces)
	}
}

// TestRun_LastAttemptGivesUp: a part failing on its last attempt is given
// up, and the job ends by its tolerance: within it, the reduce runs.
func TestRun_LastAttemptGivesUp(t *testing.T) {
	j := newJob(t, 3, backends.Tolerance{Parts: 1})
	s, _ := j.run(context.Background(), `[ "$WP_PART_ID" = 2 ] && exit 7; exit 0`, Options{Jobs: 1, Retries: 1})
	if s.Done != 2 || s.GivenUp != 1 || s.Retried != 1 || s.Reduce != 0 || s.JobFailed {
		t.Fatalf("summary = %+v, want 2 done, 1 given up, 1 retried, reduce exit 0", s)
	}
	var g []backends.GivenUpPart
	j.store.GivenUp(context.Background(), "j", func(p backends.GivenUpPart) error {
		g = append(g, p)
		return nil
	})
	if len(g) != 1 || g[0].Part != 2 || g[0].ExitCode != 7 || g[0].ReceiveCount != 2 {
		t.Errorf("given up = %+v, want part 2, exit 7, on receive 2", g)
	}
}

// TestRun_FailJobStops: a fail-job code fails the job and no new part
// starts; there is no reduce.
func TestRun_FailJobStops(t *testing.T) {
	j := newJob(t, 6, backends.Tolerance{})
	s, out := j.run(context.Background(), `[ "$WP_PART_ID" = 1 ] && exit 3; echo "ran $WP_SUBJECT $WP_PART_ID"`, Options{Jobs: 1, FailJobOn: map[int]bool{3: true}})
	if !s.JobFailed || s.Reduce != -1 || s.Job.Error != "part 1 exited with code 3" {
		t.Fatalf("summary = %+v, want the job failed by part 1 and no reduce", s)
	}
	if strings.Contains(out, "ran map 2") || strings.Contains(out, "ran reduce") {
		t.Errorf("a part (or the reduce) ran after the job failed:\n%s", out)
	}
}

// TestRun_Signal: a signal stops the run: the running parts get it and
// nothing is recorded for them, no new part starts, no reduce runs, and the
// summary names the parts that were stopped.
func TestRun_Signal(t *testing.T) {
	j := newJob(t, 4, backends.Tolerance{})
	sigs := make(chan os.Signal, 1)
	go func() {
		// Once parts 1 and 2 are both running.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			_, e1 := os.Stat(filepath.Join(j.dir, "up1"))
			_, e2 := os.Stat(filepath.Join(j.dir, "up2"))
			if e1 == nil && e2 == nil {
				break
			}
		}
		sigs <- syscall.SIGINT
	}()
	s, out := j.run(context.Background(), `
		[ "$WP_SUBJECT" = reduce ] && { echo reduce ran; exit 0; }
		[ "$WP_PART_ID" = 0 ] && exit 0
		trap 'echo "part $WP_PART_ID got INT"; exit 0' INT
		touch "$DIR/up$WP_PART_ID"
		while :; do sleep 0.05; done`, Options{Jobs: 2, Signals: sigs})
	if s.Interrupted != syscall.SIGINT {
		t.Fatalf("Interrupted = %v, want SIGINT", s.Interrupted)
	}
	if got, want := fmt.Sprint(s.Stopped), "[1 2]"; got != want {
		t.Errorf("Stopped = %s, want %s", got, want)
	}
	if s.Reduce != -1 || strings.Contains(out, "reduce ran") {
		t.Errorf("the reduce ran after the signal (Reduce %d)", s.Reduce)
	}
	for _, p := range []string{"1", "2"} {
		if !strings.Contains(out, "part "+p+" got INT") {
			t.Errorf("part %s did not get the signal:\n%s", p, out)
		}
	}
	// Exiting 0 after the signal records nothing: both stay pending, and
	// part 3 never started.
	if s.Job.Remaining != 3 || s.Done != 1 {
		t.Errorf("Remaining %d, Done %d; want 3 and 1", s.Job.Remaining, s.Done)
	}
}

// TestRun_ContextEnds: the end of the caller's context stops the run as a
// SIGTERM does.
func TestRun_ContextEnds(t *testing.T) {
	j := newJob(t, 3, backends.Tolerance{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(j.dir, "up")); err == nil {
				break
			}
		}
		cancel()
	}()
	sigs := make(chan os.Signal) // never sent on: only ctx stops this run
	s, _ := j.run(ctx, `touch "$DIR/up"; trap 'exit 0' TERM; while :; do sleep 0.05; done`, Options{Jobs: 1, Signals: sigs})
	if s.Interrupted != syscall.SIGTERM || s.Job.Remaining != 3 || s.Reduce != -1 {
		t.Errorf("summary = %+v, want interrupted by SIGTERM, 3 parts pending, no reduce", s)
	}
}

// TestRun_RetryGivenUp: with RetryGivenUp the given-up parts run again.
func TestRun_RetryGivenUp(t *testing.T) {
	j := newJob(t, 2, backends.Tolerance{})
	if _, err := j.store.GiveUp(context.Background(), "j", 1, backends.GiveUpInfo{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := j.store.Status(context.Background(), "j"); !st.Failed {
		t.Fatalf("job not failed by its give-up: %+v", st)
	}
	s, out := j.run(context.Background(), `echo "ran ${WP_PART_ID:-reduce}"`, Options{Jobs: 1, RetryGivenUp: true})
	if s.Done != 2 || s.Reduce != 0 || s.JobFailed || !strings.Contains(out, "ran 1") {
		t.Fatalf("summary = %+v, want both parts done and the reduce; output:\n%s", s, out)
	}
}

// TestRun_Batches: a job created with batches runs as batch messages: the
// third part of a batch fails twice, then succeeds; the other parts of its
// batch ran once; every part's lines carry its own prefix and it sees its
// own message.
func TestRun_Batches(t *testing.T) {
	j := newBatchJob(t, 7, backends.Tolerance{}, 3)
	s, out := j.run(context.Background(), `
		[ "$WP_SUBJECT" = reduce ] && { echo reduce; exit 0; }
		echo "n=$WP_PART_N $Message"
		[ "$WP_PART_ID" = 2 ] && [ "$ApproximateReceiveCount" -lt 3 ] && exit 9
		exit 0`, Options{Jobs: 2, Retries: 2})
	if s.Done != 7 || s.Reduce != 0 || s.Retried != 2 || s.Failed != 0 {
		t.Fatalf("summary = %+v, want 7 done, 2 retried, the reduce", s)
	}
	for p := 0; p < 7; p++ {
		want := fmt.Sprintf(`[part %d] n=%d {"jobid":"j","partid":%d,"n":%d}`, p, p, p, p)
		n := strings.Count(out, want+"\n")
		if wantRuns := map[bool]int{true: 3, false: 1}[p == 2]; n != wantRuns {
			t.Errorf("part %d ran %d times (line %q), want %d:\n%s", p, n, want, wantRuns, out)
		}
	}
	if j.mem.Calls("CompleteParts") < 3 {
		t.Errorf("%d CompleteParts calls: the batches were not recorded as batches", j.mem.Calls("CompleteParts"))
	}
}
