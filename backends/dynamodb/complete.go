package dynamodb

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// completeProjection is what Complete reads of the job item: everything but
// a legacy job's parts set (up to 400 KB) and the metadata (only Python's
// reduce flag inside it).
const completeProjection = "#id, #wp, #total, #shardSize, #groupSize, #shards, #extent, #groups, #error, " +
	"#reduceSent, #wpReduceSent, #reduced, #creating, #lease, #metadata.#rms, #wpFirstPart, #wpGivenUp"

var completeNames = func() map[string]string {
	m := names(attrID, attrWP, attrTotal, attrShardSize, attrGroupSize, attrShards, attrExtent, attrGroups,
		attrError, attrReduceSent, attrWPReduceSent, attrReduced, attrCreating, attrLease, attrMetadata, attrFirstPart, attrGivenUp)
	m["#rms"] = pyReduceSentKey
	return m
}()

// Complete records part as done: see the package comment for the writes and
// their cost. The common case is one request: the conditional delete of the
// part from its shard. Everything else (unknown or failed job, legacy job,
// part out of range, duplicate) makes that condition fail, and only then is
// the job item read to tell which.
func (st *Store) Complete(ctx context.Context, jobID string, part int64) (backends.Completion, error) {
	if jobID == "" {
		return backends.Completion{}, fmt.Errorf("complete: job id is empty: %w", backends.ErrNotFound)
	}
	// A part that a wp retry moved back to pending while this call looked
	// at it is completed by going round once more.
	for attempt := 0; ; attempt++ {
		c, again, err := st.complete(ctx, jobID, part, attempt < 3)
		if !again {
			return c, err
		}
	}
}

func (st *Store) complete(ctx context.Context, jobID string, part int64, mayRetry bool) (c backends.Completion, again bool, err error) {
	s, off := part/shardSize, part%shardSize
	if part >= 0 {
		out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName:                 aws.String(st.table),
			Key:                       key(shardKey(jobID, s)),
			UpdateExpression:          aws.String("DELETE #parts :p SET #t = :now"),
			ConditionExpression:       aws.String("contains(#parts, :pv) AND attribute_not_exists(#f)"),
			ExpressionAttributeNames:  names(attrParts, attrT, attrFailed),
			ExpressionAttributeValues: item{":p": numSet(off), ":pv": num(off), ":now": num(st.nowMS())},
			ReturnValues:              types.ReturnValueUpdatedNew,
		})
		if err == nil {
			if _, left := out.Attributes[attrParts]; left {
				return c, false, nil
			}
			// This completion emptied the shard: tell its group, and
			// maybe the job.
			c.Finisher, c.Done, err = st.propagate(ctx, jobID, s)
			if err != nil {
				return c, false, err
			}
			return c, false, nil
		}
		if !isCondFailed(err) {
			return c, false, st.wrap("update shard", err)
		}
	}
	// The rare path: find out why the part was not pending.
	it, err := st.getItem(ctx, jobID, completeProjection, completeNames)
	if err != nil {
		return c, false, err
	}
	j, ok := parseJob(it)
	if !ok || !j.visible() {
		return c, false, backends.ErrNotFound
	}
	if j.failed {
		return c, false, backends.ErrJobFailed
	}
	c.ReduceSent = j.reduceSent
	if j.legacy {
		c, err := st.completeLegacy(ctx, j, part)
		return c, false, err
	}
	if j.shardSize != shardSize || j.groupSize != groupSize {
		return c, false, fmt.Errorf("the job was written by another version of wp (shards of %d, groups of %d)", j.shardSize, j.groupSize)
	}
	if part < 0 || part >= j.total {
		return c, false, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, j.total-1)
	}
	sh, err := st.getItem(ctx, shardKey(jobID, s), "", nil)
	if err != nil {
		return c, false, err
	}
	if sh == nil {
		return c, false, fmt.Errorf("shard item %s is missing (the job is damaged: delete it and create it again)", shardKey(jobID, s))
	}
	if nsContains(sh, attrGU, off) {
		// A given-up part: it becomes a completed one.
		converted, pending, err := st.convert(ctx, jobID, part, nsContains(j.raw, attrGivenUp, part))
		if err != nil {
			return c, false, err
		}
		if converted {
			c.Done = !j.groupsLeft
			return c, false, nil
		}
		if pending && mayRetry {
			return c, true, nil
		}
	} else if nsContains(sh, attrParts, off) && sh[attrFailed] == nil && mayRetry {
		// Pending after all: a Retry moved it back since the write.
		return c, true, nil
	}
	c.Duplicate = true
	if !j.groupsLeft {
		c.Done = true
		return c, false, nil
	}
	if _, left := sh[attrParts]; left {
		return c, false, nil
	}
	// The shard is empty. Its emptier normally tells the group within
	// milliseconds; if that was long ago and the job is not done, it died
	// first: finish its work.
	if t, _ := getNum(sh, attrT); st.nowMS()-t < st.repairAfter.Milliseconds() {
		return c, false, nil
	}
	c.Done, err = st.repair(ctx, jobID, s)
	if err != nil {
		return c, false, err
	}
	return c, false, nil
}

