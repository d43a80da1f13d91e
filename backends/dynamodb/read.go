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

// reads shapes and meters the reads of one call: strongly consistent, or
// eventually consistent (half the read units) when the caller allows stale
// reads (backends.AllowStale), and the read units they consumed
// (ReturnConsumedCapacity TOTAL), for Status.ReadUnits.
type reads struct {
	consistent bool
	mu         sync.Mutex
	units      float64
}

func newReads(ctx context.Context) *reads {
	return &reads{consistent: !backends.StaleAllowed(ctx)}
}

func (r *reads) add(cc ...types.ConsumedCapacity) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cc {
		if c.CapacityUnits != nil {
			r.units += *c.CapacityUnits
		}
	}
}

func (r *reads) total() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.units
}

// consistentRead: nil reads are the strongly consistent, unmetered reads
// of writers.
func (r *reads) consistentRead() bool { return r == nil || r.consistent }

// readItem reads one item as r says; nil when absent.
func (st *Store) readItem(ctx context.Context, id string, r *reads) (item, error) {
	in := &ddb.GetItemInput{TableName: aws.String(st.table), Key: key(id), ConsistentRead: aws.Bool(r.consistentRead())}
	if r != nil {
		in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
	}
	out, err := st.db.GetItem(ctx, in)
	if err != nil {
		return nil, st.wrap("read "+id, err)
	}
	if out.ConsumedCapacity != nil {
		r.add(*out.ConsumedCapacity)
	}
	return out.Item, nil
}

// readJob reads a visible job item as r says (nil: strongly consistent, as
// getJob); ErrNotFound when there is none.
func (st *Store) readJob(ctx context.Context, id string, r *reads) (*jobItem, error) {
	if id == "" {
		return nil, fmt.Errorf("job id is empty: %w", backends.ErrNotFound)
	}
	it, err := st.readItem(ctx, id, r)
	if err != nil {
		return nil, err
	}
	j, ok := parseJob(it)
	if !ok || !j.visible() || j.expired(st.nowMS()) {
		return nil, backends.ErrNotFound
	}
	if !j.legacy {
		st.totals.put(id, j.total)
	}
	return j, nil
}

// Status reads the job item, then its pending groups, then only their
// pending shards (BatchGetItem, 100 keys a call, in parallel): Remaining is
// exact, LastEnded the latest end any of them saw, RecentEnded the sum of
// their counters of the window. Eventually consistent with AllowStale.
func (st *Store) Status(ctx context.Context, jobID string) (backends.Status, error) {
	r := newReads(ctx)
	j, err := st.readJob(ctx, jobID, r)
	if err != nil {
		return backends.Status{}, err
	}
	p, err := st.progressOf(ctx, []*jobItem{j}, r, true)
	if err != nil {
		return backends.Status{}, err
	}
	s, err := st.toStatus(ctx, j, p[j.id], statusWrites)
	s.ReadUnits = r.total()
	return s, err
}

// progress is what a read of a job's items says of its parts.
type progress struct {
	remaining int64
	estimated bool
	ended     int64    // unix ms: the latest end the items read saw
	cs        counters // every counter read
	counted   bool     // every counter of the job was read: the recent count is exact
}

// jobProgress is what the job item alone says: exact for a legacy job and a
// finished wp job, an estimate from its groups otherwise.
func jobProgress(j *jobItem, partial bool) *progress {
	if j.legacy {
		return &progress{remaining: nsLen(j.raw, attrParts)}
	}
	p := &progress{ended: j.ended, cs: countersOf(j.raw, jobCounterPrefix), counted: !j.groupsLeft && !partial}
	if j.groupsLeft {
		gs, _ := getNS(j.raw, attrGroups)
		p.remaining = min(j.total, max(1, int64(len(gs))*j.groupSize*j.shardSize))
		p.estimated = true
	}
	return p
}

// progressOf reads the pending groups of the wp jobs among jobs (batching
// the keys of all of them), and with shards their pending shards too:
// Remaining is then exact, otherwise estimated from the groups (each shard a
// group lists as pending counted whole). Legacy jobs count their parts set.
// partial items (the wp-jobs index's projection) lack the job's counters.
func (st *Store) progressOf(ctx context.Context, jobs []*jobItem, r *reads, shards bool) (map[string]*progress, error) {
	return st.progressOfItems(ctx, jobs, r, shards, false)
}

func (st *Store) progressOfItems(ctx context.Context, jobs []*jobItem, r *reads, shards, partial bool) (map[string]*progress, error) {
	out := make(map[string]*progress, len(jobs))
	type ref struct {
		j   *jobItem
		key string
		n   int64 // group or shard number
	}
	var groups []ref
	for _, j := range jobs {
		p := jobProgress(j, partial)
		out[j.id] = p
		if j.legacy || !j.groupsLeft {
			continue
		}
		p.remaining = 0
		gs, _ := getNS(j.raw, attrGroups)
		for _, g := range gs {
			groups = append(groups, ref{j, groupKey(j.id, g), g})
		}
	}
	if len(groups) == 0 {
		return out, nil
	}
	keys := make([]string, len(groups))
	for i, g := range groups {
		keys[i] = g.key
	}
	grps, err := st.getManyR(ctx, keys, r)
	if err != nil {
		return nil, err
	}
	var pending []ref
	for _, g := range groups {
		p, grp := out[g.j.id], grps[g.key]
		if t, _ := getNum(grp, attrT); t > p.ended {
			p.ended = t
		}
		p.cs.plus(countersOf(grp, shardCounterPrefix))
		offs, _ := getNS(grp, attrLeft)
		for _, off := range offs {
			s := g.n*g.j.groupSize + off
			pending = append(pending, ref{g.j, shardKey(g.j.id, s), s})
		}
	}
	if !shards {
		for _, s := range pending {
			out[s.j.id].remaining += min(s.j.shardSize, s.j.total-s.n*s.j.shardSize)
		}
		for _, j := range jobs {
			if p := out[j.id]; !j.legacy && j.groupsLeft && p.remaining < 1 {
				p.remaining = 1 // a group emptying right now: Remaining is 0 only once the job says so
			}
		}
		return out, nil
	}
	keys = make([]string, len(pending))
	for i, s := range pending {
		keys[i] = s.key
	}
	items, err := st.getManyR(ctx, keys, r)
	if err != nil {
		return nil, err
	}
	for _, s := range pending {
		p, sh := out[s.j.id], items[s.key]
		p.remaining += nsLen(sh, attrParts)
		if t, _ := getNum(sh, attrT); t > p.ended {
			p.ended = t
		}
		p.cs.plus(countersOf(sh, shardCounterPrefix))
	}
	for _, j := range jobs {
		if p := out[j.id]; !j.legacy && j.groupsLeft {
			p.estimated, p.counted = false, !partial
		}
	}
	return out, nil
}

