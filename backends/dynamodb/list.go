package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/wp-tools/wp/backends"
)

// The wp-jobs index (see doc.go, "Listing").
const (
	indexName = "wp-jobs"
	// listKey is the one value of wpList: every listed job shares the
	// index's partition, sorted by wpListed.
	listKey = "jobs"
)

// indexAttrs are the job item's attributes the index projects (INCLUDE;
// DynamoDB takes at most 20): everything List builds a Status from, and
// nothing that a completion or a reduce claim changes, nor a legacy job's
// parts set (up to 400 KB, rewritten by every completion of the libraries).
var indexAttrs = []string{
	attrTotal, attrWP, attrGroups, attrError, attrWPReduceSent, attrReduceSent, attrReduced,
	attrMetadata, attrCreated, attrFirstPart, attrGivenUp, attrTolerance, attrTolFailed, attrROF,
	attrDigest, attrExpires, attrEnded, attrBatch, attrBatchBytes,
}

// noIndexError: the table has no usable wp-jobs index (why says so).
type noIndexError struct{ why string }

func (e *noIndexError) Error() string { return e.why }

// asNoIndex tells a Query refused for want of the index.
func asNoIndex(err error) (*noIndexError, bool) {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		return nil, false
	}
	switch msg := ae.ErrorMessage(); {
	case strings.Contains(msg, "does not have the specified index"):
		return &noIndexError{"it has no " + indexName + " index"}, true
	case strings.Contains(strings.ToLower(msg), "backfilling"):
		return &noIndexError{"its " + indexName + " index is still being built"}, true
	}
	return nil, false
}

// List yields the jobs newest first. On a table with the wp-jobs index it
// queries the index, pages of about opt.Limit jobs, and builds each Status
// from the projected job item and its pending group items (Remaining
// estimated from the groups' pending shards; no shard is read); a legacy
// job's item is read whole, for its parts set. On a table without it, or
// with opt.Scan, it scans the whole table (telling opt.Note why), sorts the
// jobs and reads the groups the same way.
func (st *Store) List(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) error {
	if !opt.Scan {
		err := st.listIndex(ctx, opt, fn)
		ni, ok := asNoIndex(err)
		if !ok {
			return err
		}
		if opt.Note != nil {
			opt.Note(fmt.Sprintf("listing scans the whole of table %s, in proportion to its size, not to the jobs listed: %s (wp table upgrade %s adds it)", st.table, ni.why, st.table))
		}
	}
	return st.listScan(ctx, opt, fn)
}

// sinceMS is the least created (unix ms) opt.Since lets through; 0: no
// bound (jobs of unknown creation time included).
func sinceMS(opt backends.ListOptions) int64 {
	if opt.Since.IsZero() {
		return 0
	}
	ms := opt.Since.UnixMilli()
	if time.UnixMilli(ms).Before(opt.Since) {
		ms++
	}
	return max(ms, 1)
}

// emitter hands Statuses to fn, each with the read units consumed since
// the one before.
type emitter struct {
	st       *Store
	r        *reads
	reported float64
	fn       func(backends.Status) error
}

func (e *emitter) emit(s backends.Status) error {
	u := e.r.total()
	s.ReadUnits = u - e.reported
	e.reported = u
	return e.fn(s)
}

// statuses builds the Statuses of jobs (in order): the wp jobs' from their
// items (partial: the index's projection) and pending groups, the legacy
// jobs' from their whole items, read here when partial.
func (e *emitter) statuses(ctx context.Context, jobs []*jobItem, partial bool) error {
	if len(jobs) == 0 {
		return nil
	}
	var wp, legacy []*jobItem
	for _, j := range jobs {
		if j.legacy {
			legacy = append(legacy, j)
		} else {
			wp = append(wp, j)
		}
	}
	prog, err := e.st.progressOfItems(ctx, wp, e.r, false, partial)
	if err != nil {
		return err
	}
	whole := map[string]*jobItem{}
	if partial && len(legacy) > 0 {
		keys := make([]string, len(legacy))
		for i, j := range legacy {
			keys[i] = j.id
		}
		items, err := e.st.getManyR(ctx, keys, e.r)
		if err != nil {
			return err
		}
		for id, it := range items {
			if j, ok := parseJob(it); ok && j.visible() && !j.expired(e.st.nowMS()) {
				whole[id] = j
			}
		}
	}
	writes := listWrites
	if partial {
		writes = noWrites
	}
	for _, j := range jobs {
		var s backends.Status
		switch {
		case !j.legacy:
			s, err = e.st.toStatus(ctx, j, prog[j.id], writes)
		case partial:
			w, ok := whole[j.id]
			if !ok {
				continue // deleted since the index listed it
			}
			s, err = e.st.toStatus(ctx, w, jobProgress(w, false), listWrites)
		default:
			s, err = e.st.toStatus(ctx, j, jobProgress(j, false), listWrites)
		}
		if err != nil {
			return err
		}
		if err := e.emit(s); err != nil {
			return err
		}
	}
	return nil
}

