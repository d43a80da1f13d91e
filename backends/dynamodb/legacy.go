package dynamodb

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

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
		c.Completed = 1
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
			c.Completed = 1
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
// numbering to be recorded the next time wp sees the job. The same write
// puts the job in the wp-jobs index (wpList, and wpListed 0: a job of
// unknown creation time, listed after wp's own).
func (st *Store) noteFirstPart(ctx context.Context, id string, total, first int64) {
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET #wpFirstPart = :fp, #wpList = :jobs, #wpListed = :zero"),
		ConditionExpression:       aws.String("#total = :total AND attribute_not_exists(#wp) AND attribute_not_exists(#wpFirstPart)"),
		ExpressionAttributeNames:  names(attrTotal, attrWP, attrFirstPart, attrList, attrListed),
		ExpressionAttributeValues: item{":fp": num(first), ":total": num(total), ":jobs": str(listKey), ":zero": num(0)},
	})
}

// noteListed puts a job that lacks them (a legacy job, or one an older wp
// wrote) in the wp-jobs index: wpList, and wpListed its creation time (0
// when unknown). One small write, once per job, best effort like
// noteFirstPart; a legacy job whose numbering is still to be recorded gets
// them in that write instead.
func (st *Store) noteListed(ctx context.Context, j *jobItem) {
	if j.listed {
		return
	}
	listed := int64(0)
	if !j.legacy {
		listed = j.created
	}
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(j.id),
		UpdateExpression:          aws.String("SET #wpList = :jobs, #wpListed = :at"),
		ConditionExpression:       aws.String("attribute_exists(#total) AND attribute_not_exists(#creating) AND attribute_not_exists(#wpList)"),
		ExpressionAttributeNames:  names(attrTotal, attrCreating, attrList, attrListed),
		ExpressionAttributeValues: item{":jobs": str(listKey), ":at": num(listed)},
	})
}

// completePartsLegacy completes parts of a legacy job: one DELETE parts :P on
// its one item, on condition that the first part written is pending and the
// job has not failed (a refused write reads the item and writes the parts
// still pending). The write returns the set as it was, which says how many
// of the parts it completed and, as in completeLegacy, the numbering.
// Given-up parts among them are converted one by one (convertLegacy).
func (st *Store) completePartsLegacy(ctx context.Context, j *jobItem, parts []int64) (backends.Completion, error) {
	c := backends.Completion{ReduceSent: j.reduceSent}
	if j.failed {
		return c, backends.ErrJobFailed
	}
	first, known := getNum(j.raw, attrFirstPart)
	lo, hi := int64(0), j.total // unknown numbering: 0..N, as completeLegacy
	if known {
		lo, hi = first, first+j.total-1
	}
	if parts[0] < lo || parts[len(parts)-1] > hi {
		return c, fmt.Errorf("%w (parts %d to %d)", backends.ErrPartRange, lo, hi)
	}
	write := parts
	view := j
	for attempt := 0; attempt < 5 && len(write) > 0; attempt++ {
		out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName:                 aws.String(st.table),
			Key:                       key(j.id),
			UpdateExpression:          aws.String("DELETE #parts :p"),
			ConditionExpression:       aws.String("contains(#parts, :pv) AND attribute_not_exists(#error)"),
			ExpressionAttributeNames:  names(attrParts, attrError),
			ExpressionAttributeValues: item{":p": numSet(write...), ":pv": num(write[0])},
			ReturnValues:              types.ReturnValueUpdatedOld,
		})
		if err == nil {
			old, _ := getNS(out.Attributes, attrParts)
			k := len(intersect(write, old))
			c.Completed += k
			if k == len(old) {
				c.Finisher, c.Done = true, true
			}
			if !known {
				st.noteFirstPartFrom(ctx, &jobItem{id: j.id, raw: out.Attributes, total: j.total})
			}
			break
		}
		if !isCondFailed(err) {
			return c, st.wrap("update job", err)
		}
		if view, err = st.getJob(ctx, j.id); err != nil {
			return c, err
		}
		if view.failed {
			return c, backends.ErrJobFailed
		}
		pending, _ := getNS(view.raw, attrParts)
		write = intersect(parts, pending)
		if len(write) == 0 {
			c.Done = len(pending) == 0
		}
	}
	c.ReduceSent = c.ReduceSent || view.reduceSent
	for _, p := range parts {
		if !nsContains(view.raw, attrGivenUp, p) {
			continue
		}
		converted, err := st.convertLegacy(ctx, view, p)
		if err != nil {
			return c, err
		}
		if converted {
			c.Completed++
		}
	}
	c.Duplicate = c.Completed == 0
	return c, nil
}

// intersect is the members of sorted a that are in sorted b.
func intersect(a, b []int64) []int64 {
	var out []int64
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			out = append(out, x)
		}
	}
	return out
}
