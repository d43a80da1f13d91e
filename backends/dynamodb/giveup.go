package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"github.com/wp-tools/wp/backends"
)

// Given-up parts, tolerance and retry. doc.go says how they are
// laid out and why each write is exactly-once.

// Retry's marker on the shards it moves parts in (see retryWP).
const (
	retryLease    = 60 * time.Second
	retryWaitStep = 50 * time.Millisecond
)

// detailsKey is the id of the item holding a given-up part's details.
func detailsKey(job string, part int64) string { return fmt.Sprintf("%s#u%010d", job, part) }

// detailsItem is what GiveUp records of a part (at most about 700 bytes
// without a reason: the stderr tail is 512 bytes at most; a reason adds up
// to 1,024), with the job's expiry (expires, unix seconds; 0: none).
func detailsItem(job string, part int64, info backends.GiveUpInfo, expires int64) item {
	it := item{
		attrID:     str(detailsKey(job, part)),
		"exitCode": num(int64(info.ExitCode)),
		"receives": num(int64(info.ReceiveCount)),
		"at":       num(info.At.UnixMilli()),
	}
	if info.Signal != "" {
		it["signal"] = str(info.Signal)
	}
	if info.Stderr != "" {
		it["stderr"] = str(info.Stderr)
	}
	if info.Reason != "" {
		it[attrReason] = str(info.Reason)
	}
	if expires > 0 {
		it[attrExpires] = num(expires)
	}
	return it
}

func parseDetails(it item) backends.GiveUpInfo {
	var info backends.GiveUpInfo
	if it == nil {
		return info
	}
	c, _ := getNum(it, "exitCode")
	r, _ := getNum(it, "receives")
	at, _ := getNum(it, "at")
	info.ExitCode, info.ReceiveCount = int(c), int(r)
	if at > 0 {
		info.At = time.UnixMilli(at)
	}
	info.Signal = getStr(it, "signal")
	info.Stderr = getStr(it, "stderr")
	info.Reason = getStr(it, attrReason)
	return info
}

// GiveUp records part as given up. For a wp job the common case is:
//
//  1. the shard: DELETE parts :p ADD gu :p on condition contains(parts, :p)
//     AND attribute_not_exists(f), exactly as Complete ends a part, so
//     exactly one GiveUp or Complete ends it (1 WCU), with the minute's
//     counter and t, as Complete's write;
//  2. the details item JOB#uNNNNNNNNNN (Put, 1 WCU, 2 with a long reason);
//  3. the job item: ADD wpGivenUp :p (the idempotent index that counts
//     given-up parts), which returns the set: past the job's tolerance
//     limit the job fails (a few WCU: the job item's size);
//  4. if step 1 emptied the shard, the same propagation as Complete's, so
//     the one finisher rule is Complete's.
//
// Anything unusual makes step 1's condition fail, and the job item is read
// to tell which, as in Complete.
func (st *Store) GiveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo) (backends.Completion, error) {
	// A part that a wp retry moved back to pending while this call looked
	// at it is given up by going round once more, as in Complete.
	for attempt := 0; ; attempt++ {
		c, again, err := st.giveUp(ctx, jobID, part, info, attempt > 0)
		if !again {
			return c, err
		}
		if attempt == 2 {
			return backends.Completion{}, errors.New("the part was made pending again while it was being given up (a wp retry is running): try again")
		}
	}
}

// giveUpShard is step 1 of GiveUp: the shard write. stale are the counters
// a read found out of the window (nil on the hot path, which instead asks
// that the shard was written within recentSweep minutes). ok is false when
// the condition failed.
func (st *Store) giveUpShard(ctx context.Context, jobID string, part int64, stale []int64, fresh bool) (old item, nowMS int64, ok bool, err error) {
	s, off := part/shardSize, part%shardSize
	nowMS = st.nowMS()
	w := minuteOf(nowMS)
	u := newUpdate().name(attrParts, attrGU, attrT, attrFailed).
		Delete("#parts :p").Add("#gu :p").Set("#t = :now").
		val(":p", numSet(off)).val(":pv", num(off)).val(":now", num(nowMS)).
		counts(tally{prefix: shardCounterPrefix, w: w, add: counters{w: 1}, stale: stale})
	cond := "contains(#parts, :pv) AND attribute_not_exists(#f) AND " + liveCond(u.names, u.vals, nowMS)
	if fresh {
		cond += " AND " + freshCond(u, attrT, nowMS)
	}
	out, err := st.db.UpdateItem(ctx, u.input(st.table, key(shardKey(jobID, s)), cond, types.ReturnValueAllOld))
	if isCondFailed(err) {
		return nil, nowMS, false, nil
	}
	if err != nil {
		return nil, nowMS, false, st.wrap("update shard", err)
	}
	return out.Attributes, nowMS, true, nil
}