// propagate removes the emptied shard s from its group and, if that emptied
// the group, the group from the job. finisher is true for the caller whose
// write removed the job's last group.
func (st *Store) propagate(ctx context.Context, id string, s int64) (finisher, done bool, err error) {
	g, off := s/groupSize, s%groupSize
	emptied, err := st.removeFromGroup(ctx, id, g, off)
	if err != nil || !emptied {
		return false, false, err
	}
	return st.removeGroup(ctx, id, g)
}

// removeFromGroup deletes shard offset off from group g. emptied is true when
// this call removed the group's last shard. A condition failure (someone
// repaired it already) is not an error.
func (st *Store) removeFromGroup(ctx context.Context, id string, g, off int64) (emptied bool, err error) {
	out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(groupKey(id, g)),
		UpdateExpression:          aws.String("DELETE #left :s SET #t = :now"),
		ConditionExpression:       aws.String("contains(#left, :sv)"),
		ExpressionAttributeNames:  names(attrLeft, attrT),
		ExpressionAttributeValues: item{":s": numSet(off), ":sv": num(off), ":now": num(st.nowMS())},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	if isCondFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, st.wrap("update group", err)
	}
	_, left := out.Attributes[attrLeft]
	return !left, nil
}

// removeGroup deletes group g from the job item. finisher is true when this
// call removed the last group; done tells whether no group is left.
func (st *Store) removeGroup(ctx context.Context, id string, g int64) (finisher, done bool, err error) {
	out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("DELETE #groups :g"),
		ConditionExpression:       aws.String("contains(#groups, :gv)"),
		ExpressionAttributeNames:  names(attrGroups),
		ExpressionAttributeValues: item{":g": numSet(g), ":gv": num(g)},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	if isCondFailed(err) {
		done, err := st.jobDone(ctx, id)
		return false, done, err
	}
	if err != nil {
		return false, false, st.wrap("update job", err)
	}
	_, left := out.Attributes[attrGroups]
	return !left, !left, nil
}

// repair finishes the propagation of shard s, found empty long after its
// last completion. It never reports a finisher: the reduce of a job whose
// finisher died is sent through ClaimReduce.
func (st *Store) repair(ctx context.Context, id string, s int64) (done bool, err error) {
	g, off := s/groupSize, s%groupSize
	grp, err := st.getItem(ctx, groupKey(id, g), "", nil)
	if err != nil {
		return false, err
	}
	switch {
	case grp == nil:
		return st.jobDone(ctx, id)
	case nsContains(grp, attrLeft, off):
		emptied, err := st.removeFromGroup(ctx, id, g, off)
		if err != nil || !emptied {
			return false, err
		}
	default:
		if _, left := grp[attrLeft]; left {
			return false, nil
		}
		if t, _ := getNum(grp, attrT); st.nowMS()-t < st.repairAfter.Milliseconds() {
			return false, nil
		}
	}
	_, done, err = st.removeGroup(ctx, id, g)
	return done, err
}

// jobDone tells whether the job has no pending group.
func (st *Store) jobDone(ctx context.Context, id string) (bool, error) {
	it, err := st.getItem(ctx, id, "#id, #groups", names(attrID, attrGroups))
	if err != nil {
		return false, err
	}
	if it == nil {
		return false, backends.ErrNotFound
	}
	_, left := it[attrGroups]
	return !left, nil
}

// completeLegacy completes a part of a job written by the Node or Python
// library: DELETE from the parts set on the job item, on condition that the
// part is pending and the job has not failed. While the job's numbering is
// not known (see the package comment) every id from 0 to total is taken:
// a pending one is in range under either numbering, and one that is not
// pending is a duplicate under the one that has it. The write returns the
// set as it was, which tells the numbering when it held 0 or total; it is
// then recorded.
func (st *Store) completeLegacy(ctx context.Context, j *jobItem, part int64) (backends.Completion, error) {
	c := backends.Completion{ReduceSent: j.reduceSent}
	u, err := st.updateLegacyPart(ctx, j, part, "DELETE #parts :p", names(attrParts, attrError), item{}, types.ReturnValueUpdatedOld)
	if err != nil {
		return c, err
	}
	if u.now == nil {
		// The old set held this part: it held nothing else when this
		// completion emptied it.
		if nsLen(u.attrs, attrParts) == 1 {
			c.Finisher, c.Done = true, true
		}
		if !u.recorded {
			st.noteFirstPartFrom(ctx, &jobItem{id: j.id, raw: u.attrs, total: j.total})
		}
		return c, nil
	}
	j2 := u.now
	c.Done = nsLen(j2.raw, attrParts) == 0
	c.ReduceSent = j2.reduceSent
	if nsContains(j2.raw, attrGivenUp, part) {
		converted, err := st.convertLegacy(ctx, j2, part)
		if err != nil {
			return c, err
		}
		if converted {
			return c, nil
		}
	}
	c.Duplicate = true
	return c, nil
}

