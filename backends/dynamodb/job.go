package dynamodb

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"

	"github.com/wp-tools/wp/backends"
)

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func (st *Store) nowMS() int64 { return st.now().UnixMilli() }

// getItem reads one item with a strongly consistent read; nil when absent.
func (st *Store) getItem(ctx context.Context, id string, proj string, nm map[string]string) (item, error) {
	in := &ddb.GetItemInput{TableName: aws.String(st.table), Key: key(id), ConsistentRead: aws.Bool(true)}
	if proj != "" {
		in.ProjectionExpression = aws.String(proj)
		in.ExpressionAttributeNames = nm
	}
	out, err := st.db.GetItem(ctx, in)
	if err != nil {
		return nil, st.wrap("read "+id, err)
	}
	return out.Item, nil
}

// getJob reads a visible job item, strongly consistent; ErrNotFound when
// there is none.
func (st *Store) getJob(ctx context.Context, id string) (*jobItem, error) {
	return st.readJob(ctx, id, nil)
}

// CreateJob writes the job item in the creating state, then its shard and
// group items, then makes it visible (see the package comment).
func (st *Store) CreateJob(ctx context.Context, job backends.Job) error {
	if job.Total < 1 || job.Total > maxTotal {
		return fmt.Errorf("total %d parts: want 1 to %d", job.Total, int64(maxTotal))
	}
	var meta types.AttributeValue
	if len(job.Metadata) > 0 {
		m, err := jsonToAV(job.Metadata)
		if err != nil {
			return err
		}
		if _, isNull := m.(*types.AttributeValueMemberNULL); !isNull {
			meta = m
		}
	}
	shards := ceilDiv(job.Total, shardSize)
	groups := ceilDiv(shards, groupSize)
	token := uuid.NewString()
	// The job is created now: its expiry counts from here, and the same
	// time is its created (and its place in the wp-jobs index) once it is
	// visible.
	created := st.nowMS()
	var expires int64
	if job.ExpireAfter > 0 {
		expires = backends.ExpirySecond(time.UnixMilli(created).Add(job.ExpireAfter)).Unix()
	}

	jobItem := func(extent int64) item {
		it := item{
			attrID:        str(job.ID),
			attrWP:        num(layoutVersion),
			attrTotal:     num(job.Total),
			attrShardSize: num(shardSize),
			attrGroupSize: num(groupSize),
			attrShards:    num(shards),
			attrExtent:    num(extent),
			attrGroups:    rangeSetInt64(groups),
			attrParts:     partsGuard,
			attrCreating:  str(token),
			attrLease:     num(st.nowMS() + st.lease.Milliseconds()),
		}
		if meta != nil {
			it[attrMetadata] = meta
		}
		// Tolerance and reduce on failure: only what differs from the
		// default, so the item of a plain job stays as it was.
		if job.Tolerance != (backends.Tolerance{}) {
			it[attrTolerance] = str(job.Tolerance.String())
			it[attrTolLimit] = num(job.Tolerance.Limit(job.Total))
		}
		if job.ReduceOnFailure {
			it[attrROF] = boolean(true)
		}
		if job.Digest != "" {
			it[attrDigest] = str(job.Digest)
		}
		if expires > 0 {
			it[attrExpires] = num(expires)
		}
		if job.Batch > 0 {
			it[attrBatch] = num(int64(job.Batch))
		}
		if job.BatchBytes > 0 {
			it[attrBatchBytes] = num(int64(job.BatchBytes))
		}
		if job.Tolerance != (backends.Tolerance{}) {
			// Last: the room left by everything above.
			it[attrGivenUpMax] = num(givenUpRoom(it, job.Total))
		}
		return it
	}

	// Claim the id, or take over an abandoned attempt.
	var oldExtent int64
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return fmt.Errorf("the id keeps changing hands (another CreateJob or Delete of it is running): %w", backends.ErrExists)
		}
		_, err := st.db.PutItem(ctx, &ddb.PutItemInput{
			TableName:                aws.String(st.table),
			Item:                     jobItem(shards),
			ConditionExpression:      aws.String("attribute_not_exists(#id)"),
			ExpressionAttributeNames: names(attrID),
		})
		if err == nil {
			break
		}
		if !isCondFailed(err) {
			st.releaseLease(ctx, job.ID, token) // the claim may have landed
			return st.wrap("create job "+job.ID, err)
		}
		it, err := st.getItem(ctx, job.ID, "", nil)
		if err != nil {
			return err
		}
		if it == nil {
			continue // deleted meanwhile
		}
		old, ok := parseJob(it)
		if ok && old.visible() && old.expired(st.nowMS()) {
			// An expired job is gone: its id is free. Take the item
			// over (on condition that it is still that job, with the
			// same expiry), and clean what the old job left as Delete
			// would: its shards and groups beyond the new job's are
			// deleted by writeJob (extent), those within it rewritten,
			// the details of its given-up parts deleted here.
			ext := max(shards, old.extent, old.shards)
			_, err = st.db.PutItem(ctx, &ddb.PutItemInput{
				TableName:                 aws.String(st.table),
				Item:                      jobItem(ext),
				ConditionExpression:       aws.String("#wpExpires = :oldExp AND attribute_not_exists(#creating)"),
				ExpressionAttributeNames:  names(attrExpires, attrCreating),
				ExpressionAttributeValues: item{":oldExp": num(old.expires)},
			})
			if isCondFailed(err) {
				continue // changed meanwhile: look again
			}
			if err != nil {
				st.releaseLease(ctx, job.ID, token)
				return st.wrap("create job "+job.ID, err)
			}
			gaveUp, _ := getNS(old.raw, attrGivenUp)
			if err := st.writeRange(ctx, 0, int64(len(gaveUp)), func(i int64) types.WriteRequest {
				return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(detailsKey(job.ID, gaveUp[i]))}}
			}); err != nil {
				st.releaseLease(ctx, job.ID, token)
				return fmt.Errorf("delete what the expired job left: %w", err)
			}
			oldExtent = ext
			break
		}
		if !ok || old.visible() {
			return backends.ErrExists
		}
		if old.lease > st.nowMS() {
			return fmt.Errorf("another process is creating or deleting it (if it died, retry after %v): %w", st.lease, backends.ErrExists)
		}
		ext := max(shards, old.extent, old.shards)
		_, err = st.db.PutItem(ctx, &ddb.PutItemInput{
			TableName:                 aws.String(st.table),
			Item:                      jobItem(ext),
			ConditionExpression:       aws.String("#creating = :old AND #lease = :oldLease"),
			ExpressionAttributeNames:  names(attrCreating, attrLease),
			ExpressionAttributeValues: item{":old": str(old.creating), ":oldLease": num(old.lease)},
		})
		if err == nil {
			oldExtent = ext
			break
		}
		if !isCondFailed(err) {
			st.releaseLease(ctx, job.ID, token) // the takeover may have landed
			return st.wrap("create job "+job.ID, err)
		}
	}

	err := st.writeJob(ctx, job.ID, token, job.Total, shards, groups, oldExtent, created, expires)
	if err != nil {
		st.releaseLease(ctx, job.ID, token)
		return err
	}
	st.totals.put(job.ID, job.Total)
	return nil
}

