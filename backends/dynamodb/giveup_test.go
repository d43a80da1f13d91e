package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// TestLayout_GivenUp: what a give-up writes (the shard's gu set, the
// details item, the job item's index) and that a conversion, a Retry and
// Delete undo it.
func TestLayout_GivenUp(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "lay-gu"
	job := backends.Job{ID: id, Total: 600, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 500}, ReduceOnFailure: true, Digest: "sha256:ab"}
	if err := st.CreateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	j := rawItem(t, st, id)
	if getStr(j, attrTolerance) != "5%" || !getBool(j, attrROF) || getStr(j, attrDigest) != "sha256:ab" {
		t.Errorf("job item = %v, want the tolerance, reduce on failure and digest", j)
	}
	if n, _ := getNum(j, attrTolLimit); n != 30 {
		t.Errorf("wpTolLimit = %d, want 30 (5%% of 600)", n)
	}
	at := time.UnixMilli(1764400000123)
	info := backends.GiveUpInfo{ExitCode: 137, Signal: "SIGKILL", ReceiveCount: 10, At: at, Stderr: "oom"}
	if _, err := st.GiveUp(ctx, id, 300, info); err != nil {
		t.Fatal(err)
	}
	if sh := rawItem(t, st, shardKey(id, 1)); !nsContains(sh, attrGU, 44) || nsContains(sh, attrParts, 44) {
		t.Errorf("shard 1 = %v, want offset 44 in gu and not in parts", sh)
	}
	if got := parseDetails(rawItem(t, st, detailsKey(id, 300))); !reflect.DeepEqual(got, info) {
		t.Errorf("details item = %+v, want %+v", got, info)
	}
	if ps, _ := getNS(rawItem(t, st, id), attrGivenUp); !reflect.DeepEqual(ps, []int64{300}) {
		t.Errorf("job item wpGivenUp = %v, want [300]", ps)
	}
	// Converted by a completion.
	if c, err := st.Complete(ctx, id, 300); err != nil || c.Duplicate || c.Finisher {
		t.Fatalf("Complete of the given-up part = %+v, %v", c, err)
	}
	if sh := rawItem(t, st, shardKey(id, 1)); nsContains(sh, attrGU, 44) || nsContains(sh, attrParts, 44) {
		t.Errorf("shard 1 after conversion = %v, want offset 44 in neither set", sh)
	}
	if it := rawItem(t, st, detailsKey(id, 300)); it != nil {
		t.Errorf("details item of a converted part remains: %v", it)
	}
	if _, ok := rawItem(t, st, id)[attrGivenUp]; ok {
		t.Errorf("job item keeps wpGivenUp after the conversion of its only part")
	}
	// Retried: back in parts, and the shard's retry mark is gone.
	if _, err := st.GiveUp(ctx, id, 5, info); err != nil {
		t.Fatal(err)
	}
	if moved, err := st.Retry(ctx, id, []int64{5}); err != nil || !reflect.DeepEqual(moved, []int64{5}) {
		t.Fatalf("Retry = %v, %v", moved, err)
	}
	sh := rawItem(t, st, shardKey(id, 0))
	if !nsContains(sh, attrParts, 5) || nsContains(sh, attrGU, 5) || sh[attrRetry] != nil || sh[attrRetryExp] != nil {
		t.Errorf("shard 0 after Retry = %v, want 5 pending, no gu, no mark", sh)
	}
	// Delete removes the details items.
	if _, err := st.GiveUp(ctx, id, 7, info); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{id, shardKey(id, 0), groupKey(id, 0), detailsKey(id, 7)} {
		if it := rawItem(t, st, k); it != nil {
			t.Errorf("item %s remains after Delete", k)
		}
	}
}

