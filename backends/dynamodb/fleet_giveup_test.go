package dynamodb

import (
	"fmt"
	"testing"
)

// TestFleet_GiveUpLegacyJob: wp run giving up a part of a job the Python
// library created, on its last receive: the part leaves the pending set the
// library reads, the job fails (a library's job tolerates none) with an
// error the library reports and honours (its workers with fail_job_on skip
// later parts), and wp info shows the given-up part.
func TestFleet_GiveUpLegacyJob(t *testing.T) {
	f := newFleet(t)
	mustOK(t, "create_job", f.py("create", "pg", "3"))
	r := f.wp("", []string{"Subject=map", "Message=" + msg("pg", 1), "ApproximateReceiveCount=10"},
		"run", "--max-receives", "10", "--", "sh", "-c", "echo boom >&2; exit 1")
	if r.code != 1 {
		t.Fatalf("wp run of a failing part on its last receive exited %d, want the command's 1; stderr:\n%s", r.code, r.errOut)
	}
	st := f.py("status", "pg").value(t).(map[string]any)
	if got, want := fmt.Sprint(st["failed"]), "1 parts given up (tolerance 0)"; got != want {
		t.Errorf("Python status after the give-up = %v, want failed: %q", st, want)
	}
	pend := f.py("pending", "pg").value(t)
	if got, want := fmt.Sprint(pend), "[0 2]"; got != want {
		t.Errorf("Python pending parts = %s, want %s (the given-up part is not pending)", got, want)
	}
	// A Python worker with fail_job_on checks for failure first.
	if r := f.py("part", "pg", "0", "fail"); r.ran() || r.errorName() != "JobFailed" {
		t.Errorf("a Python worker (fail_job_on) on part 0 of a job wp failed: %s, ran %v; want JobFailed before the user's code", r.out, r.ran())
	}
	info := f.info("pg")
	if got := fmt.Sprint(info["given_up"]); got != "1" {
		t.Errorf("wp info --json given_up = %s, want 1 (%v)", got, info)
	}
}

// TestFleet_GiveUpNodeJob: the same for a job of the Node library (parts
// 1..N): its map workers read status.failed and skip the job's other parts.
func TestFleet_GiveUpNodeJob(t *testing.T) {
	f := newFleet(t)
	mustOK(t, "setTotal", f.node("settotal", "ng", "3"))
	r := f.wp("", []string{"Subject=map", "Message=" + nodeMsg("ng", 3), "ApproximateReceiveCount=10"},
		"run", "--jobid-field", "id", "--partid-field", "part", "--max-receives", "10", "--", "sh", "-c", "exit 2")
	if r.code != 2 {
		t.Fatalf("wp run of a failing part on its last receive exited %d, want the command's 2; stderr:\n%s", r.code, r.errOut)
	}
	r = f.node("part", "ng", "1")
	mustOK(t, "Node worker", r)
	if r.ran() || fmt.Sprint(r.value(t)) != "map[skipped:true]" {
		t.Errorf("a Node worker on part 1 of a job wp failed: %s, ran %v; want skipped", r.out, r.ran())
	}
	info := f.info("ng")
	if got := fmt.Sprint(info["given_up"]); got != "1" || info["state"] != "failed" {
		t.Errorf("wp info --json = %v, want failed with 1 given up", info)
	}
}
