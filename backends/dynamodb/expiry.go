package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/wp-tools/wp/backends"
)

// ShardSize is how many consecutive parts share a shard item: a
// CompleteParts of parts of one shard is one write.
func (st *Store) ShardSize() int64 { return shardSize }

// SetExpiry writes wpExpires (unix seconds; removed for zero) on every item
// of the job: its job item, shard and group items, and the details items of
// its given-up parts. One write an item: about total/256 + total/65536 +
// given-up parts + the job item's size in KB write units (3,924 for a
// 1,000,000-part job). The order keeps a job whole whatever is interrupted:
// an earlier expiry is written on the job item first (the job is gone at
// once for a time past, and an interrupted call leaves items that outlive
// the job, which their own expiry or a CreateJob of the id removes), a later
// one or none on the other items first (so that the time to live never
// deletes a shard of a job that lives on). Writes refused for throughput
// are tried again, for minutes: on a table of 30 write units a job of a
// million parts takes two minutes or so.
func (st *Store) SetExpiry(ctx context.Context, jobID string, at time.Time) error {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return err
	}
	var sec int64
	if !at.IsZero() {
		sec = at.Unix()
	}
	update, vals := "SET #wpExpires = :x", item{":x": num(sec)}
	if sec == 0 {
		update, vals = "REMOVE #wpExpires", nil
	}
	var keys []string
	if !j.legacy {
		for s := int64(0); s < j.shards; s++ {
			keys = append(keys, shardKey(jobID, s))
		}
		for g := int64(0); g < ceilDiv(j.shards, groupSize); g++ {
			keys = append(keys, groupKey(jobID, g))
		}
	}
	gaveUp, _ := getNS(j.raw, attrGivenUp)
	for _, p := range gaveUp {
		keys = append(keys, detailsKey(jobID, p))
	}
	others := func() error {
		if err := st.updateShards(ctx, keys, update, "attribute_exists(#id)", names(attrExpires, attrID), vals); err != nil {
			return fmt.Errorf("run it again to finish: %w", err)
		}
		return nil
	}
	onJob := func() error {
		ok, err := st.updateJob(ctx, "set expiry", jobID, update, "", names(attrExpires), vals)
		if err == nil && !ok {
			return fmt.Errorf("the job changed meanwhile: %w", backends.ErrNotFound)
		}
		return err
	}
	if sec != 0 && (j.expires == 0 || sec < j.expires) {
		if err := onJob(); err != nil {
			return err
		}
		return others()
	}
	if err := others(); err != nil {
		return err
	}
	return onJob()
}