// TestRetry_ReaddsLevels: retrying a part of a job that had ended puts its
// shard back in its group and the group back in the job, so the job is not
// done until the part ends again, and the completion that ends it is the
// finisher; parts of several shards and groups move together.
func TestRetry_ReaddsLevels(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "readd"
	const total = 2*shardSize*groupSize + 10 // 3 groups
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Parts: 10}}); err != nil {
		t.Fatal(err)
	}
	gaveUp := []int64{3, shardSize*groupSize + 7, total - 1}
	// Every part ended, three of them given up: written directly (ending
	// 131,082 parts one by one takes minutes on dynalite).
	gu := map[int64][]int64{}
	for _, p := range gaveUp {
		gu[p/shardSize] = append(gu[p/shardSize], p%shardSize)
	}
	shards := ceilDiv(total, shardSize)
	if err := st.writeRange(ctx, 0, shards, func(s int64) types.WriteRequest {
		it := item{attrID: str(shardKey(id, s)), attrT: num(0)}
		if offs := gu[s]; len(offs) > 0 {
			it[attrGU] = numSet(offs...)
		}
		return types.WriteRequest{PutRequest: &types.PutRequest{Item: it}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.writeRange(ctx, 0, ceilDiv(shards, groupSize), func(g int64) types.WriteRequest {
		return types.WriteRequest{PutRequest: &types.PutRequest{Item: item{attrID: str(groupKey(id, g)), attrT: num(0)}}}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.updateJob(ctx, "test", id, "REMOVE #groups ADD #wpGivenUp :g", "", names(attrGroups, attrGivenUp), item{":g": numSet(gaveUp...)}); err != nil {
		t.Fatal(err)
	}
	if s, err := st.Status(ctx, id); err != nil || s.Remaining != 0 || s.GivenUp != 3 {
		t.Fatalf("Status = %+v, %v; want every part ended, 3 given up", s, err)
	}
	moved, err := st.Retry(ctx, id, gaveUp)
	if err != nil || len(moved) != 3 {
		t.Fatalf("Retry = %v, %v; want 3 parts moved", moved, err)
	}
	s, err := st.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Remaining != 3 || s.GivenUp != 0 || s.State() != backends.StateRunning {
		t.Errorf("after Retry: %+v, want 3 remaining, running", s)
	}
	if gs, _ := getNS(rawItem(t, st, id), attrGroups); !reflect.DeepEqual(gs, []int64{0, 1, 2}) {
		t.Errorf("job groups after Retry = %v, want [0 1 2]", gs)
	}
	finishers := 0
	for i, p := range gaveUp {
		c, err := st.Complete(ctx, id, p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Duplicate {
			t.Errorf("Complete(%d) of a retried part is a duplicate", p)
		}
		if c.Finisher {
			finishers++
			if i != len(gaveUp)-1 {
				t.Errorf("Complete(%d) finished the job with %d retried parts still pending", p, len(gaveUp)-1-i)
			}
		}
	}
	if finishers != 1 {
		t.Errorf("%d finishers after the retry, want 1", finishers)
	}
}

// TestLegacy_GivenUp: a legacy job (either library's item) is given up on
// its one item, fails at once (a legacy job tolerates none) with the error
// both libraries read, and wp retry revives it.
func TestLegacy_GivenUp(t *testing.T) {
	for _, first := range []int64{0, 1} {
		t.Run(fmt.Sprintf("first=%d", first), func(t *testing.T) {
			st, _ := newTable(t)
			ctx := testCtx(t)
			id := fmt.Sprintf("legacy-gu-%d", first)
			putLegacy(t, st, id, seq(first, first+4), 5, nil)
			c, err := st.GiveUp(ctx, id, first+2, backends.GiveUpInfo{ExitCode: 9, ReceiveCount: 10, Stderr: "boom"})
			if err != nil || !c.Failed || c.Done {
				t.Fatalf("GiveUp = %+v, %v; want Failed", c, err)
			}
			raw := rawItem(t, st, id)
			if nsContains(raw, attrParts, first+2) || !nsContains(raw, attrGivenUp, first+2) {
				t.Errorf("legacy item = %v, want part %d moved from parts to wpGivenUp", raw, first+2)
			}
			if e := getStr(raw, attrError); e != backends.ToleranceReason(1, backends.Tolerance{}, 5) {
				t.Errorf("error = %q, want the tolerance reason", e)
			}
			s, err := st.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Remaining != 4 || s.GivenUp != 1 || !s.FailedByTolerance || s.FirstPart != first {
				t.Errorf("Status = %+v", s)
			}
			var listed []backends.GivenUpPart
			if err := st.GivenUp(ctx, id, func(p backends.GivenUpPart) error { listed = append(listed, p); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(listed) != 1 || listed[0].Part != first+2 || listed[0].ExitCode != 9 || listed[0].Stderr != "boom" {
				t.Errorf("GivenUp = %+v", listed)
			}
			if _, err := st.Complete(ctx, id, first); !errors.Is(err, backends.ErrJobFailed) {
				t.Errorf("Complete on the failed legacy job: err = %v, want ErrJobFailed", err)
			}
			moved, err := st.Retry(ctx, id, []int64{first + 2})
			if err != nil || !reflect.DeepEqual(moved, []int64{first + 2}) {
				t.Fatalf("Retry = %v, %v", moved, err)
			}
			raw = rawItem(t, st, id)
			if !nsContains(raw, attrParts, first+2) || raw[attrError] != nil || raw[attrGivenUp] != nil {
				t.Errorf("legacy item after Retry = %v, want the part pending and no error", raw)
			}
			for p := first; p < first+5; p++ {
				c, err := st.Complete(ctx, id, p)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := c.Finisher, p == first+4; got != want {
					t.Errorf("Complete(%d).Finisher = %v, want %v", p, got, want)
				}
			}
		})
	}
}

// TestLegacy_Converted: a legacy job that tolerates given-up parts (its
// item carries wpTolLimit) converts a given-up part on a later completion.
func TestLegacy_Converted(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	putLegacy(t, st, "legacy-conv", seq(0, 2), 3, item{attrTolLimit: num(3)})
	if c, err := st.GiveUp(ctx, "legacy-conv", 1, backends.GiveUpInfo{}); err != nil || c.Failed {
		t.Fatalf("GiveUp = %+v, %v", c, err)
	}
	if c, err := st.GiveUp(ctx, "legacy-conv", 1, backends.GiveUpInfo{}); err != nil || !c.Duplicate {
		t.Fatalf("second GiveUp = %+v, %v; want Duplicate", c, err)
	}
	c, err := st.Complete(ctx, "legacy-conv", 1)
	if err != nil || c.Duplicate || c.Finisher {
		t.Fatalf("Complete of the given-up part = %+v, %v; want a conversion", c, err)
	}
	if s, err := st.Status(ctx, "legacy-conv"); err != nil || s.GivenUp != 0 || s.Remaining != 2 {
		t.Errorf("Status = %+v, %v", s, err)
	}
	if c, err := st.Complete(ctx, "legacy-conv", 1); err != nil || !c.Duplicate {
		t.Errorf("Complete again = %+v, %v; want Duplicate", c, err)
	}
}

// TestConsumedCapacity_GiveUp: a give-up costs a few write units; the
// completions of a job that has given-up parts still cost about one.
func TestConsumedCapacity_GiveUp(t *testing.T) {
	base, _ := newTable(t)
	st, meter := measured(t, base)
	ctx := testCtx(t)
	const total = 1000
	const id = "wcu-gu"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Metadata: []byte(`{"name":"some metadata"}`), Tolerance: backends.Tolerance{Parts: 100}}); err != nil {
		t.Fatal(err)
	}
	meter.reset()
	const n = 50
	for p := int64(0); p < n; p++ {
		if _, err := st.GiveUp(ctx, id, p*20, backends.GiveUpInfo{ExitCode: 1, Stderr: string(make([]byte, 400))}); err != nil {
			t.Fatal(err)
		}
	}
	wcu, _ := meter.get()
	t.Logf("give-up: %.2f WCU each", wcu/n)
	if per := wcu / n; per > 6 {
		t.Errorf("a give-up costs %.2f WCU, want a few", per)
	}
	meter.reset()
	done := 0
	for p := int64(0); p < total; p++ {
		if p%20 == 0 {
			continue
		}
		if _, err := st.Complete(ctx, id, p); err != nil {
			t.Fatal(err)
		}
		done++
	}
	wcu, _ = meter.get()
	t.Logf("%d completions of a job with %d given-up parts: %.4f WCU each", done, n, wcu/float64(done))
	if per := wcu / float64(done); per > 1.2 {
		t.Errorf("a completion costs %.3f WCU with given-up parts in the job, want about 1", per)
	}
}

// TestConsumedCapacity_MillionParts measures the write units per completion
// of a 1,000,000-part job with given-up parts, completing 20,000 parts from
// its middle as the bench harness's capped runs do. It takes a minute or
// two on dynalite, so it runs only with WP_DYNAMODB_MILLION=1.
func TestConsumedCapacity_MillionParts(t *testing.T) {
	if os.Getenv("WP_DYNAMODB_MILLION") == "" {
		t.Skip("set WP_DYNAMODB_MILLION=1 to run")
	}
	base, _ := newTable(t)
	st, meter := measured(t, base)
	ctx := testCtx(t)
	const total, n = 1_000_000, 20_000
	const id = "wcu-million"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 100}}); err != nil {
		t.Fatal(err)
	}
	const from = total/2 - n/2
	for p := int64(from - 100); p < from; p += 10 {
		if _, err := st.GiveUp(ctx, id, p, backends.GiveUpInfo{ExitCode: 1}); err != nil {
			t.Fatal(err)
		}
	}
	meter.reset()
	var next atomic.Int64
	next.Store(from)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	start := time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := next.Add(1) - 1
				if p >= from+n {
					return
				}
				if _, err := st.Complete(ctx, id, p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wcu, _ := meter.get()
	t.Logf("1,000,000 parts (10 given up): %d completions in %v, %.4f WCU each", n, time.Since(start).Round(time.Millisecond), wcu/n)
	if per := wcu / n; per > 1.2 {
		t.Errorf("%.3f WCU per completion at 1,000,000 parts, want about 1", per)
	}
}

// TestGiveUp_DiedBeforeCounting: a GiveUp whose process died after its
// shard write and before counting the part: right after, a completion of
// the part waits for the count rather than convert behind the GiveUp's back;
// once the shard has been still for repairAfter, a duplicate give-up counts
// it and a completion converts it.
func TestGiveUp_DiedBeforeCounting(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "died"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 10, Tolerance: backends.Tolerance{Parts: 5}}); err != nil {
		t.Fatal(err)
	}
	died := func(part int64) {
		t.Helper()
		if _, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName:                 aws.String(st.table),
			Key:                       key(shardKey(id, 0)),
			UpdateExpression:          aws.String("DELETE #parts :p ADD #gu :p SET #t = :now"),
			ExpressionAttributeNames:  names(attrParts, attrGU, attrT),
			ExpressionAttributeValues: item{":p": numSet(part), ":now": num(st.nowMS())},
		}); err != nil {
			t.Fatal(err)
		}
	}
	died(3)
	if s, err := st.Status(ctx, id); err != nil || s.Remaining != 9 || s.GivenUp != 0 {
		t.Fatalf("Status = %+v, %v; want 9 remaining and nothing counted", s, err)
	}
	// A duplicate give-up right away: the giver may still be at work.
	if c, err := st.GiveUp(ctx, id, 3, backends.GiveUpInfo{}); err != nil || !c.Duplicate {
		t.Fatalf("GiveUp = %+v, %v; want Duplicate", c, err)
	}
	if s, _ := st.Status(ctx, id); s.GivenUp != 0 {
		t.Errorf("a duplicate right after counted the part (GivenUp %d): it could overtake a live GiveUp", s.GivenUp)
	}
	// Time passes: the duplicate counts it.
	st.now = func() time.Time { return time.Now().Add(st.repairAfter + time.Second) }
	if c, err := st.GiveUp(ctx, id, 3, backends.GiveUpInfo{}); err != nil || !c.Duplicate {
		t.Fatalf("GiveUp = %+v, %v; want Duplicate", c, err)
	}
	if s, _ := st.Status(ctx, id); s.GivenUp != 1 {
		t.Errorf("GivenUp = %d after the late duplicate, want 1", s.GivenUp)
	}
	// Another died give-up, converted by a completion once still.
	st.now = time.Now
	died(4)
	st.now = func() time.Time { return time.Now().Add(st.repairAfter + time.Second) }
	c, err := st.Complete(ctx, id, 4)
	if err != nil || c.Duplicate || c.Finisher {
		t.Fatalf("Complete of the uncounted given-up part = %+v, %v; want a conversion", c, err)
	}
	s, err := st.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.GivenUp != 1 || s.Remaining != 8 {
		t.Errorf("Status = %+v, want 1 given up (part 3), 8 remaining", s)
	}
}

