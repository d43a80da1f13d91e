package redis

import (
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// TestLayout_GivenUp: a give-up writes its details in wp:{JOBID}:gu and its
// bit in wp:{JOBID}:gub (the job's hash tag, so one script touches them
// with the job hash), a conversion removes both, and Delete removes every
// key of the job.
func TestLayout_GivenUp(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	job := backends.Job{ID: "lay-gu", Total: 10, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 2000}, ReduceOnFailure: true, Digest: "sha256:ab"}
	if err := st.CreateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	h := st.c.HGetAll(ctx, "wp:{lay-gu}:job").Val()
	if h["tolerance"] != "20%" || h["tol_limit"] != "2" || h["reduce_on_failure"] != "1" || h["digest"] != "sha256:ab" ||
		h["tol_reason"] != backends.ToleranceReason(3, job.Tolerance, 10) {
		t.Errorf("job hash = %v", h)
	}
	at := time.UnixMilli(1764400000123)
	if _, err := st.GiveUp(ctx, "lay-gu", 3, backends.GiveUpInfo{ExitCode: 137, Signal: "SIGKILL", ReceiveCount: 10, At: at, Stderr: "oom"}); err != nil {
		t.Fatal(err)
	}
	if got, want := st.c.HGet(ctx, "wp:{lay-gu}:gu", "3").Val(), `{"c":137,"s":"SIGKILL","r":10,"t":1764400000123,"e":"oom"}`; got != want {
		t.Errorf("gu field 3 = %s, want %s", got, want)
	}
	if st.c.GetBit(ctx, "wp:{lay-gu}:gub", 3).Val() != 1 || st.c.GetBit(ctx, "wp:{lay-gu}:done", 3).Val() != 1 {
		t.Errorf("gub and done bits of a given-up part must both be set")
	}
	if got := st.c.HGet(ctx, "wp:{lay-gu}:job", "given_up").Val(); got != "1" {
		t.Errorf("given_up = %q, want 1", got)
	}
	if _, err := st.Complete(ctx, "lay-gu", 3); err != nil {
		t.Fatal(err)
	}
	if st.c.HExists(ctx, "wp:{lay-gu}:gu", "3").Val() || st.c.GetBit(ctx, "wp:{lay-gu}:gub", 3).Val() != 0 {
		t.Errorf("a converted part keeps its gu entry or gub bit")
	}
	if got := st.c.HGet(ctx, "wp:{lay-gu}:job", "given_up").Val(); got != "0" {
		t.Errorf("given_up after conversion = %q, want 0", got)
	}
	if _, err := st.GiveUp(ctx, "lay-gu", 4, backends.GiveUpInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "lay-gu"); err != nil {
		t.Fatal(err)
	}
	if n := st.c.Exists(ctx, "wp:{lay-gu}:job", "wp:{lay-gu}:done", "wp:{lay-gu}:gu", "wp:{lay-gu}:gub").Val(); n != 0 {
		t.Errorf("%d keys of a deleted job remain", n)
	}
}

// TestOlderJobHash: a job written by a wp from before given-up parts (no
// tolerance fields) reads with zero values and tolerates no give-up.
func TestOlderJobHash(t *testing.T) {
	st := openShared(t)
	ctx := testCtx(t, time.Minute)
	st.c.HSet(ctx, "wp:{old}:job", "total", "4", "remaining", "4", "meta", "", "created", "1764400000000")
	s, err := st.Status(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if s.GivenUp != 0 || s.Tolerance != (backends.Tolerance{}) || s.ReduceOnFailure || s.Digest != "" || s.FailedByTolerance {
		t.Errorf("older job = %+v, want zero given-up fields", s)
	}
	c, err := st.GiveUp(ctx, "old", 1, backends.GiveUpInfo{})
	if err != nil || !c.Failed {
		t.Fatalf("GiveUp = %+v, %v; want Failed", c, err)
	}
	s, err = st.Status(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if want := backends.ToleranceReason(1, backends.Tolerance{}, 4); s.Error != want || !s.FailedByTolerance || s.GivenUp != 1 {
		t.Errorf("status = %+v, want failed by tolerance with %q", s, want)
	}
	if c, err := st.Complete(ctx, "old", 0); err == nil {
		t.Errorf("Complete on the failed job = %+v, want ErrJobFailed", c)
	}
}
