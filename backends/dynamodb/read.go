package dynamodb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// Status reads the job item and, for a wp job, its pending groups and their
// pending shards (BatchGetItem, 100 keys a call, in parallel): Remaining is
// exact.
func (st *Store) Status(ctx context.Context, jobID string) (backends.Status, error) {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return backends.Status{}, err
	}
	rem, err := st.remaining(ctx, []*jobItem{j})
	if err != nil {
		return backends.Status{}, err
	}
	return st.toStatus(ctx, j, rem[j.id])
}

func (st *Store) toStatus(ctx context.Context, j *jobItem, remaining int64) (backends.Status, error) {
	s := backends.Status{
		ID:         j.id,
		Total:      j.total,
		Remaining:  remaining,
		Failed:     j.failed,
		Error:      j.errMsg,
		ReduceSent: j.reduceSent,
		Reduced:    j.reduced,

		GivenUp:           nsLen(j.raw, attrGivenUp),
		Tolerance:         j.tolerance,
		ReduceOnFailure:   j.rof,
		Digest:            j.digest,
		FailedByTolerance: j.tolFailed,
	}
	if m, ok := j.raw[attrMetadata]; ok {
		b, err := avToJSON(m)
		if err != nil {
			return s, fmt.Errorf("metadata of %s: %w", j.id, err)
		}
		s.Metadata = b
	}
	if _, guarded := j.raw[attrParts]; !j.legacy && !guarded {
		st.guardLayout1(ctx, j.id)
	}
	if j.legacy {
		var known bool
		s.FirstPart, known = st.firstPart(ctx, j)
		s.EitherNumbering = !known
	} else if j.created > 0 {
		s.CreatedAt = time.UnixMilli(j.created)
	}
	return s, nil
}

// remaining counts the pending parts of each job (by id). Legacy jobs count
// their parts set; wp jobs read their pending groups, then those groups'
// pending shards, batching the keys of all the jobs together.
func (st *Store) remaining(ctx context.Context, jobs []*jobItem) (map[string]int64, error) {
	rem := make(map[string]int64, len(jobs))
	type ref struct {
		j   *jobItem
		key string
		n   int64 // group or shard number
	}
	var groups []ref
	for _, j := range jobs {
		if j.legacy {
			rem[j.id] = nsLen(j.raw, attrParts)
			continue
		}
		rem[j.id] = 0
		gs, _ := getNS(j.raw, attrGroups)
		for _, g := range gs {
			groups = append(groups, ref{j, groupKey(j.id, g), g})
		}
	}
	if len(groups) == 0 {
		return rem, nil
	}
	keys := make([]string, len(groups))
	for i, r := range groups {
		keys[i] = r.key
	}
	grps, err := st.getMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	var shards []ref
	for _, r := range groups {
		offs, _ := getNS(grps[r.key], attrLeft)
		for _, off := range offs {
			s := r.n*r.j.groupSize + off
			shards = append(shards, ref{r.j, shardKey(r.j.id, s), s})
		}
	}
	keys = make([]string, len(shards))
	for i, r := range shards {
		keys[i] = r.key
	}
	items, err := st.getMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, r := range shards {
		rem[r.j.id] += nsLen(items[r.key], attrParts)
	}
	return rem, nil
}

// pendingShards lists the keys of a wp job's shard items that its pending
// groups still list.
func (st *Store) pendingShards(ctx context.Context, j *jobItem) ([]string, error) {
	gs, _ := getNS(j.raw, attrGroups)
	keys := make([]string, len(gs))
	for i, g := range gs {
		keys[i] = groupKey(j.id, g)
	}
	grps, err := st.getMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, g := range gs {
		offs, _ := getNS(grps[keys[i]], attrLeft)
		for _, off := range offs {
			out = append(out, shardKey(j.id, g*j.groupSize+off))
		}
	}
	return out, nil
}