func (st *Store) giveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo, readFirst bool) (c backends.Completion, again bool, err error) {
	s, off := part/shardSize, part%shardSize
	if part >= 0 && !readFirst {
		old, nowMS, ok, err := st.giveUpShard(ctx, jobID, part, nil, true)
		if err != nil {
			return c, false, err
		}
		if ok {
			c, err := st.gaveUp(ctx, jobID, part, info, s, old, nowMS)
			return c, false, err
		}
	}
	// The rare path: find out why the part was not pending.
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return c, false, err
	}
	if j.failed {
		return c, false, backends.ErrJobFailed
	}
	c.ReduceSent = j.reduceSent
	if j.legacy {
		c, err := st.giveUpLegacy(ctx, j, part, info)
		return c, false, err
	}
	if err := checkLayout(j); err != nil {
		return c, false, err
	}
	if part < 0 || part >= j.total {
		return c, false, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, j.total-1)
	}
	sh, err := st.getItem(ctx, shardKey(jobID, s), "", nil)
	if err != nil {
		return c, false, err
	}
	if nsContains(sh, attrParts, off) {
		if sh[attrFailed] != nil {
			// The shard is marked failed while the job is being
			// revived: try again.
			return c, true, nil
		}
		// Pending: the shard had not been written for recentSweep
		// minutes (or a Retry moved the part back meanwhile). Write it
		// with the stale counters the read found.
		old, nowMS, ok, err := st.giveUpShard(ctx, jobID, part, staleMinutes(sh, shardCounterPrefix, minuteOf(st.nowMS())), false)
		if err != nil {
			return c, false, err
		}
		if !ok {
			return c, true, nil
		}
		c, err := st.gaveUp(ctx, jobID, part, info, s, old, nowMS)
		return c, false, err
	}
	c.Duplicate = true
	c.Done = !j.groupsLeft
	// A GiveUp whose process died between steps 1 and 3 left the part
	// given up on its shard but not counted: a duplicate delivery counts
	// it (ADD is idempotent), once the shard has not been written for
	// repairAfter (so a live GiveUp, which counts within milliseconds, is
	// never overtaken: see convert).
	if !nsContains(j.raw, attrGivenUp, part) {
		t, _ := getNum(sh, attrT)
		if nsContains(sh, attrGU, off) && st.nowMS()-t >= st.repairAfter.Milliseconds() {
			failed, _, err := st.countGivenUp(ctx, jobID, part)
			if err != nil {
				return c, false, err
			}
			c.Failed = failed
		}
	}
	return c, false, nil
}

// gaveUp finishes a GiveUp whose shard write (step 1) succeeded at nowMS
// (old: the shard before it): steps 2 to 4.
func (st *Store) gaveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo, s int64, old item, nowMS int64) (backends.Completion, error) {
	var c backends.Completion
	expires, _ := getNum(old, attrExpires)
	// The part has ended: whatever fails below, the emptied shard is
	// still propagated, so that the job can end.
	_, detailsErr := st.db.PutItem(ctx, &ddb.PutItemInput{
		TableName: aws.String(st.table),
		Item:      detailsItem(jobID, part, info, expires),
	})
	failed, j, countErr := st.countGivenUp(ctx, jobID, part)
	if j != nil {
		c.ReduceSent = j.reduceSent
	}
	c.Failed = failed
	if pending, _ := getNS(old, attrParts); len(pending) == 1 {
		w := minuteOf(nowMS)
		cs := countersOf(old, shardCounterPrefix).inWindow(w)
		cs[w]++
		var err error
		c.Finisher, c.Done, err = st.propagate(ctx, &jobCtx{id: jobID}, s, nowMS, cs)
		if err != nil {
			return c, err
		}
	}
	if detailsErr != nil {
		return c, st.wrap("record the details of the given-up part", detailsErr)
	}
	return c, countErr
}

