package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

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
