package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// jobCtx is what one call knows of a job: its id, and its item once read
// (the rare path reads it at most once a call).
type jobCtx struct {
	id string
	j  *jobItem
}

// jobOf reads the job item (whole, strongly consistent) the first time a
// call needs it: ErrNotFound for a job that does not exist, is being
// written or deleted, or has expired.
func (st *Store) jobOf(ctx context.Context, jc *jobCtx) (*jobItem, error) {
	if jc.j != nil {
		return jc.j, nil
	}
	j, err := st.getJob(ctx, jc.id)
	if err != nil {
		return nil, err
	}
	jc.j = j
	return j, nil
}

// errLegacy: the job is a legacy one (no shard items); the caller completes
// it on its one item.
var errLegacy = errors.New("a legacy job")

// Complete records part as done: see the package comment for the writes and
// their cost. The common case is one request: the conditional delete of the
// part from its shard. Everything else (unknown, failed or expired job,
// legacy job, part out of range, duplicate, a shard idle for recentSweep
// minutes) makes that condition fail, and only then is the job item read to
// tell which.
func (st *Store) Complete(ctx context.Context, jobID string, part int64) (backends.Completion, error) {
	if jobID == "" {
		return backends.Completion{}, fmt.Errorf("complete: job id is empty: %w", backends.ErrNotFound)
	}
	jc := &jobCtx{id: jobID}
	if part < 0 {
		j, err := st.jobOf(ctx, jc)
		switch {
		case err != nil:
			return backends.Completion{}, err
		case j.failed:
			return backends.Completion{}, backends.ErrJobFailed
		case j.legacy:
			return st.completeLegacy(ctx, j, part)
		}
		return backends.Completion{}, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, j.total-1)
	}
	c, err := st.completeParts(ctx, jc, []int64{part})
	if errors.Is(err, errLegacy) {
		return st.completeLegacy(ctx, jc.j, part)
	}
	return c, err
}

// CompleteParts records parts (sorted and distinct: the Store checks) as
// done: one conditional write per shard they fall in (see doc.go, "Batches").
// They are checked against the job's total first, which the Store knows from
// the Peek wp run makes before (or reads from the job item), so that a part
// out of range records nothing.
func (st *Store) CompleteParts(ctx context.Context, jobID string, parts []int64) (backends.Completion, error) {
	if jobID == "" {
		return backends.Completion{}, fmt.Errorf("complete: job id is empty: %w", backends.ErrNotFound)
	}
	jc := &jobCtx{id: jobID}
	total, ok := st.totals.get(jobID)
	if !ok {
		j, err := st.jobOf(ctx, jc)
		if err != nil {
			return backends.Completion{}, err
		}
		if j.failed {
			return backends.Completion{}, backends.ErrJobFailed
		}
		if j.legacy {
			return st.completePartsLegacy(ctx, j, parts)
		}
		if err := checkLayout(j); err != nil {
			return backends.Completion{}, err
		}
		total = j.total
	}
	if parts[0] < 0 || parts[len(parts)-1] >= total {
		return backends.Completion{}, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, total-1)
	}
	c, err := st.completeParts(ctx, jc, parts)
	if errors.Is(err, errLegacy) {
		return st.completePartsLegacy(ctx, jc.j, parts)
	}
	return c, err
}

// shardResult is what completing parts of one shard did.
type shardResult struct {
	completed int
	// wrote: pending parts of the shard were completed, so the job is done
	// only if done says so.
	wrote          bool
	finisher, done bool
	// repaired: a duplicate found the shard's propagation unfinished and
	// finished it; done tells whether the job is done.
	repaired bool
}

// completeParts completes parts (sorted) of a wp job shard by shard, and
// adds up what each shard's write learnt.
func (st *Store) completeParts(ctx context.Context, jc *jobCtx, parts []int64) (backends.Completion, error) {
	var c backends.Completion
	anyWrote, anyDone, anyRepaired := false, false, false
	for i := 0; i < len(parts); {
		s := parts[i] / shardSize
		k := i
		offs := []int64{}
		for ; k < len(parts) && parts[k]/shardSize == s; k++ {
			offs = append(offs, parts[k]%shardSize)
		}
		i = k
		r, err := st.completeShard(ctx, jc, s, offs)
		c.Completed += r.completed
		if r.finisher {
			c.Finisher = true
		}
		if err != nil {
			return c, err
		}
		anyWrote = anyWrote || r.wrote
		anyDone = anyDone || r.done
		anyRepaired = anyRepaired || r.repaired
	}
	switch {
	case anyDone:
		c.Done = true
	case anyWrote:
		c.Done = false
	case jc.j != nil:
		c.Done = !jc.j.groupsLeft
	}
	if jc.j != nil {
		c.ReduceSent = jc.j.reduceSent
	}
	c.Duplicate = c.Completed == 0
	return c, nil
}