// tooLarge reports whether err is DynamoDB refusing an item past 400 KB.
func tooLarge(err error) bool {
	var ae smithy.APIError
	return err != nil && errors.As(err, &ae) && ae.ErrorCode() == "ValidationException" && strings.Contains(ae.ErrorMessage(), "size")
}

// countGivenUp adds part to the job item's wpGivenUp set and fails the job
// when the set has grown past the tolerance limit, or has no room for part
// (see fullIndex). failed is true when this call failed the job.
func (st *Store) countGivenUp(ctx context.Context, jobID string, part int64) (failed bool, j *jobItem, err error) {
	failed, j, err = st.addGivenUp(ctx, jobID, part)
	if errors.Is(err, errIndexFull) || tooLarge(err) {
		// The index is full (wpGivenUpMax: about 100,000 part ids, fewer
		// on a job with large metadata): no tolerance that large is
		// useful, and the job cannot count more. (tooLarge: a job item
		// without wpGivenUpMax, or a larger one than estimated.)
		failed, err = st.failJob(ctx, jobID, fmt.Sprintf("more parts given up than a DynamoDB job item can list (part %d was the first not counted)", part), true)
	}
	return failed, j, err
}

// errIndexFull: the job item's given-up index holds wpGivenUpMax parts.
var errIndexFull = errors.New("the job item's given-up index is full")

// addGivenUp is countGivenUp but for a full index, where it returns
// errIndexFull: the set holds wpGivenUpMax parts, not part, and has no
// room for it.
func (st *Store) addGivenUp(ctx context.Context, jobID string, part int64) (failed bool, j *jobItem, err error) {
	nm, vals := names(attrGivenUp, attrGivenUpMax), item{":p": numSet(part), ":pv": num(part)}
	out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:        aws.String(st.table),
		Key:              key(jobID),
		UpdateExpression: aws.String("ADD #wpGivenUp :p"),
		ConditionExpression: aws.String(isJobCond(nm, vals, st.nowMS()) + " AND (attribute_not_exists(#wpGivenUpMax) OR attribute_not_exists(#wpGivenUp)" +
			" OR contains(#wpGivenUp, :pv) OR size(#wpGivenUp) < #wpGivenUpMax)"),
		ExpressionAttributeNames:  nm,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isCondFailed(err) {
		if _, err := st.getJob(ctx, jobID); err != nil {
			return false, nil, err
		}
		return false, nil, errIndexFull
	}
	if err != nil {
		return false, nil, st.wrap("count the given-up part on the job item", err)
	}
	j, ok := parseJob(out.Attributes)
	if !ok {
		return false, nil, backends.ErrNotFound
	}
	n := nsLen(j.raw, attrGivenUp)
	if n <= j.tolLimit || j.failed {
		return false, j, nil
	}
	failed, err = st.failJob(ctx, jobID, backends.ToleranceReason(n, j.tolerance, j.total), true)
	return failed, j, err
}