// releaseLease gives up the creating lease that token holds, if it holds
// one, so that a retry can take the job over at once instead of waiting for
// the lease to run out. It runs on a fresh, short context: it is called when
// ctx was cancelled or a write failed, including a claim whose answer was
// lost (the PutItem may have landed even though the client saw an error).
func (st *Store) releaseLease(ctx context.Context, id, token string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st.db.UpdateItem(rctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET #lease = :zero"),
		ConditionExpression:       aws.String("#creating = :tok"),
		ExpressionAttributeNames:  names(attrLease, attrCreating),
		ExpressionAttributeValues: item{":zero": num(0), ":tok": str(token)},
	})
}

var errLostLease = fmt.Errorf("another CreateJob took the job over while this one was writing it: %w", backends.ErrExists)

// writeJob writes the shard and group items (with the job's expiry, unix
// seconds, when it has one) under a renewed lease and makes the job visible,
// created at created (unix ms) and listed in the wp-jobs index.
func (st *Store) writeJob(ctx context.Context, id, token string, total, shards, groups, oldExtent, created, expires int64) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		tick := time.NewTicker(st.renew)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			_, err := st.db.UpdateItem(wctx, &ddb.UpdateItemInput{
				TableName:                 aws.String(st.table),
				Key:                       key(id),
				UpdateExpression:          aws.String("SET #lease = :lease"),
				ConditionExpression:       aws.String("#creating = :tok"),
				ExpressionAttributeNames:  names(attrLease, attrCreating),
				ExpressionAttributeValues: item{":lease": num(st.nowMS() + st.lease.Milliseconds()), ":tok": str(token)},
			})
			if isCondFailed(err) {
				cancel(errLostLease)
				return
			}
		}
	}()
	fail := func(err error) error {
		cancel(err)
		<-renewDone
		if c := context.Cause(wctx); c == errLostLease {
			return errLostLease
		}
		return err
	}

	// Leftovers of a larger abandoned attempt.
	if oldExtent > shards {
		oldGroups := ceilDiv(oldExtent, groupSize)
		err := st.writeRange(wctx, shards, oldExtent, func(s int64) types.WriteRequest {
			return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(shardKey(id, s))}}
		})
		if err == nil {
			err = st.writeRange(wctx, groups, oldGroups, func(g int64) types.WriteRequest {
				return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(groupKey(id, g))}}
			})
		}
		if err != nil {
			return fail(fmt.Errorf("delete what an abandoned CreateJob left: %w", err))
		}
	}
	full := rangeSet(shardSize)
	err := st.writeRange(wctx, 0, shards, func(s int64) types.WriteRequest {
		parts := full
		if n := total - s*shardSize; n < shardSize {
			parts = rangeSet(n)
		}
		it := item{attrID: str(shardKey(id, s)), attrParts: parts}
		if expires > 0 {
			it[attrExpires] = num(expires)
		}
		return types.WriteRequest{PutRequest: &types.PutRequest{Item: it}}
	})
	if err == nil {
		err = st.writeRange(wctx, 0, groups, func(g int64) types.WriteRequest {
			n := min(shards-g*groupSize, groupSize)
			it := item{attrID: str(groupKey(id, g)), attrLeft: rangeSet(n)}
			if expires > 0 {
				it[attrExpires] = num(expires)
			}
			return types.WriteRequest{PutRequest: &types.PutRequest{Item: it}}
		})
	}
	if err != nil {
		return fail(fmt.Errorf("write parts: %w", err))
	}
	cancel(nil)
	<-renewDone
	if context.Cause(wctx) == errLostLease {
		return errLostLease
	}
	_, err = st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET #created = :created, #extent = :ext, #wpList = :jobs, #wpListed = :created REMOVE #creating, #lease"),
		ConditionExpression:       aws.String("#creating = :tok"),
		ExpressionAttributeNames:  names(attrCreated, attrExtent, attrCreating, attrLease, attrList, attrListed),
		ExpressionAttributeValues: item{":created": num(created), ":ext": num(shards), ":tok": str(token), ":jobs": str(listKey)},
	})
	if isCondFailed(err) {
		return errLostLease
	}
	return st.wrap("make the job visible", err)
}

