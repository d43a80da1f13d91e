package dynamodb

import (
	"errors"
	"testing"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

func parts(from, to int64) []int64 { return seq(from, to-1) }

// TestCompleteParts_OneWritePerShard: after the Peek wp run makes, a batch
// inside one shard is one UpdateItem of one write unit and no read; a batch
// across two shards is two; the batch that empties a shard adds the group's
// write, as a single completion does. Without the Peek, the job item is read
// once, for the total.
func TestCompleteParts_OneWritePerShard(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	const id = "batch"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Peek(ctx, id); err != nil {
		t.Fatal(err)
	}
	check := func(what string, ps []int64, wantUpdates, wantGets int, wantWCU float64, wantCompleted int) {
		t.Helper()
		p.Reset()
		c, err := st.CompleteParts(ctx, id, ps)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if c.Completed != wantCompleted {
			t.Errorf("%s: Completed = %d, want %d", what, c.Completed, wantCompleted)
		}
		n, _, wcu := opUnits(p, "UpdateItem")
		gets, _, _ := opUnits(p, "GetItem")
		if n != wantUpdates || gets != wantGets || wcu != wantWCU {
			t.Errorf("%s: %d UpdateItem (%.0f WCU), %d GetItem; want %d (%.0f WCU), %d", what, n, wcu, gets, wantUpdates, wantWCU, wantGets)
		}
	}
	check("16 parts of one shard", parts(0, 16), 1, 0, 1, 16)
	check("240 parts of one shard", parts(16, 256), 2, 0, 2, 240) // emptied: the group's write
	check("a batch across two shards", parts(500, 520), 2, 0, 2, 20)
	check("a duplicate batch of two shards", parts(500, 520), 2, 3, 2, 0) // both refused; the job read once, each shard
	st.totals.drop(id)
	check("without a Peek first", parts(600, 616), 1, 1, 1, 16)
}

// TestCompleteParts_Capacity: a job completed in batches of 16 costs about
// a sixteenth of a write unit a part.
func TestCompleteParts_Capacity(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	const total, batch = 5000, 16
	if err := st.CreateJob(ctx, backends.Job{ID: "cap", Total: total, Metadata: []byte(`{"name":"some metadata"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Peek(ctx, "cap"); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	finishers := 0
	for from := int64(0); from < total; from += batch {
		c, err := st.CompleteParts(ctx, "cap", parts(from, min(from+batch, total)))
		if err != nil {
			t.Fatal(err)
		}
		if c.Finisher {
			finishers++
		}
	}
	wcu := p.Stats().WriteUnits
	t.Logf("%d parts in batches of %d: %.4f WCU a part, %.3f a batch", total, batch, wcu/total, wcu/float64((total+batch-1)/batch))
	if finishers != 1 {
		t.Errorf("%d finishers, want 1", finishers)
	}
	if per := wcu / total; per > 1.1/batch {
		t.Errorf("%.4f WCU a part in batches of %d, want about 1/%d", per, batch, batch)
	}
}

// TestCompleteParts_Legacy: a batch of a legacy job is one write on its
// item, and a part outside the numbering records nothing.
func TestCompleteParts_Legacy(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	putLegacy(t, st, "node", seq(1, 10), 10, nil)
	if _, err := st.CompleteParts(ctx, "node", []int64{9, 10, 11}); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("CompleteParts(9,10,11) of a Node job of 10 parts: %v, want ErrPartRange", err)
	}
	c, err := st.CompleteParts(ctx, "node", []int64{1, 2, 3})
	if err != nil || c.Completed != 3 || c.Done {
		t.Fatalf("CompleteParts(1,2,3) = %+v, %v", c, err)
	}
	c, err = st.CompleteParts(ctx, "node", []int64{2, 3, 4})
	if err != nil || c.Completed != 1 || c.Duplicate {
		t.Errorf("CompleteParts(2,3,4) with 2 and 3 done = %+v, %v; want Completed 1", c, err)
	}
	c, err = st.CompleteParts(ctx, "node", seq(1, 10))
	if err != nil || c.Completed != 6 || !c.Finisher || !c.Done {
		t.Errorf("CompleteParts(1..10) = %+v, %v; want the 6 left, Finisher", c, err)
	}
	if got := pendingOf(t, st, "node"); len(got) != 0 {
		t.Errorf("pending = %v, want none", got)
	}
}

// TestCompleteParts_PartialCount: a batch whose first part is pending but
// some others are complete passes the hot write's condition; it completes
// the pending ones, and the counter, which took the whole batch, is put
// right, so the recent count counts each part once.
func TestCompleteParts_PartialCount(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "partial", Total: 20}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int64{3, 7} {
		if _, err := st.Complete(ctx, "partial", p); err != nil {
			t.Fatal(err)
		}
	}
	c, err := st.CompleteParts(ctx, "partial", parts(0, 10))
	if err != nil || c.Completed != 8 || c.Duplicate || c.Done {
		t.Fatalf("CompleteParts(0..9) with 3 and 7 done = %+v, %v; want Completed 8", c, err)
	}
	s, err := st.Status(ctx, "partial")
	if err != nil || s.Remaining != 10 || s.RecentEnded != 10 {
		t.Errorf("Status = Remaining %d RecentEnded %d, %v; want 10 and 10", s.Remaining, s.RecentEnded, err)
	}
}