// giveUpLegacy gives up a part of a job written by the Node or Python
// library, on its one item: DELETE parts :p ADD wpGivenUp :p on condition
// that the part is pending and the job has not failed. The libraries do not
// know wpGivenUp, so to them the part is simply no longer pending. A legacy
// job has no tolerance: its first give-up fails it (error, which both
// libraries read).
func (st *Store) giveUpLegacy(ctx context.Context, j *jobItem, part int64, info backends.GiveUpInfo) (backends.Completion, error) {
	c := backends.Completion{ReduceSent: j.reduceSent}
	nm := withName(names(attrParts, attrGivenUp, attrError), "#guv", attrGivenUpVer)
	u, err := st.updateLegacyPart(ctx, j, part, "DELETE #parts :p ADD #wpGivenUp :p, #guv :one", nm, item{":one": num(1)}, types.ReturnValueAllNew)
	if err != nil {
		return c, err
	}
	if j2 := u.now; j2 != nil {
		c.Duplicate = true
		c.Done = nsLen(j2.raw, attrParts) == 0
		c.ReduceSent = j2.reduceSent
		return c, nil
	}
	j2, _ := parseJob(u.attrs)
	if !u.recorded && j2 != nil {
		st.noteFirstPartFrom(ctx, j2) // the set still holds 0 or N, if either tells
	}
	expires := j.expires
	if j2 != nil {
		expires = j2.expires
	}
	if _, err := st.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(st.table), Item: detailsItem(j.id, part, info, expires)}); err != nil {
		return c, st.wrap("record the details of the given-up part", err)
	}
	if nsLen(u.attrs, attrParts) == 0 {
		c.Finisher, c.Done = true, true
	}
	if n := nsLen(u.attrs, attrGivenUp); j2 != nil && n > j2.tolLimit {
		c.Failed, err = st.failJob(ctx, j.id, backends.ToleranceReason(n, j2.tolerance, j2.total), true)
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// convert turns given-up part of a wp job into a completed one: DELETE gu
// :p on the shard on condition contains(gu, :p) (exactly once: a Retry of
// the part or another conversion makes it fail), unless a Retry holds the
// shard (r, rx: then it waits for it to go). Then the job item's index and
// the details item follow.
//
// The part must be in the index first: a GiveUp counts its part just
// after its shard write, and a conversion in between would leave the index
// counting a completed part. So a part given up on its shard but not yet
// counted is waited for; if its shard has not been written for repairAfter,
// its GiveUp died before counting it, and it is counted here.
//
// A conversion ends no part (the part had ended when it was given up), so
// it adds no counter and leaves t and wpEnded, the last end, as they were.
// sh is the shard as last read, for the stale counters its write sweeps.
//
// converted is false when the part was not given up on its shard; pending
// is true when it is pending (a Retry moved it back).
func (st *Store) convert(ctx context.Context, jc *jobCtx, part int64, sh item, counted bool) (converted, pending bool, err error) {
	jobID := jc.id
	s, off := part/shardSize, part%shardSize
	deadline := time.Now().Add(retryLease + st.repairAfter + 5*time.Second)
	wait := func() error {
		if time.Now().After(deadline) {
			return errors.New("the part stayed given up but uncounted, or held by a wp retry, too long")
		}
		return sleep(ctx, retryWaitStep)
	}
	var nowMS int64
	for {
		if !counted {
			it, err := st.getItem(ctx, jobID, "#wpGivenUp", names(attrGivenUp))
			if err != nil {
				return false, false, err
			}
			counted = nsContains(it, attrGivenUp, part)
		}
		if !counted {
			if sh, err = st.getItem(ctx, shardKey(jobID, s), "", nil); err != nil {
				return false, false, err
			}
			switch {
			case nsContains(sh, attrParts, off):
				return false, true, nil
			case !nsContains(sh, attrGU, off):
				return false, false, nil
			}
			if t, _ := getNum(sh, attrT); st.nowMS()-t < st.repairAfter.Milliseconds() {
				if err := wait(); err != nil {
					return false, false, err
				}
				continue
			}
			if _, _, err := st.countGivenUp(ctx, jobID, part); err != nil {
				return false, false, err
			}
			counted = true
		}
		// A given-up part completed ends no part (it had ended): the
		// write adds no counter and leaves t, the last end, as it was;
		// it still sweeps the counters out of the window.
		nowMS = st.nowMS()
		w := minuteOf(nowMS)
		t := tally{prefix: shardCounterPrefix, w: w, stale: staleMinutes(sh, shardCounterPrefix, w)}
		u := newUpdate().name(attrGU, attrFailed, attrRetryExp).
			Delete("#gu :p").
			val(":p", numSet(off)).val(":pv", num(off)).val(":now", num(nowMS)).
			counts(t)
		_, err := st.db.UpdateItem(ctx, u.input(st.table, key(shardKey(jobID, s)), "contains(#gu, :pv) AND attribute_not_exists(#f) AND (attribute_not_exists(#rx) OR #rx < :now)", types.ReturnValueNone))
		if err == nil {
			break
		}
		if !isCondFailed(err) {
			return false, false, st.wrap("update shard", err)
		}
		if sh, err = st.getItem(ctx, shardKey(jobID, s), "", nil); err != nil {
			return false, false, err
		}
		switch {
		case nsContains(sh, attrParts, off):
			return false, true, nil
		case !nsContains(sh, attrGU, off):
			return false, false, nil
		case sh[attrFailed] != nil:
			return false, false, backends.ErrJobFailed
		}
		// A Retry holds the shard: wait for it to move or leave the part.
		if err := wait(); err != nil {
			return false, false, err
		}
	}
	if _, err := st.uncount(ctx, jobID, []int64{part}); err != nil {
		return true, false, err
	}
	return true, false, nil
}

// uncount removes parts from the job item's wpGivenUp index and deletes
// their details, after their shards stopped holding them as given up. It
// is best effort: a failure leaves the index counting parts that are no
// longer given up (see doc.go), never the reverse.
func (st *Store) uncount(ctx context.Context, jobID string, parts []int64) (item, error) {
	u := newUpdate().name(attrGivenUp).Delete("#wpGivenUp :p").val(":p", numSet(parts...))
	cond := isJobCond(u.names, u.vals, st.nowMS())
	out, err := st.db.UpdateItem(ctx, u.input(st.table, key(jobID), cond, types.ReturnValueAllNew))
	if err != nil && !isCondFailed(err) {
		return nil, st.wrap("uncount given-up parts on the job item", err)
	}
	reqs := make([]types.WriteRequest, 0, 25)
	for i, p := range parts {
		reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(detailsKey(jobID, p))}})
		if len(reqs) == 25 || i == len(parts)-1 {
			if err := st.batchWrite(ctx, reqs); err != nil {
				return nil, err
			}
			reqs = reqs[:0]
		}
	}
	if out == nil {
		return nil, nil
	}
	return out.Attributes, nil
}

