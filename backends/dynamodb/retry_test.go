package dynamodb

import (
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

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
