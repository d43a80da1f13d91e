package dynamodb

import (
	"errors"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// jobKeys lists every item of a wp job of total parts and its given-up
// parts.
func jobKeys(id string, total int64, gaveUp ...int64) []string {
	keys := []string{id}
	shards := ceilDiv(total, shardSize)
	for s := int64(0); s < shards; s++ {
		keys = append(keys, shardKey(id, s))
	}
	for g := int64(0); g < ceilDiv(shards, groupSize); g++ {
		keys = append(keys, groupKey(id, g))
	}
	for _, p := range gaveUp {
		keys = append(keys, detailsKey(id, p))
	}
	return keys
}

// TestExpiry_EveryItem: wpExpires is on every item of a job with an
// expiry, the details of a part given up later included; SetExpiry
// rewrites it on each, one write an item, and removes it for never.
func TestExpiry_EveryItem(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	const id = "exp"
	const total = 70_000 // 274 shards, 2 groups
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, ExpireAfter: time.Hour, Tolerance: backends.Tolerance{Parts: 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, id, 300, backends.GiveUpInfo{ExitCode: 1, Reason: "dead-lettered"}); err != nil {
		t.Fatal(err)
	}
	s, err := st.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	keys := jobKeys(id, total, 300)
	expect := func(what string, want int64) {
		t.Helper()
		for _, k := range keys {
			got, ok := getNum(rawItem(t, st, k), attrExpires)
			if (want == 0 && ok) || (want != 0 && got != want) {
				t.Errorf("%s: %s wpExpires = %d (%v), want %d", what, k, got, ok, want)
				return
			}
		}
	}
	expect("created with ExpireAfter", s.ExpiresAt.Unix())
	if got := parseDetails(rawItem(t, st, detailsKey(id, 300))).Reason; got != "dead-lettered" {
		t.Errorf("details reason = %q", got)
	}
	later := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	p.Reset()
	if err := st.SetExpiry(ctx, id, later); err != nil {
		t.Fatal(err)
	}
	n, _, wcu := opUnits(p, "UpdateItem")
	t.Logf("SetExpiry of a %d-part job (%d items): %d UpdateItem, %.0f WCU", total, len(keys), n, wcu)
	if n != len(keys) {
		t.Errorf("SetExpiry made %d writes, want %d (one an item)", n, len(keys))
	}
	// A later expiry: the job item is written last, so that no shard of a
	// job that lives on can expire first.
	if calls := p.CallsOf("UpdateItem"); len(calls) > 0 {
		var last struct{ Key map[string]map[string]string }
		if err := calls[len(calls)-1].Decode(&last); err != nil || last.Key["id"]["S"] != id {
			t.Errorf("the last write of a later expiry is to %v (%v), want the job item", last.Key, err)
		}
	}
	expect("after SetExpiry", later.Unix())
	if err := st.SetExpiry(ctx, id, time.Time{}); err != nil {
		t.Fatal(err)
	}
	expect("after SetExpiry(never)", 0)
	// An earlier one: the job item first.
	p.Reset()
	if err := st.SetExpiry(ctx, id, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	var first struct{ Key map[string]map[string]string }
	if calls := p.CallsOf("UpdateItem"); len(calls) == 0 || calls[0].Decode(&first) != nil || first.Key["id"]["S"] != id {
		t.Errorf("the first write of an earlier expiry is to %v, want the job item", first.Key)
	}
	if _, err := st.Complete(ctx, id, 7); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Complete of the expired job: %v, want ErrNotFound", err)
	}
	if err := st.Fail(ctx, id, "x"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Fail of the expired job: %v, want ErrNotFound", err)
	}
}

// TestExpiry_CreateOverLarger: CreateJob of the id of an expired job of
// more parts removes what the old job left: its shards and groups beyond
// the new job's, the details of its given-up parts.
func TestExpiry_CreateOverLarger(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	const id = "reuse"
	const oldTotal = 70_000
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: oldTotal, Tolerance: backends.Tolerance{Parts: 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GiveUp(ctx, id, 69_999, backends.GiveUpInfo{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetExpiry(ctx, id, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 300}); err != nil {
		t.Fatalf("CreateJob of an expired id: %v", err)
	}
	s, err := st.Status(ctx, id)
	if err != nil || s.Total != 300 || s.Remaining != 300 || s.GivenUp != 0 || !s.ExpiresAt.IsZero() {
		t.Fatalf("the new job = %+v, %v", s, err)
	}
	for _, k := range []string{shardKey(id, 2), shardKey(id, 273), groupKey(id, 1), detailsKey(id, 69_999)} {
		if it := rawItem(t, st, k); it != nil {
			t.Errorf("%s of the expired job is still there", k)
		}
	}
	for _, k := range jobKeys(id, 300) {
		if _, ok := rawItem(t, st, k)[attrExpires]; ok {
			t.Errorf("%s of the new job has the old expiry", k)
		}
	}
}