// listIndex queries the wp-jobs index newest first. Jobs created in the
// same millisecond (and the jobs of other tools, all at 0) are held until
// the next different time, and yielded by id.
func (st *Store) listIndex(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) error {
	e := &emitter{st: st, r: newReads(ctx), fn: fn}
	cond := "#wpList = :jobs"
	vals := item{":jobs": str(listKey)}
	nm := names(attrList)
	if since := sinceMS(opt); since > 0 {
		cond += " AND #wpListed >= :since"
		vals[":since"] = num(since)
		nm["#wpListed"] = attrListed
	}
	filter := liveCond(nm, vals, st.nowMS())
	var start item
	var tie []*jobItem
	tieAt := int64(-1)
	for {
		in := &ddb.QueryInput{
			TableName:                 aws.String(st.table),
			IndexName:                 aws.String(indexName),
			KeyConditionExpression:    aws.String(cond),
			FilterExpression:          aws.String(filter),
			ExpressionAttributeNames:  nm,
			ExpressionAttributeValues: vals,
			ScanIndexForward:          aws.Bool(false),
			ExclusiveStartKey:         start,
			ReturnConsumedCapacity:    types.ReturnConsumedCapacityTotal,
		}
		if opt.Limit > 0 {
			// One more than asked: the page then usually shows where
			// the last job's millisecond ends.
			in.Limit = aws.Int32(int32(min(opt.Limit+1, 1000)))
		}
		out, err := st.db.Query(ctx, in)
		if err != nil {
			if _, ok := asNoIndex(err); ok {
				return err
			}
			return st.wrap("list jobs", err)
		}
		if out.ConsumedCapacity != nil {
			e.r.add(*out.ConsumedCapacity)
		}
		var ready []*jobItem
		for _, it := range out.Items {
			j, ok := indexedJob(it)
			if !ok {
				continue
			}
			at, _ := getNum(it, attrListed)
			if at != tieAt {
				ready = append(ready, sortedByID(tie)...)
				tie, tieAt = nil, at
			}
			tie = append(tie, j)
		}
		last := len(out.LastEvaluatedKey) == 0
		if last {
			ready = append(ready, sortedByID(tie)...)
		}
		// A few at a time: the libraries' jobs, all at 0 and held to the
		// end, are read whole, and a caller that stops early should not
		// pay for all of them.
		for i := 0; i < len(ready); i += 25 {
			if err := e.statuses(ctx, ready[i:min(i+25, len(ready))], true); err != nil {
				return err
			}
		}
		if last {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

// indexedJob parses a job item as the index projects it.
func indexedJob(it item) (*jobItem, bool) {
	if _, isWP := it[attrWP]; isWP {
		// Not projected: this wp's sizes (a job of another wp's sizes
		// is refused by the commands that write it).
		it[attrShardSize], it[attrGroupSize] = num(shardSize), num(groupSize)
	}
	j, ok := parseJob(it)
	if !ok || !j.visible() {
		return nil, false
	}
	return j, true
}

func sortedByID(jobs []*jobItem) []*jobItem {
	slices.SortFunc(jobs, func(a, b *jobItem) int { return strings.Compare(a.id, b.id) })
	return jobs
}

// listScan scans the whole table page by page (following LastEvaluatedKey
// to the end), keeps the job items (wp's and legacy ones; shard, group and
// details items have no total), sorts them newest first and yields them 100
// at a time, reading the pending groups of each hundred's running wp jobs.
// It holds every job item in memory: the sort needs them all.
func (st *Store) listScan(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) error {
	e := &emitter{st: st, r: newReads(ctx), fn: fn}
	since := sinceMS(opt)
	var jobs []*jobItem
	var start item
	for {
		out, err := st.db.Scan(ctx, &ddb.ScanInput{
			TableName:                aws.String(st.table),
			ConsistentRead:           aws.Bool(e.r.consistentRead()),
			ExclusiveStartKey:        start,
			FilterExpression:         aws.String("attribute_exists(#total) AND attribute_not_exists(#creating)"),
			ExpressionAttributeNames: names(attrTotal, attrCreating),
			ReturnConsumedCapacity:   types.ReturnConsumedCapacityTotal,
		})
		if err != nil {
			return st.wrap("list jobs", err)
		}
		if out.ConsumedCapacity != nil {
			e.r.add(*out.ConsumedCapacity)
		}
		for _, it := range out.Items {
			j, ok := parseJob(it)
			if !ok || !j.visible() || j.expired(st.nowMS()) {
				continue
			}
			if since > 0 && (j.legacy || j.created < since) {
				continue
			}
			jobs = append(jobs, j)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	createdOf := func(j *jobItem) int64 {
		if j.legacy {
			return 0
		}
		return j.created
	}
	slices.SortFunc(jobs, func(a, b *jobItem) int {
		ca, cb := createdOf(a), createdOf(b)
		switch {
		case (ca == 0) != (cb == 0):
			if ca == 0 {
				return 1
			}
			return -1
		case ca != cb:
			if ca > cb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	for i := 0; i < len(jobs); i += 100 {
		if err := e.statuses(ctx, jobs[i:min(i+100, len(jobs))], false); err != nil {
			return err
		}
	}
	return nil
}