// TestGiveUp_IndexFull: the job item's given-up index lists at most
// wpGivenUpMax parts, the room DynamoDB's 400 KB item limit leaves (with and
// without large metadata); the give-up that finds it full fails the job
// with a reason that says so, and the item still takes that write. The
// room is near the real limit: a few more ids than the reserve's worth do
// not fit.
func TestGiveUp_IndexFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta string
	}{
		{"NoMetadata", ""},
		{"LargeMetadata", `{"blob":"` + strings.Repeat("m", 200*1024) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newTable(t)
			ctx := testCtx(t)
			const id = "gu-full"
			const total = 1_000_000
			job := backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10_000}}
			if tc.meta != "" {
				job.Metadata = json.RawMessage(tc.meta)
			}
			if err := st.CreateJob(ctx, job); err != nil {
				t.Fatal(err)
			}
			room, ok := getNum(rawItem(t, st, id), attrGivenUpMax)
			if !ok || room < 1000 {
				t.Fatalf("wpGivenUpMax = %d (%v), want room for a thousand ids at least", room, ok)
			}
			t.Logf("the job item may list %d given-up parts", room)
			// Fill the index to one short of its room with ids from
			// the top of the job.
			add := indexFiller(ctx, st, id, total-1)
			if err := add(room - 1); err != nil {
				t.Fatalf("fill the index with %d ids: %v", room-1, err)
			}
			info := backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10, At: time.Now()}
			if c, err := st.GiveUp(ctx, id, 5, info); err != nil || c.Failed {
				t.Fatalf("GiveUp into the index's last place = %+v, %v; want counted", c, err)
			}
			c, err := st.GiveUp(ctx, id, 6, info)
			if err != nil {
				t.Fatalf("GiveUp past the full index: %v", err)
			}
			if !c.Failed {
				t.Errorf("GiveUp = %+v, want Failed: the part could not be counted", c)
			}
			s, err := st.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			const want = "more parts given up than a DynamoDB job item can list (part 6 was the first not counted)"
			if !s.Failed || s.Error != want {
				t.Errorf("Status: failed %v, error %q; want failed with %q", s.Failed, s.Error, want)
			}
			if sh := rawItem(t, st, shardKey(id, 0)); !nsContains(sh, attrGU, 6) {
				t.Errorf("shard 0 = %v, want part 6 given up on it", sh)
			}
			if _, err := st.Complete(ctx, id, 7); !errors.Is(err, backends.ErrJobFailed) {
				t.Errorf("Complete after the job failed: %v, want ErrJobFailed", err)
			}
			// Twice the reserve's worth of ids (4 bytes each here)
			// does not fit: the room is not far below the limit.
			if err := add(2 * givenUpReserve / 4); !tooLarge(err) {
				t.Errorf("adding %d more ids to the full index: %v; want the item too large", 2*givenUpReserve/4, err)
			}
		})
	}
}