func rangeSetInt64(n int64) types.AttributeValue {
	v := make([]string, n)
	for i := range v {
		v[i] = strconv.Itoa(i)
	}
	return &types.AttributeValueMemberNS{Value: v}
}

// writeRange runs BatchWriteItem for the requests gen(from..to-1), 25 a
// call, batchWorkers calls in flight.
func (st *Store) writeRange(ctx context.Context, from, to int64, gen func(int64) types.WriteRequest) error {
	if from >= to {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	starts := make(chan int64)
	var wg sync.WaitGroup
	for w := 0; w < batchWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reqs := make([]types.WriteRequest, 0, 25)
			for start := range starts {
				reqs = reqs[:0]
				for i := start; i < min(start+25, to); i++ {
					reqs = append(reqs, gen(i))
				}
				if err := st.batchWrite(ctx, reqs); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
feed:
	for s := from; s < to; s += 25 {
		select {
		case starts <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(starts)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// batchWrite writes up to 25 requests, retrying unprocessed items with
// exponential backoff (at most 12 rounds, about 40 seconds).
func (st *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	backoff := 20 * time.Millisecond
	for round := 0; len(reqs) > 0; round++ {
		if round == 12 {
			return fmt.Errorf("batch write: %d items still unprocessed after %d rounds: %w", len(reqs), round, backends.ErrThrottled)
		}
		if round > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		out, err := st.db.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{st.table: reqs},
		})
		if err != nil {
			return st.wrap("batch write", err)
		}
		reqs = out.UnprocessedItems[st.table]
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Delete hides the job (creating = "deleting", under a lease like
// CreateJob's), deletes its shard and group items, then the job item. An
// interrupted Delete leaves a hidden job that a later Delete, or a CreateJob
// of the id once the lease has run out, cleans up.
func (st *Store) Delete(ctx context.Context, jobID string) error {
	if jobID == "" {
		return fmt.Errorf("delete: job id is empty: %w", backends.ErrNotFound)
	}
	it, err := st.getItem(ctx, jobID, "", nil)
	if err != nil {
		return err
	}
	j, ok := parseJob(it)
	if !ok || (!j.visible() && j.lease > st.nowMS() && j.creating != deletingToken) || (j.visible() && j.expired(st.nowMS())) {
		return backends.ErrNotFound
	}
	st.totals.drop(jobID)
	// The details of given-up parts: the index lists them (a detail
	// item a crash left behind for a part it does not list is left).
	gaveUp, _ := getNS(j.raw, attrGivenUp)
	if err := st.writeRange(ctx, 0, int64(len(gaveUp)), func(i int64) types.WriteRequest {
		return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(detailsKey(jobID, gaveUp[i]))}}
	}); err != nil {
		return fmt.Errorf("delete job %s: the details of its given-up parts: %w", jobID, err)
	}
	if j.legacy {
		_, err := st.db.DeleteItem(ctx, &ddb.DeleteItemInput{
			TableName:                aws.String(st.table),
			Key:                      key(jobID),
			ConditionExpression:      aws.String("attribute_exists(#id) AND attribute_not_exists(#wp)"),
			ExpressionAttributeNames: names(attrID, attrWP),
		})
		if isCondFailed(err) {
			return backends.ErrNotFound
		}
		return st.wrap("delete job "+jobID, err)
	}
	_, err = st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(jobID),
		UpdateExpression:          aws.String("SET #creating = :del, #lease = :lease REMOVE #wpList, #wpListed"),
		ConditionExpression:       aws.String("attribute_exists(#id) AND (attribute_not_exists(#creating) OR #creating = :del OR #lease < :now)"),
		ExpressionAttributeNames:  names(attrID, attrCreating, attrLease, attrList, attrListed),
		ExpressionAttributeValues: item{":del": str(deletingToken), ":lease": num(st.nowMS() + st.lease.Milliseconds()), ":now": num(st.nowMS())},
	})
	if isCondFailed(err) {
		return backends.ErrNotFound
	}
	if err != nil {
		return st.wrap("delete job "+jobID, err)
	}
	ext := max(j.shards, j.extent)
	err = st.writeRange(ctx, 0, ext, func(s int64) types.WriteRequest {
		return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(shardKey(jobID, s))}}
	})
	if err == nil {
		err = st.writeRange(ctx, 0, ceilDiv(ext, groupSize), func(g int64) types.WriteRequest {
			return types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(groupKey(jobID, g))}}
		})
	}
	if err != nil {
		return fmt.Errorf("run it again to finish: %w", err)
	}
	_, err = st.db.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(jobID),
		ConditionExpression:       aws.String("#creating = :del"),
		ExpressionAttributeNames:  names(attrCreating),
		ExpressionAttributeValues: item{":del": str(deletingToken)},
	})
	if err != nil && !isCondFailed(err) {
		return st.wrap("delete job "+jobID, err)
	}
	// A condition failure means a CreateJob took the id over: the old job
	// is gone all the same.
	return nil
}