// writePolicy says which best-effort writes a read may make on the job item
// it read (see toStatus).
type writePolicy int

const (
	// noWrites: the item read is the index's projection, not the item.
	noWrites writePolicy = iota
	// listWrites: the numbering of a legacy job and the guard of a
	// layout 1 job, as every listing always recorded them.
	listWrites
	// statusWrites: those, and the wp-jobs index keys of a job that lacks
	// them (Peek, Status).
	statusWrites
)

func (st *Store) toStatus(ctx context.Context, j *jobItem, p *progress, writes writePolicy) (backends.Status, error) {
	s := backends.Status{
		ID:         j.id,
		Total:      j.total,
		Remaining:  p.remaining,
		Estimated:  p.estimated,
		Failed:     j.failed,
		Error:      j.errMsg,
		ReduceSent: j.reduceSent,
		Reduced:    j.reduced,

		GivenUp:           nsLen(j.raw, attrGivenUp),
		Tolerance:         j.tolerance,
		ReduceOnFailure:   j.rof,
		Digest:            j.digest,
		FailedByTolerance: j.tolFailed,
		Batch:             int(j.batch),
		BatchBytes:        int(j.batchBytes),
	}
	if j.expires > 0 {
		s.ExpiresAt = time.Unix(j.expires, 0)
	}
	if p.ended > 0 {
		s.LastEnded = time.UnixMilli(p.ended)
	}
	if p.counted {
		s.RecentEnded, s.RecentWindow = recentOf(p.cs, st.now(), j.created)
	}
	if m, ok := j.raw[attrMetadata]; ok {
		b, err := avToJSON(m)
		if err != nil {
			return s, fmt.Errorf("metadata of %s: %w", j.id, err)
		}
		s.Metadata = b
	}
	wrote := false
	if _, guarded := j.raw[attrParts]; !j.legacy && !guarded && writes >= listWrites {
		st.guardLayout1(ctx, j)
		wrote = true
	}
	if j.legacy {
		var known bool
		s.FirstPart, known = legacyFirstPart(j)
		if _, recorded := j.raw[attrFirstPart]; known && !recorded && writes >= listWrites {
			st.noteFirstPart(ctx, j.id, j.total, s.FirstPart)
			wrote = true
		}
		s.EitherNumbering = !known
	} else if j.created > 0 {
		s.CreatedAt = time.UnixMilli(j.created)
	}
	if !wrote && writes >= statusWrites {
		st.noteListed(ctx, j)
	}
	return s, nil
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
	return st.getManyR(ctx, ids, nil)
}

// getManyR is getMany with reads as r says.
func (st *Store) getManyR(ctx context.Context, ids []string, r *reads) (map[string]item, error) {
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
				items, err := st.batchGet(ctx, chunk, r)
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
func (st *Store) batchGet(ctx context.Context, ids []string, r *reads) ([]item, error) {
	keys := make([]item, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	req := map[string]types.KeysAndAttributes{st.table: {Keys: keys, ConsistentRead: aws.Bool(r.consistentRead())}}
	var items []item
	backoff := 20 * time.Millisecond
	for round := 0; len(req) > 0; round++ {
		if round == 12 {
			return nil, fmt.Errorf("batch get: keys still unprocessed after %d rounds: %w", round, backends.ErrThrottled)
		}
		if round > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		in := &ddb.BatchGetItemInput{RequestItems: req}
		if r != nil {
			in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		}
		out, err := st.db.BatchGetItem(ctx, in)
		if err != nil {
			return nil, st.wrap("batch get", err)
		}
		r.add(out.ConsumedCapacity...)
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

// guardLayout1 adds the parts guard (see the package comment) to a job of
// layout 1, which was written without it, so that old workers handed its
// messages from now on fail as they do on a job of layout 2. One write,
// once per job, by the first wp command that reads it; best effort, like
// noteFirstPart. The job keeps layout 1's reduce flag.
func (st *Store) guardLayout1(ctx context.Context, j *jobItem) {
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(j.id),
		UpdateExpression:          aws.String("SET #parts = :guard, #wpList = :jobs, #wpListed = :at"),
		ConditionExpression:       aws.String("attribute_exists(#wp) AND attribute_not_exists(#parts)"),
		ExpressionAttributeNames:  names(attrParts, attrWP, attrList, attrListed),
		ExpressionAttributeValues: item{":guard": partsGuard, ":jobs": str(listKey), ":at": num(j.created)},
	})
}