// completeShard completes the parts offs (sorted offsets) of shard s:
//
//  1. the hot path: one UpdateItem, DELETE parts :P, the minute's counter
//     ADDed and the sweep REMOVEd, SET t, on condition that the first of
//     them is pending, the job has not failed (f), the item has not expired
//     and was written within recentSweep minutes; ALL_OLD says which parts
//     were pending (the count is put right by a second write in the rare
//     case that some were not), and whether the write emptied the shard
//     (then the propagation, with the shard's counters);
//  2. when that is refused, the rare path reads the job item (why: not
//     found, failed, legacy, out of range) and the shard, and writes again
//     the parts still pending, removing the stale counters it read;
//  3. given-up parts among offs are converted (convert);
//  4. a duplicate that finds the shard empty long after its last end
//     finishes its propagation (repair), as Complete always did.
func (st *Store) completeShard(ctx context.Context, jc *jobCtx, s int64, offs []int64) (shardResult, error) {
	var res shardResult
	for round := 0; round < 4 && len(offs) > 0; round++ {
		view, err := st.writeShard(ctx, jc, s, offs, round > 0, &res)
		if err != nil {
			return res, err
		}
		// Given-up parts: converted one by one, as a single Complete
		// converts one.
		gu, _ := getNS(view, attrGU)
		var again []int64
		for _, off := range intersect(offs, gu) {
			counted := jc.j != nil && nsContains(jc.j.raw, attrGivenUp, s*shardSize+off)
			converted, pending, err := st.convert(ctx, jc, s*shardSize+off, view, counted)
			if err != nil {
				return res, err
			}
			switch {
			case converted:
				res.completed++
			case pending:
				again = append(again, off) // a Retry moved it back
			}
		}
		if len(again) > 0 {
			offs = again
			continue
		}
		if res.completed > 0 || res.wrote {
			return res, nil
		}
		// A duplicate.
		j, err := st.jobOf(ctx, jc)
		if err != nil {
			return res, err
		}
		if !j.groupsLeft {
			res.done = true
			return res, nil
		}
		if _, left := view[attrParts]; left {
			return res, nil
		}
		// The shard is empty. Its emptier normally tells the group within
		// milliseconds; if that was long ago and the job is not done, it
		// died first: finish its work.
		if t, _ := getNum(view, attrT); st.nowMS()-t < st.repairAfter.Milliseconds() {
			return res, nil
		}
		res.done, err = st.repair(ctx, jc, s, view)
		res.repaired = true
		return res, err
	}
	return res, nil
}