// GivenUp lists the parts in the job item's wpGivenUp index, in order, 100
// at a time, each checked against its shard (a wp job) or the job item (a
// legacy job) and read with its details item.
func (st *Store) GivenUp(ctx context.Context, jobID string, fn func(backends.GivenUpPart) error) error {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return err
	}
	parts, _ := getNS(j.raw, attrGivenUp)
	for i := 0; i < len(parts); i += 100 {
		chunk := parts[i:min(i+100, len(parts))]
		keys := make([]string, 0, 2*len(chunk))
		for _, p := range chunk {
			keys = append(keys, detailsKey(jobID, p))
		}
		if !j.legacy {
			for _, p := range chunk {
				if k := shardKey(jobID, p/shardSize); keys[len(keys)-1] != k {
					keys = append(keys, k)
				}
			}
		}
		items, err := st.getMany(ctx, keys)
		if err != nil {
			return err
		}
		for _, p := range chunk {
			if !j.legacy && !nsContains(items[shardKey(jobID, p/shardSize)], attrGU, p%shardSize) {
				continue // converted, retried, or a give-up half recorded
			}
			if err := fn(backends.GivenUpPart{Part: p, GiveUpInfo: parseDetails(items[detailsKey(jobID, p)])}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Retry moves given-up parts back to pending.
func (st *Store) Retry(ctx context.Context, jobID string, parts []int64) ([]int64, error) {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if j.failed && !j.tolFailed {
		return nil, backends.ErrJobFailed
	}
	// Only parts in the index can be given up (a give-up is counted
	// before it returns; see doc.go).
	var want []int64
	for _, p := range parts {
		if nsContains(j.raw, attrGivenUp, p) {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if len(want) == 0 {
		return nil, nil
	}
	if j.legacy {
		return st.retryLegacy(ctx, j, want)
	}
	if err := checkLayout(j); err != nil {
		return nil, err
	}
	return st.retryWP(ctx, j, want)
}

// retryWP moves parts of a wp job back to pending. Moving a part makes its
// shard, group and the job pending again, and this must never let two
// calls finish the job, or none:
//
//  1. Each shard holding parts to move is marked (r = token, rx = expiry,
//     on condition no live mark), in shard order so two Retry calls cannot
//     wait on each other. A marked shard refuses conversions (a late
//     Complete of a given-up part waits for the mark to go), so what it
//     holds as given up cannot change under the Retry.
//  2. The marked shards are read: the parts to move are those still in gu.
//  3. The job item gets the groups back (ADD groups), and the reduce state
//     is cleared (a finisher of the retried parts must be able to claim).
//  4. Each group gets its shards back (ADD left).
//  5. Each shard moves its parts (DELETE gu :P ADD parts :P) and drops its
//     mark, on condition that the mark is still this call's.
//  6. The job item's index drops the moved parts, and a job failed by its
//     tolerance that is now within it runs again.
//
// Every shard and group of step 5 is listed pending before any of its
// parts can end, and each holds at least one pending part once step 5 is
// done, so the last of the moved (and other pending) parts to end empties
// the job, through Complete's propagation, exactly once. A Retry that
// dies between 3 and 5 leaves shards listed pending with no part pending:
// running it again moves the parts (they are still given up) and the job
// can end.
func (st *Store) retryWP(ctx context.Context, j *jobItem, want []int64) ([]int64, error) {
	jobID := j.id
	byShard := map[int64][]int64{}
	for _, p := range want {
		byShard[p/shardSize] = append(byShard[p/shardSize], p%shardSize)
	}
	shards := make([]int64, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	slices.Sort(shards)

	// 1. Mark.
	tok := uuid.NewString()
	var marked []int64
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, s := range marked {
			st.db.UpdateItem(rctx, &ddb.UpdateItemInput{
				TableName:                 aws.String(st.table),
				Key:                       key(shardKey(jobID, s)),
				UpdateExpression:          aws.String("REMOVE #r, #rx"),
				ConditionExpression:       aws.String("#r = :tok"),
				ExpressionAttributeNames:  names(attrRetry, attrRetryExp),
				ExpressionAttributeValues: item{":tok": str(tok)},
			})
		}
		marked = nil
	}
	defer func() { release() }()
	deadline := time.Now().Add(retryLease + 5*time.Second)
	for _, s := range shards {
		for {
			now := st.nowMS()
			_, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
				TableName:                 aws.String(st.table),
				Key:                       key(shardKey(jobID, s)),
				UpdateExpression:          aws.String("SET #r = :tok, #rx = :exp"),
				ConditionExpression:       aws.String("attribute_exists(#id) AND (attribute_not_exists(#rx) OR #rx < :now)"),
				ExpressionAttributeNames:  names(attrID, attrRetry, attrRetryExp),
				ExpressionAttributeValues: item{":tok": str(tok), ":exp": num(now + retryLease.Milliseconds()), ":now": num(now)},
			})
			if err == nil {
				marked = append(marked, s)
				break
			}
			if !isCondFailed(err) {
				return nil, st.wrap("mark shard for retry", err)
			}
			sh, err := st.getItem(ctx, shardKey(jobID, s), "#id", names(attrID))
			if err != nil {
				return nil, err
			}
			if sh == nil {
				return nil, fmt.Errorf("shard item %s is missing (the job is damaged or being deleted)", shardKey(jobID, s))
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("shard %s stayed held by another wp retry", shardKey(jobID, s))
			}
			if err := sleep(ctx, retryWaitStep); err != nil {
				return nil, err
			}
		}
	}

	// 2. What is still given up.
	keys := make([]string, len(shards))
	for i, s := range shards {
		keys[i] = shardKey(jobID, s)
	}
	items, err := st.getMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	move := map[int64][]int64{}
	groupShards := map[int64][]int64{}
	var moved []int64
	for _, s := range shards {
		for _, off := range byShard[s] {
			if nsContains(items[shardKey(jobID, s)], attrGU, off) {
				move[s] = append(move[s], off)
				moved = append(moved, s*shardSize+off)
			}
		}
		if len(move[s]) > 0 {
			groupShards[s/groupSize] = append(groupShards[s/groupSize], s%groupSize)
		}
	}
	if len(moved) == 0 {
		return nil, nil
	}
	groups := make([]int64, 0, len(groupShards))
	for g := range groupShards {
		groups = append(groups, g)
	}
	slices.Sort(groups)

	// 3. The job: pending again, reduce state cleared.
	nm := names(attrGroups, attrReduceSent, attrWPReduceSent, attrReduced, attrClaimToken, attrClaimExp, attrError, attrTolFailed)
	ok, err := st.updateJob(ctx, "retry", jobID,
		"ADD #groups :g REMOVE #reduceSent, #wpReduceSent, #reduced, #claimToken, #claimExp",
		" AND (attribute_not_exists(#error) OR #wpTolFailed = :t)", nm,
		item{":g": numSet(groups...), ":t": boolean(true)})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, backends.ErrJobFailed
	}
	// 4. The groups. A group that had emptied handed its counters to the
	// job item: pending again, it would count them twice, so they go
	// (the groups a Retry puts back are few: read them for their names).
	var emptiedGroups []string
	for _, g := range groups {
		if !nsContains(j.raw, attrGroups, g) {
			emptiedGroups = append(emptiedGroups, groupKey(jobID, g))
		}
	}
	grps, err := st.getMany(ctx, emptiedGroups)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		u := newUpdate().name(attrLeft, attrID).Add("#left :s").val(":s", numSet(groupShards[g]...))
		for m := range countersOf(grps[groupKey(jobID, g)], shardCounterPrefix) {
			u.Remove(counterName(shardCounterPrefix, m))
		}
		if _, err := st.db.UpdateItem(ctx, u.input(st.table, key(groupKey(jobID, g)), "attribute_exists(#id)", types.ReturnValueNone)); err != nil {
			return nil, st.wrap("put the shards back in group "+groupKey(jobID, g), err)
		}
	}
	// 5. The shards.
	for _, s := range shards {
		if len(move[s]) == 0 {
			continue
		}
		// t stays: a retry ends no part. A shard that had emptied
		// handed its counters to its group: they go, as the group's
		// above.
		u := newUpdate().name(attrGU, attrParts, attrRetry, attrRetryExp).
			Delete("#gu :p").Add("#parts :p").Remove("#r", "#rx").
			val(":p", numSet(move[s]...)).val(":tok", str(tok))
		if sh := items[shardKey(jobID, s)]; sh[attrParts] == nil {
			for m := range countersOf(sh, shardCounterPrefix) {
				u.Remove(counterName(shardCounterPrefix, m))
			}
		}
		_, err := st.db.UpdateItem(ctx, u.input(st.table, key(shardKey(jobID, s)), "#r = :tok", types.ReturnValueNone))
		if isCondFailed(err) {
			return nil, fmt.Errorf("retry lost its hold on shard %s (it took over %v): run it again", shardKey(jobID, s), retryLease)
		}
		if err != nil {
			return nil, st.wrap("move the parts of shard "+shardKey(jobID, s), err)
		}
		marked = slices.DeleteFunc(marked, func(x int64) bool { return x == s })
	}
	release()
	// 6. The index, and the tolerance.
	after, err := st.uncount(ctx, jobID, moved)
	if err != nil {
		return moved, err
	}
	if j2, ok := parseJob(after); ok && j2.failed {
		if j2.tolFailed && nsLen(j2.raw, attrGivenUp) <= j2.tolLimit {
			err = st.revive(ctx, j2)
		} else {
			// Still failed: the shards that got parts back refuse
			// them as the others do.
			err = st.markFailed(ctx, jobID, true)
		}
	}
	return moved, err
}

// revive makes a job failed by its tolerance run again once its given-up
// parts are within it: the shards Fail marked are unmarked, then error is
// removed on condition that the index is within the limit (a give-up
// meanwhile may have taken it past again: the shards are then marked
// again).
func (st *Store) revive(ctx context.Context, j *jobItem) error {
	if nsLen(j.raw, attrGivenUp) > j.tolLimit {
		return nil
	}
	if !j.legacy {
		keys, err := st.pendingShards(ctx, j)
		if err != nil {
			return err
		}
		if err := st.updateShards(ctx, keys, "REMOVE #f", "attribute_exists(#f)", names(attrFailed), nil); err != nil {
			return fmt.Errorf("revive the job (run wp retry again to finish): %w", err)
		}
	}
	ok, err := st.updateJob(ctx, "revive", j.id, "REMOVE #error, #wpTolFailed, #failMarked",
		" AND #wpTolFailed = :t AND (attribute_not_exists(#wpGivenUp) OR size(#wpGivenUp) <= :limit)",
		names(attrError, attrTolFailed, attrFailMarked, attrGivenUp), item{":t": boolean(true), ":limit": num(j.tolLimit)})
	if err != nil || ok || j.legacy {
		return err
	}
	// Still failed: mark again what was unmarked.
	return st.markFailed(ctx, j.id, true)
}

// retryLegacy moves given-up parts of a legacy job back to its parts set,
// in one conditional write on the job item (so it is atomic against
// completions and other retries), clearing the reduce flags and, for a job
// failed by its tolerance now within it, the error. The condition is the
// version stamp wpGivenUpV that every change of wpGivenUp bumps: the parts
// read as given up are still given up when the write lands, however many.
func (st *Store) retryLegacy(ctx context.Context, j *jobItem, want []int64) ([]int64, error) {
	for attempt := 0; attempt < 5; attempt++ {
		var moving []int64
		for _, p := range want {
			if nsContains(j.raw, attrGivenUp, p) {
				moving = append(moving, p)
			}
		}
		if len(moving) == 0 {
			return nil, nil
		}
		ver, _ := getNum(j.raw, attrGivenUpVer)
		cond := " AND (attribute_not_exists(#error) OR #wpTolFailed = :t) AND #guv = :ver"
		vals := item{":p": numSet(moving...), ":t": boolean(true), ":ver": num(ver), ":one": num(1)}
		update := "DELETE #wpGivenUp :p ADD #parts :p, #guv :one REMOVE #reduceSent, #reduced, #claimToken, #claimExp"
		nm := names(attrGivenUp, attrParts, attrReduceSent, attrReduced, attrClaimToken, attrClaimExp, attrError, attrTolFailed)
		nm["#guv"] = attrGivenUpVer
		if j.tolFailed && nsLen(j.raw, attrGivenUp)-int64(len(moving)) <= j.tolLimit {
			update += ", #error, #wpTolFailed"
		}
		if m, ok := j.raw[attrMetadata].(*types.AttributeValueMemberM); ok {
			if _, ok := m.Value[pyReduceSentKey]; ok {
				update += ", #metadata.#rms"
				nm["#metadata"], nm["#rms"] = attrMetadata, pyReduceSentKey
			}
		}
		ok, err := st.updateJob(ctx, "retry", j.id, update, cond, nm, vals)
		if err != nil {
			return nil, err
		}
		if ok {
			st.uncountDetails(ctx, j.id, moving)
			return moving, nil
		}
		if j, err = st.getJob(ctx, j.id); err != nil {
			return nil, err
		}
		if j.failed && !j.tolFailed {
			return nil, backends.ErrJobFailed
		}
	}
	return nil, errors.New("the job keeps changing: run wp retry again")
}

// convertLegacy turns a given-up part of a legacy job into a completed one:
// DELETE wpGivenUp :p on condition that it holds the part and the job has
// not failed. converted is false when it no longer holds it.
func (st *Store) convertLegacy(ctx context.Context, j *jobItem, part int64) (converted bool, err error) {
	nm := withName(names(attrGivenUp, attrError), "#guv", attrGivenUpVer)
	ok, err := st.updateJob(ctx, "complete", j.id, "DELETE #wpGivenUp :p ADD #guv :one",
		" AND contains(#wpGivenUp, :pv) AND attribute_not_exists(#error)", nm,
		item{":p": numSet(part), ":pv": num(part), ":one": num(1)})
	if err != nil || !ok {
		return false, err
	}
	st.uncountDetails(ctx, j.id, []int64{part})
	return true, nil
}

func withName(m map[string]string, alias, name string) map[string]string {
	m[alias] = name
	return m
}

// uncountDetails deletes the details items of parts (best effort).
func (st *Store) uncountDetails(ctx context.Context, jobID string, parts []int64) {
	for i := 0; i < len(parts); i += 25 {
		reqs := make([]types.WriteRequest, 0, 25)
		for _, p := range parts[i:min(i+25, len(parts))] {
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(detailsKey(jobID, p))}})
		}
		st.batchWrite(ctx, reqs)
	}
}