// getMany reads items by id with BatchGetItem (100 keys a call, strongly
// consistent, batchWorkers calls in flight). Missing items are absent from
// the result.
func (st *Store) getMany(ctx context.Context, ids []string) (map[string]item, error) {
	out := make(map[string]item, len(ids))
	var mu sync.Mutex
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	chunks := make(chan []string)
	var wg sync.WaitGroup
	for w := 0; w < min(batchWorkers, (len(ids)+99)/100); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range chunks {
				items, err := st.batchGet(ctx, chunk)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				for _, it := range items {
					out[getStr(it, attrID)] = it
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := 0; i < len(ids); i += 100 {
		select {
		case chunks <- ids[i:min(i+100, len(ids))]:
		case <-ctx.Done():
			break feed
		}
	}
	close(chunks)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// batchGet reads up to 100 items, retrying unprocessed keys with backoff.
func (st *Store) batchGet(ctx context.Context, ids []string) ([]item, error) {
	keys := make([]item, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	req := map[string]types.KeysAndAttributes{st.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
	var items []item
	backoff := 20 * time.Millisecond
	for round := 0; len(req) > 0; round++ {
		if round == 12 {
			return nil, fmt.Errorf("batch get: keys still unprocessed after %d rounds (table throttled?)", round)
		}
		if round > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		out, err := st.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return nil, st.wrap("batch get", err)
		}
		items = append(items, out.Responses[st.table]...)
		req = out.UnprocessedKeys
	}
	return items, nil
}

// Pending streams the pending part ids in ascending order: group by group,
// and within a group 100 shards at a time.
func (st *Store) Pending(ctx context.Context, jobID string, fn func(part int64) error) error {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return err
	}
	if j.legacy {
		// Legacy jobs hold at most ~105,000 ids in one item, read whole.
		st.firstPart(ctx, j)
		parts, _ := getNS(j.raw, attrParts)
		for _, p := range parts {
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	groups, _ := getNS(j.raw, attrGroups)
	for _, g := range groups {
		grp, err := st.getItem(ctx, groupKey(jobID, g), "", nil)
		if err != nil {
			return err
		}
		offs, _ := getNS(grp, attrLeft)
		for i := 0; i < len(offs); i += 100 {
			chunk := offs[i:min(i+100, len(offs))]
			keys := make([]string, len(chunk))
			for k, off := range chunk {
				keys[k] = shardKey(jobID, g*j.groupSize+off)
			}
			shards, err := st.getMany(ctx, keys)
			if err != nil {
				return err
			}
			for k, off := range chunk {
				s := g*j.groupSize + off
				parts, _ := getNS(shards[keys[k]], attrParts)
				for _, p := range parts {
					if err := fn(s*j.shardSize + p); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// List scans the whole table page by page (1 MB a page, following
// LastEvaluatedKey to the end), keeps the job items (wp's and legacy ones;
// shard and group items have no total), and computes Remaining for each
// page's jobs with batched reads. Memory is bounded by one page.
func (st *Store) List(ctx context.Context, _ backends.ListOptions, fn func(backends.Status) error) error {
	var start item
	for {
		out, err := st.db.Scan(ctx, &ddb.ScanInput{
			TableName:                aws.String(st.table),
			ConsistentRead:           aws.Bool(true),
			ExclusiveStartKey:        start,
			FilterExpression:         aws.String("attribute_exists(#total) AND attribute_not_exists(#creating)"),
			ExpressionAttributeNames: names(attrTotal, attrCreating),
		})
		if err != nil {
			return st.wrap("list jobs", err)
		}
		var jobs []*jobItem
		for _, it := range out.Items {
			if j, ok := parseJob(it); ok && j.visible() {
				jobs = append(jobs, j)
			}
		}
		rem, err := st.remaining(ctx, jobs)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			s, err := st.toStatus(ctx, j, rem[j.id])
			if err != nil {
				return err
			}
			if err := fn(s); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

// guardLayout1 adds the parts guard (see the package comment) to a job of
// layout 1, which was written without it, so that old workers handed its
// messages from now on fail as they do on a job of layout 2. One write,
// once per job, by the first wp command that reads it; best effort, like
// noteFirstPart. The job keeps layout 1's reduce flag.
func (st *Store) guardLayout1(ctx context.Context, id string) {
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET #parts = :guard"),
		ConditionExpression:       aws.String("attribute_exists(#wp) AND attribute_not_exists(#parts)"),
		ExpressionAttributeNames:  names(attrParts, attrWP),
		ExpressionAttributeValues: item{":guard": partsGuard},
	})
}