// indexFiller returns a function that adds n part ids to job id's given-up
// index, counting down from top, straight on the job item.
func indexFiller(ctx context.Context, st *Store, id string, top int64) func(n int64) error {
	next := top
	return func(n int64) error {
		for n > 0 {
			c := min(n, 4096)
			ps := make([]int64, c)
			for i := range ps {
				ps[i] = next - int64(i)
			}
			_, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
				TableName:                 aws.String(st.table),
				Key:                       key(id),
				UpdateExpression:          aws.String("ADD #wpGivenUp :p"),
				ExpressionAttributeNames:  names(attrGivenUp),
				ExpressionAttributeValues: item{":p": numSet(ps...)},
			})
			if err != nil {
				return err
			}
			next -= c
			n -= c
		}
		return nil
	}
}

// TestGiveUp_IndexFullRepair: a give-up whose process died before counting
// its part, repaired by a later delivery when the index is full, fails the
// job as the live give-up would (not an error on every delivery).
func TestGiveUp_IndexFullRepair(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "gu-full-repair"
	const total = 1_000_000
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10_000}}); err != nil {
		t.Fatal(err)
	}
	room, _ := getNum(rawItem(t, st, id), attrGivenUpMax)
	if err := indexFiller(ctx, st, id, total-1)(room); err != nil {
		t.Fatal(err)
	}
	// Part 3 given up on its shard, never counted: its giver died.
	if _, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(shardKey(id, 0)),
		UpdateExpression:          aws.String("DELETE #parts :p ADD #gu :p SET #t = :now"),
		ExpressionAttributeNames:  names(attrParts, attrGU, attrT),
		ExpressionAttributeValues: item{":p": numSet(3), ":now": num(st.nowMS())},
	}); err != nil {
		t.Fatal(err)
	}
	st.now = func() time.Time { return time.Now().Add(st.repairAfter + time.Second) }
	c, err := st.GiveUp(ctx, id, 3, backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10})
	if err != nil {
		t.Fatalf("duplicate GiveUp repairing the count on a full index: %v", err)
	}
	if !c.Duplicate || !c.Failed {
		t.Errorf("GiveUp = %+v, want a duplicate that failed the job", c)
	}
	s, err := st.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "more parts given up than a DynamoDB job item can list (part 3 was the first not counted)"; !s.Failed || s.Error != want {
		t.Errorf("Status: failed %v, error %q; want %q", s.Failed, s.Error, want)
	}
}
