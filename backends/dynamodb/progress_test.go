package dynamodb

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// TestLayout_ShardWorstCase: the largest shard item wp can write stays
// under the 1 KB write unit: a 128-character job id, a shard number of 8
// digits (2^32 parts), every offset pending again after a retry while the
// retry's hold is on it, the job failed (f), an expiry, and the most
// counters the sweep leaves (RecentMinutes of them, each of 3 digits).
func TestLayout_ShardWorstCase(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	id := "j-" + strings.Repeat("x", 126)
	now := time.Now()
	w := minuteOf(now.UnixMilli())
	sh := item{
		attrID:       str(shardKey(id, maxTotal/shardSize-1)),
		attrParts:    rangeSet(shardSize),
		attrT:        num(now.UnixMilli()),
		attrExpires:  num(now.Add(365 * 24 * time.Hour).Unix()),
		attrFailed:   boolean(true),
		attrRetry:    str("0a0c7a8e-1d3c-4b8e-9a66-5e5b8f0e4f21"),
		attrRetryExp: num(now.UnixMilli()),
	}
	for m := windowStart(w); m <= w; m++ {
		sh[counterName(shardCounterPrefix, m)] = num(256)
	}
	n := itemSize(sh)
	t.Logf("worst-case shard item: %d bytes", n)
	if n >= 1024 {
		t.Errorf("worst-case shard item is %d bytes, want under 1024", n)
	}
	out, err := st.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(st.table), Item: sh, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
	if err != nil {
		t.Fatal(err)
	}
	if u := *out.ConsumedCapacity.CapacityUnits; u != 1 {
		t.Errorf("writing the worst-case shard item costs %v WCU (dynalite's count), want 1", u)
	}
}

// shardCounters reads the counters of shard s of job id.
func shardCounters(t *testing.T, st *Store, id string, s int64) counters {
	t.Helper()
	return countersOf(rawItem(t, st, shardKey(id, s)), shardCounterPrefix)
}

// TestRecent_Sweep: a shard completed a part a minute keeps only the
// counters of the window; after two idle hours the hot write is refused
// (the shard was not written within recentSweep minutes), and the write
// after the read removes every stale counter.
func TestRecent_Sweep(t *testing.T) {
	base, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	const id = "sweep"
	if err := base.CreateJob(ctx, backends.Job{ID: id, Total: 300}); err != nil {
		t.Fatal(err)
	}
	st := *base
	start := time.Now()
	for i := int64(0); i < 40; i++ {
		st.now = func() time.Time { return start.Add(time.Duration(i) * time.Minute) }
		if _, err := st.Complete(ctx, id, i); err != nil {
			t.Fatal(err)
		}
		cs := shardCounters(t, &st, id, 0)
		w := minuteOf(st.nowMS())
		if len(cs) > backends.RecentMinutes || len(cs.inWindow(w)) != len(cs) {
			t.Fatalf("after a part a minute for %d minutes the shard has counters %v, want those of minutes %d..%d only", i+1, cs, windowStart(w), w)
		}
	}
	if s, err := st.Status(ctx, id); err != nil || s.RecentEnded != backends.RecentMinutes {
		t.Errorf("Status = %+v, %v; want RecentEnded %d (a part a minute)", s.RecentEnded, err, backends.RecentMinutes)
	}
	p.Reset()
	st.now = func() time.Time { return start.Add(40*time.Minute + 2*time.Hour) }
	if c, err := st.Complete(ctx, id, 100); err != nil || c.Completed != 1 {
		t.Fatalf("Complete after two idle hours = %+v, %v", c, err)
	}
	o := p.Stats().Ops["UpdateItem"]
	if o.ConditionFailed != 1 || o.Requests != 2 {
		t.Errorf("Complete after two idle hours: %d UpdateItem, %d refused; want the hot write refused, then one", o.Requests, o.ConditionFailed)
	}
	if cs := shardCounters(t, &st, id, 0); len(cs) != 1 {
		t.Errorf("counters after the gap: %v, want only the new minute's", cs)
	}
	if s, err := st.Status(ctx, id); err != nil || s.RecentEnded != 1 {
		t.Errorf("RecentEnded after the gap = %d, %v; want 1", s.RecentEnded, err)
	}
}

// TestRecent_Rollup: the counters of an emptied shard reach its group, an
// emptied group's the job item, so that Status counts every part that ended
// in the window, and Peek of a finished job does too. A retry of a part of
// the finished job puts its shard and group back without counting their
// parts twice.
func TestRecent_Rollup(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "rollup"
	const total = 600 // 3 shards, 1 group
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Parts: 1}}); err != nil {
		t.Fatal(err)
	}
	for from := int64(0); from < shardSize; from += 64 {
		if _, err := st.CompleteParts(ctx, id, parts(from, from+64)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CompleteParts(ctx, id, parts(256, 266)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, id, 599, backends.GiveUpInfo{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if got := countersOf(rawItem(t, st, groupKey(id, 0)), shardCounterPrefix).sum(); got != shardSize {
		t.Errorf("group counters sum %d, want %d (shard 0's, rolled up)", got, shardSize)
	}
	s, err := st.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.RecentEnded != 267 || s.RecentWindow <= 0 {
		t.Errorf("RecentEnded %d over %v, want 267", s.RecentEnded, s.RecentWindow)
	}
	if p, _ := st.Peek(ctx, id); p.RecentWindow != 0 || !p.Estimated {
		t.Errorf("Peek of a running job: RecentWindow %v, Estimated %v; want 0 (not counted there), true", p.RecentWindow, p.Estimated)
	}
	before := time.Now()
	if _, err := st.CompleteParts(ctx, id, parts(266, 599)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	p, err := st.Peek(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Remaining != 0 || p.Estimated || p.RecentEnded != total || p.RecentWindow <= 0 {
		t.Errorf("Peek of the finished job: %+v; want Remaining 0, RecentEnded %d counted on the job item", p, total)
	}
	if p.LastEnded.Before(before.Add(-time.Second)) || p.LastEnded.After(after.Add(time.Second)) {
		t.Errorf("Peek's LastEnded %v, want between %v and %v", p.LastEnded, before, after)
	}
	if moved, err := st.Retry(ctx, id, []int64{599}); err != nil || len(moved) != 1 {
		t.Fatalf("Retry = %v, %v", moved, err)
	}
	if s, err := st.Status(ctx, id); err != nil || s.RecentEnded != total || s.Remaining != 1 {
		t.Errorf("after the retry Status = %+v, %v; want RecentEnded %d still (nothing counted twice), 1 remaining", s, err, total)
	}
	c, err := st.Complete(ctx, id, 599)
	if err != nil || !c.Finisher {
		t.Fatalf("Complete of the retried part = %+v, %v", c, err)
	}
	if s, err := st.Status(ctx, id); err != nil || s.RecentEnded != total+1 {
		t.Errorf("after it ended again RecentEnded = %d, %v; want %d", s.RecentEnded, err, total+1)
	}
}