// writeShard is steps 1 and 2 of completeShard. It returns the shard as the
// write found it (ALL_OLD), or as the rare path read it when nothing was
// left to write.
func (st *Store) writeShard(ctx context.Context, jc *jobCtx, s int64, offs []int64, readFirst bool, res *shardResult) (item, error) {
	write := offs
	var view item
	for attempt := 0; ; attempt++ {
		nowMS := st.nowMS()
		w := minuteOf(nowMS)
		var stale []int64
		if readFirst || attempt > 0 {
			j, err := st.jobOf(ctx, jc)
			if err != nil {
				return nil, err
			}
			if j.failed {
				return nil, backends.ErrJobFailed
			}
			if j.legacy {
				return nil, errLegacy
			}
			if err := checkLayout(j); err != nil {
				return nil, err
			}
			if s*shardSize+offs[len(offs)-1] >= j.total {
				return nil, fmt.Errorf("%w (parts 0 to %d)", backends.ErrPartRange, j.total-1)
			}
			sh, err := st.getItem(ctx, shardKey(jc.id, s), "", nil)
			if err != nil {
				return nil, err
			}
			if sh == nil {
				return nil, fmt.Errorf("shard item %s is missing (the job is damaged: delete it and create it again)", shardKey(jc.id, s))
			}
			view = sh
			pending, _ := getNS(sh, attrParts)
			write = intersect(offs, pending)
			if len(write) == 0 || sh[attrFailed] != nil || attempt > 4 {
				// Nothing pending to write (or a failed job being
				// revived, whose shards refuse completions until then).
				return view, nil
			}
			stale = staleMinutes(sh, shardCounterPrefix, w)
		}
		u := newUpdate().name(attrParts, attrT, attrFailed).
			Delete("#parts :p").Set("#t = :now").
			val(":p", numSet(write...)).val(":pv", num(write[0])).val(":now", num(nowMS)).
			counts(tally{prefix: shardCounterPrefix, w: w, add: counters{w: int64(len(write))}, stale: stale})
		cond := "contains(#parts, :pv) AND attribute_not_exists(#f) AND " + liveCond(u.names, u.vals, nowMS)
		if !readFirst && attempt == 0 {
			cond += " AND " + freshCond(u, attrT, nowMS)
		}
		out, err := st.db.UpdateItem(ctx, u.input(st.table, key(shardKey(jc.id, s)), cond, types.ReturnValueAllOld))
		if err != nil {
			if isCondFailed(err) {
				continue
			}
			return nil, st.wrap("update shard", err)
		}
		old := out.Attributes
		pending, _ := getNS(old, attrParts)
		k := len(intersect(write, pending))
		if k < len(write) {
			// Some of the parts were completed between the read and
			// the write (or, on the hot path, before it): the counter
			// took them all.
			st.fixCount(ctx, jc.id, s, w, int64(k-len(write)))
		}
		res.completed += k
		res.wrote = true
		if k == len(pending) {
			// This write emptied the shard: tell its group, and maybe
			// the job, with the shard's counters.
			cs := countersOf(old, shardCounterPrefix).inWindow(w)
			cs[w] += int64(k)
			var err error
			res.finisher, res.done, err = st.propagate(ctx, jc, s, nowMS, cs)
			if err != nil {
				return old, err
			}
		}
		return old, nil
	}
}

// fixCount puts right the counter of minute w of shard s by d (best effort:
// the count is a rate, not a record).
func (st *Store) fixCount(ctx context.Context, id string, s, w, d int64) {
	st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(shardKey(id, s)),
		UpdateExpression:          aws.String("ADD " + counterName(shardCounterPrefix, w) + " :d"),
		ConditionExpression:       aws.String("attribute_exists(#id)"),
		ExpressionAttributeNames:  names(attrID),
		ExpressionAttributeValues: item{":d": num(d)},
	})
}

// propagate removes the emptied shard s from its group and, if that emptied
// the group, the group from the job, carrying the shard's counters cs (of
// the window) up and endMS (when its last part ended) as the time the
// group, and then the job, last saw a part end. finisher is true for the
// caller whose write removed the job's last group.
func (st *Store) propagate(ctx context.Context, jc *jobCtx, s, endMS int64, cs counters) (finisher, done bool, err error) {
	g, off := s/groupSize, s%groupSize
	emptied, gcs, err := st.removeFromGroup(ctx, jc.id, g, off, endMS, cs)
	if err != nil || !emptied {
		return false, false, err
	}
	return st.removeGroup(ctx, jc.id, g, endMS, gcs)
}

// removeFromGroup deletes shard offset off from group g, adds the shard's
// counters cs to the group's and sets its t to endMS. emptied is true when
// this call removed the group's last shard; gcs are then the group's
// counters of the window. A condition failure (someone repaired it
// already) is not an error. As on shards, a group unwritten for recentSweep
// minutes is read first (the gap path).
func (st *Store) removeFromGroup(ctx context.Context, id string, g, off, endMS int64, cs counters) (emptied bool, gcs counters, err error) {
	var stale []int64
	for attempt := 0; attempt < 2; attempt++ {
		nowMS := st.nowMS()
		w := minuteOf(nowMS)
		u := newUpdate().name(attrLeft, attrT).Delete("#left :s").Set("#t = :end").
			val(":s", numSet(off)).val(":sv", num(off)).val(":end", num(endMS)).
			counts(tally{prefix: shardCounterPrefix, w: w, add: cs, stale: stale})
		cond := "contains(#left, :sv)"
		if attempt == 0 {
			cond += " AND " + freshCond(u, attrT, nowMS)
		}
		out, err := st.db.UpdateItem(ctx, u.input(st.table, key(groupKey(id, g)), cond, types.ReturnValueAllNew))
		if err == nil {
			_, left := out.Attributes[attrLeft]
			return !left, countersOf(out.Attributes, shardCounterPrefix).inWindow(w), nil
		}
		if !isCondFailed(err) {
			return false, nil, st.wrap("update group", err)
		}
		if attempt == 1 {
			break
		}
		grp, err := st.getItem(ctx, groupKey(id, g), "", nil)
		if err != nil {
			return false, nil, err
		}
		if !nsContains(grp, attrLeft, off) {
			return false, nil, nil
		}
		stale = staleMinutes(grp, shardCounterPrefix, w)
		if t, _ := getNum(grp, attrT); t > endMS {
			endMS = t
		}
	}
	return false, nil, nil
}