// legacyUpdate is what updateLegacyPart did.
type legacyUpdate struct {
	// attrs are the item's attributes as the write returned them (the
	// ReturnValues asked for), when the part was pending and written.
	attrs item
	// recorded: the job's numbering was recorded before, or this write
	// recorded it.
	recorded bool
	// now is the job as read after the write was refused because the
	// part was not pending (a duplicate, or a part given up), or nil.
	now *jobItem
}

// updateLegacyPart writes one part of a legacy job's one item, for a
// completion or a give-up: update (with its names nm and values vals, to
// which it adds :p, :pv and the numbering's) on condition that the part is
// pending and the job has not failed. While the job's numbering is not
// known every id from 0 to total is taken (see completeLegacy); writing
// part 0 proves the job 0-based, part N 1-based, and the write then records
// it. A refused write reads the job again: ErrJobFailed if it failed,
// ErrPartRange if its numbering is now known and excludes part, else now.
func (st *Store) updateLegacyPart(ctx context.Context, j *jobItem, part int64, update string, nm map[string]string, vals item, rv types.ReturnValue) (legacyUpdate, error) {
	first, known := getNum(j.raw, attrFirstPart)
	lo, hi := int64(0), j.total // unknown numbering: accept 0..N
	if known {
		lo, hi = first, first+j.total-1
	}
	if part < lo || part > hi {
		return legacyUpdate{}, fmt.Errorf("%w (parts %d to %d)", backends.ErrPartRange, lo, hi)
	}
	vals[":p"], vals[":pv"] = numSet(part), num(part)
	u := legacyUpdate{recorded: known}
	if !known && (part == 0 || part == j.total) {
		update += " SET #fp = :fp"
		nm["#fp"] = attrFirstPart
		vals[":fp"] = num(min(part, 1))
		u.recorded = true
	}
	out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(j.id),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("contains(#parts, :pv) AND attribute_not_exists(#error)"),
		ExpressionAttributeNames:  nm,
		ExpressionAttributeValues: vals,
		ReturnValues:              rv,
	})
	if err == nil {
		u.attrs = out.Attributes
		return u, nil
	}
	if !isCondFailed(err) {
		return u, st.wrap("update job", err)
	}
	j2, err := st.getJob(ctx, j.id)
	if err != nil {
		return u, err
	}
	if j2.failed {
		return u, backends.ErrJobFailed
	}
	if first, known := st.firstPart(ctx, j2); known && (part < first || part >= first+j2.total) {
		return u, fmt.Errorf("%w (parts %d to %d)", backends.ErrPartRange, first, first+j2.total-1)
	}
	u.now = j2
	return u, nil
}

// noteFirstPartFrom records a legacy job's numbering when its pending set
// (in j, as a write returned it) tells it: it still held 0 or N.
func (st *Store) noteFirstPartFrom(ctx context.Context, j *jobItem) {
	if first, ok := legacyFirstPart(j); ok {
		st.noteFirstPart(ctx, j.id, j.total, first)
	}
}

// firstPart returns a legacy job's numbering (recorded, or told by its
// pending set) and records it on the item when only the set told it.
func (st *Store) firstPart(ctx context.Context, j *jobItem) (first int64, known bool) {
	first, known = legacyFirstPart(j)
	if _, recorded := j.raw[attrFirstPart]; known && !recorded {
		st.noteFirstPart(ctx, j.id, j.total, first)
	}
	return first, known
}

// noteFirstPart records a legacy job's numbering in wpFirstPart, once: the
// pending set tells it only while it holds part 0 or part N (see the package
// comment). It costs one write of the item's size, once per job. It is
// best effort: a failure (a read-only IAM policy, a timeout) leaves the
// numbering to be recorded the next time wp sees the job.
func (st *Store) noteFirstPart(ctx context.Context, id string, total, first int64) {
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET #wpFirstPart = :fp"),
		ConditionExpression:       aws.String("#total = :total AND attribute_not_exists(#wp) AND attribute_not_exists(#wpFirstPart)"),
		ExpressionAttributeNames:  names(attrTotal, attrWP, attrFirstPart),
		ExpressionAttributeValues: item{":fp": num(first), ":total": num(total)},
	})
}