// updateShards runs one conditional UpdateItem on each of keys, batchWorkers
// at a time; a condition failure is not an error, and a write refused for
// throughput is tried again (whileThrottled).
func (st *Store) updateShards(ctx context.Context, keys []string, update, cond string, nm map[string]string, vals item) error {
	ctx2, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < min(batchWorkers, len(keys)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				in := &ddb.UpdateItemInput{
					TableName:                aws.String(st.table),
					Key:                      key(k),
					UpdateExpression:         aws.String(update),
					ConditionExpression:      aws.String(cond),
					ExpressionAttributeNames: nm,
				}
				if len(vals) > 0 {
					in.ExpressionAttributeValues = vals
				}
				err := whileThrottled(ctx2, func() error {
					_, err := st.db.UpdateItem(ctx2, in)
					return err
				})
				if err != nil && !isCondFailed(err) {
					cancel(st.wrap("update "+k, err))
					return
				}
			}
		}()
	}
feed:
	for _, k := range keys {
		select {
		case work <- k:
		case <-ctx2.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx2)
}

// checkLayout refuses a wp job whose shards and groups are not this wp's.
func checkLayout(j *jobItem) error {
	if j.shardSize != shardSize || j.groupSize != groupSize {
		return fmt.Errorf("the job was written by another version of wp (shards of %d, groups of %d)", j.shardSize, j.groupSize)
	}
	return nil
}