// removeGroup deletes group g from the job item, adds the group's counters
// gcs to the job's and sets wpEnded to endMS. finisher is true when this
// call removed the last group; done tells whether no group is left.
func (st *Store) removeGroup(ctx context.Context, id string, g, endMS int64, gcs counters) (finisher, done bool, err error) {
	var stale []int64
	for attempt := 0; attempt < 2; attempt++ {
		nowMS := st.nowMS()
		w := minuteOf(nowMS)
		u := newUpdate().name(attrGroups, attrEnded).Delete("#groups :g").Set("#wpEnded = :end").
			val(":g", numSet(g)).val(":gv", num(g)).val(":end", num(endMS)).
			counts(tally{prefix: jobCounterPrefix, w: w, add: gcs, stale: stale})
		cond := "contains(#groups, :gv)"
		if attempt == 0 {
			cond += " AND " + freshCond(u, attrEnded, nowMS)
		}
		out, err := st.db.UpdateItem(ctx, u.input(st.table, key(id), cond, types.ReturnValueUpdatedNew))
		if err == nil {
			_, left := out.Attributes[attrGroups]
			return !left, !left, nil
		}
		if !isCondFailed(err) {
			return false, false, st.wrap("update job", err)
		}
		if attempt == 1 {
			break
		}
		it, err := st.getItem(ctx, id, "", nil)
		if err != nil {
			return false, false, err
		}
		if it == nil {
			return false, false, backends.ErrNotFound
		}
		if !nsContains(it, attrGroups, g) {
			_, left := it[attrGroups]
			return false, !left, nil
		}
		stale = staleMinutes(it, jobCounterPrefix, w)
		if e, _ := getNum(it, attrEnded); e > endMS {
			endMS = e
		}
	}
	done, err = st.jobDone(ctx, id)
	return false, done, err
}

// repair finishes the propagation of shard s (sh as read), found empty long
// after its last end. It never reports a finisher: the reduce of a job
// whose finisher died is sent through ClaimReduce.
func (st *Store) repair(ctx context.Context, jc *jobCtx, s int64, sh item) (done bool, err error) {
	g, off := s/groupSize, s%groupSize
	grp, err := st.getItem(ctx, groupKey(jc.id, g), "", nil)
	if err != nil {
		return false, err
	}
	w := minuteOf(st.nowMS())
	end, _ := getNum(sh, attrT)
	if t, _ := getNum(grp, attrT); t > end {
		end = t
	}
	switch {
	case grp == nil:
		return st.jobDone(ctx, jc.id)
	case nsContains(grp, attrLeft, off):
		emptied, gcs, err := st.removeFromGroup(ctx, jc.id, g, off, end, countersOf(sh, shardCounterPrefix).inWindow(w))
		if err != nil || !emptied {
			return false, err
		}
		if jc.j != nil && jc.j.ended > end {
			end = jc.j.ended
		}
		_, done, err = st.removeGroup(ctx, jc.id, g, end, gcs)
		return done, err
	default:
		if _, left := grp[attrLeft]; left {
			return false, nil
		}
		if t, _ := getNum(grp, attrT); st.nowMS()-t < st.repairAfter.Milliseconds() {
			return false, nil
		}
		if jc.j != nil && jc.j.ended > end {
			end = jc.j.ended
		}
		_, done, err = st.removeGroup(ctx, jc.id, g, end, countersOf(grp, shardCounterPrefix).inWindow(w))
		return done, err
	}
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
