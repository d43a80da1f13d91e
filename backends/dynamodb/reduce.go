package dynamodb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/uuid"

	"github.com/wp-tools/wp/backends"
)

// isJob is the condition that the key names a visible job item (wp's or a
// legacy one): shard and group items have no total.
const isJob = "attribute_exists(#total) AND attribute_not_exists(#creating)"

// updateJob runs one conditional UpdateItem on a job item. On a condition
// failure it reads the job: ErrNotFound if it is gone, else (false, nil).
func (st *Store) updateJob(ctx context.Context, what, id, update, cond string, nm map[string]string, vals item) (bool, error) {
	if id == "" {
		return false, fmt.Errorf("%s: job id is empty: %w", what, backends.ErrNotFound)
	}
	nm["#total"] = attrTotal
	nm["#creating"] = attrCreating
	in := &ddb.UpdateItemInput{
		TableName:                aws.String(st.table),
		Key:                      key(id),
		UpdateExpression:         aws.String(update),
		ConditionExpression:      aws.String(isJob + cond),
		ExpressionAttributeNames: nm,
	}
	if len(vals) > 0 {
		in.ExpressionAttributeValues = vals
	}
	_, err := st.db.UpdateItem(ctx, in)
	if err == nil {
		return true, nil
	}
	if !isCondFailed(err) {
		return false, st.wrap(what+" "+id, err)
	}
	if _, err := st.getJob(ctx, id); err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return false, nil
}

// Fail sets error (the attribute both legacy libraries use) unless it is
// set already: the first reason stays. For a wp job it then marks every
// still-pending shard item failed (f), so that Complete's one conditional
// write refuses them; failMarked on the job item records that this was
// done, so an interrupted Fail is finished by the next. Cost: one write per
// pending shard (at most total/256), once.
func (st *Store) Fail(ctx context.Context, jobID, reason string) error {
	if _, err := st.updateJob(ctx, "fail job", jobID, "SET #error = :r", " AND attribute_not_exists(#error)",
		names(attrError), item{":r": str(reason)}); err != nil {
		return err
	}
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return fmt.Errorf("fail job: %w", err)
	}
	if j.legacy || getBool(j.raw, attrFailMarked) {
		return nil
	}
	keys, err := st.pendingShards(ctx, j)
	if err != nil {
		return fmt.Errorf("fail job %s: %w", jobID, err)
	}
	ctx2, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < min(batchWorkers, len(keys)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				_, err := st.db.UpdateItem(ctx2, &ddb.UpdateItemInput{
					TableName:                 aws.String(st.table),
					Key:                       key(k),
					UpdateExpression:          aws.String("SET #f = :t"),
					ConditionExpression:       aws.String("attribute_exists(#parts)"),
					ExpressionAttributeNames:  names(attrFailed, attrParts),
					ExpressionAttributeValues: item{":t": boolean(true)},
				})
				if err != nil && !isCondFailed(err) {
					cancel(st.wrap("mark shard "+k+" failed", err))
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
	if err := context.Cause(ctx2); err != nil {
		return fmt.Errorf("fail job %s (run it again to finish): %w", jobID, err)
	}
	_, err = st.updateJob(ctx, "fail job", jobID, "SET #fm = :t", "", map[string]string{"#fm": attrFailMarked}, item{":t": boolean(true)})
	return err
}

// ClaimReduce sets claimToken and claimExp on condition that no part is
// pending (no parts set, no groups set), the job has not failed, the reduce
// is not recorded as sent (by wp, the Node library or the Python one) and no
// live claim exists.
func (st *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (string, bool, error) {
	tok := uuid.NewString()
	nm := names(attrParts, attrGroups, attrError, attrReduceSent, attrMetadata, attrClaimExp, attrClaimToken)
	nm["#rms"] = pyReduceSentKey
	now := st.nowMS()
	ok, err := st.updateJob(ctx, "claim reduce", jobID,
		"SET #claimToken = :tok, #claimExp = :exp",
		" AND attribute_not_exists(#parts) AND attribute_not_exists(#groups) AND attribute_not_exists(#error)"+
			" AND (attribute_not_exists(#reduceSent) OR #reduceSent = :f)"+
			" AND (attribute_not_exists(#metadata.#rms) OR #metadata.#rms <> :t)"+
			" AND (attribute_not_exists(#claimExp) OR #claimExp <= :now)",
		nm, item{":tok": str(tok), ":exp": num(now + lease.Milliseconds()), ":f": boolean(false), ":t": boolean(true), ":now": num(now)})
	if err != nil || !ok {
		return "", false, err
	}
	return tok, true, nil
}

// ReleaseReduce removes the claim if token holds it.
func (st *Store) ReleaseReduce(ctx context.Context, jobID, token string) error {
	_, err := st.updateJob(ctx, "release reduce", jobID, "REMOVE #claimToken, #claimExp", " AND #claimToken = :tok",
		names(attrClaimToken, attrClaimExp), item{":tok": str(token)})
	return err
}

// MarkReduceSent sets reduceSent (which the Node library reads too) and
// clears any claim.
func (st *Store) MarkReduceSent(ctx context.Context, jobID string) error {
	ok, err := st.updateJob(ctx, "mark reduce sent", jobID, "SET #reduceSent = :t REMOVE #claimToken, #claimExp", "",
		names(attrReduceSent, attrClaimToken, attrClaimExp), item{":t": boolean(true)})
	if err == nil && !ok {
		return fmt.Errorf("mark reduce sent: job %s changed meanwhile: %w", jobID, backends.ErrNotFound)
	}
	return err
}

// MarkReduced sets reduced.
func (st *Store) MarkReduced(ctx context.Context, jobID string) error {
	ok, err := st.updateJob(ctx, "mark reduced", jobID, "SET #reduced = :t", "",
		names(attrReduced), item{":t": boolean(true)})
	if err == nil && !ok {
		return fmt.Errorf("mark reduced: job %s changed meanwhile: %w", jobID, backends.ErrNotFound)
	}
	return err
}
