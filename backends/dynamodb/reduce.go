package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"

	"github.com/wp-tools/wp/backends"
)

// isJobCond is the condition that the key names a visible job item (wp's or
// a legacy one: shard and group items have no total) that has not expired at
// nowMS. It adds the names and values it uses to nm and vals.
func isJobCond(nm map[string]string, vals item, nowMS int64) string {
	nm["#total"] = attrTotal
	nm["#creating"] = attrCreating
	return "attribute_exists(#total) AND attribute_not_exists(#creating) AND " + liveCond(nm, vals, nowMS)
}

// updateJob runs one conditional UpdateItem on a job item. On a condition
// failure it reads the job: ErrNotFound if it is gone, else (false, nil).
func (st *Store) updateJob(ctx context.Context, what, id, update, cond string, nm map[string]string, vals item) (bool, error) {
	if id == "" {
		return false, fmt.Errorf("%s: job id is empty: %w", what, backends.ErrNotFound)
	}
	nm, vals = maps.Clone(nm), maps.Clone(vals)
	if nm == nil {
		nm = map[string]string{}
	}
	if vals == nil {
		vals = item{}
	}
	in := &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(isJobCond(nm, vals, st.nowMS()) + cond),
		ExpressionAttributeNames:  nm,
		ExpressionAttributeValues: vals,
	}
	_, err := st.db.UpdateItem(ctx, in)
	if err == nil {
		return true, nil
	}
	if !isCondFailed(err) {
		return false, st.wrap(what, err)
	}
	if _, err := st.getJob(ctx, id); err != nil {
		return false, err
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
	_, err := st.failJob(ctx, jobID, reason, false)
	return err
}

// failJob is Fail; byTolerance also sets wpTolFailed with error. won is true
// when this call failed the job.
func (st *Store) failJob(ctx context.Context, jobID, reason string, byTolerance bool) (won bool, err error) {
	update, nm, vals := "SET #error = :r", names(attrError), item{":r": str(reason)}
	if byTolerance {
		update += ", #tf = :t"
		nm["#tf"] = attrTolFailed
		vals[":t"] = boolean(true)
	}
	won, err = st.updateJob(ctx, "fail job", jobID, update, " AND attribute_not_exists(#error)", nm, vals)
	if err != nil {
		return false, err
	}
	return won, st.markFailed(ctx, jobID, false)
}

// markFailed marks the pending shards of a failed wp job (see Fail); force
// marks them even when failMarked says it was done.
func (st *Store) markFailed(ctx context.Context, jobID string, force bool) error {
	j, err := st.getJob(ctx, jobID)
	if err != nil {
		return err
	}
	if j.legacy || (!force && getBool(j.raw, attrFailMarked)) {
		return nil
	}
	keys, err := st.pendingShards(ctx, j)
	if err != nil {
		return err
	}
	if err := st.updateShards(ctx, keys, "SET #f = :t", "attribute_exists(#parts)", names(attrFailed, attrParts), item{":t": boolean(true)}); err != nil {
		return fmt.Errorf("run it again to finish: %w", err)
	}
	_, err = st.updateJob(ctx, "fail job", jobID, "SET #fm = :t", "", map[string]string{"#fm": attrFailMarked}, item{":t": boolean(true)})
	return err
}

// ClaimReduce sets claimToken and claimExp on condition that no live
// claim exists, and for a wp job that wp has not recorded the reduce
// (wpReduceSent, or reduceSent on a job of layout 1) and either no group is
// pending and the job has not failed, or it has failed and was created with
// wpReduceOnFailure; for a legacy job that it has not failed, no part is
// pending and neither library recorded the reduce (reduceSent,
// metadata.reduce_message_sent). The legacy libraries' flags are not read
// on a wp job: an old worker that set one took the job for its own (see the
// package comment). One conditional write, whatever the job.
func (st *Store) ClaimReduce(ctx context.Context, jobID string, lease time.Duration) (string, bool, error) {
	tok := uuid.NewString()
	nm := names(attrWP, attrParts, attrGroups, attrError, attrReduceSent, attrWPReduceSent, attrMetadata, attrClaimExp, attrClaimToken, attrROF)
	nm["#rms"] = pyReduceSentKey
	now := st.nowMS()
	ok, err := st.updateJob(ctx, "claim reduce", jobID,
		"SET #claimToken = :tok, #claimExp = :exp",
		" AND (attribute_not_exists(#claimExp) OR #claimExp <= :now)"+
			" AND ((attribute_exists(#wp)"+
			" AND (attribute_not_exists(#wpReduceSent) OR #wpReduceSent = :f)"+
			" AND (#wp <> :one OR attribute_not_exists(#reduceSent) OR #reduceSent = :f)"+
			" AND ((attribute_not_exists(#error) AND attribute_not_exists(#groups))"+
			" OR (attribute_exists(#error) AND #wpReduceOnFailure = :t)))"+
			" OR (attribute_not_exists(#wp) AND attribute_not_exists(#error) AND attribute_not_exists(#parts)"+
			" AND (attribute_not_exists(#reduceSent) OR #reduceSent = :f)"+
			" AND (attribute_not_exists(#metadata.#rms) OR #metadata.#rms <> :t)))",
		nm, item{":tok": str(tok), ":exp": num(now + lease.Milliseconds()), ":f": boolean(false), ":t": boolean(true),
			":now": num(now), ":one": num(1)})
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

// MarkReduceSent records the reduce as sent and clears any claim. On a wp
// job that is wpReduceSent. On a legacy job it is recorded the way the
// job's library reads it: reduceSent (the Node library's flag) and, unless
// the job is known to be the Node library's, the Python library's
// metadata.reduce_message_sent, set inside the user's metadata map rather
// than replacing it (a job with no metadata gets {"reduce_message_sent":
// true}, as the Python library writes it; metadata that is not a map, which
// the Python library could not read either, is left alone).
func (st *Store) MarkReduceSent(ctx context.Context, jobID string) error {
	nm := names(attrID, attrWP, attrTotal, attrFirstPart, attrMetadata)
	for attempt := 0; attempt < 5; attempt++ {
		it, err := st.getItem(ctx, jobID, "#id, #wp, #total, #wpFirstPart, #metadata", nm)
		if err != nil {
			return err
		}
		if _, isJob := it[attrTotal]; !isJob {
			return backends.ErrNotFound
		}
		if _, isWP := it[attrWP]; isWP {
			ok, err := st.updateJob(ctx, "mark reduce sent", jobID, "SET #wrs = :t REMOVE #claimToken, #claimExp", " AND attribute_exists(#wp)",
				map[string]string{"#wrs": attrWPReduceSent, "#claimToken": attrClaimToken, "#claimExp": attrClaimExp, "#wp": attrWP},
				item{":t": boolean(true)})
			if err == nil && !ok {
				return fmt.Errorf("the job changed meanwhile: %w", backends.ErrNotFound)
			}
			return err
		}
		update := "SET #reduceSent = :t"
		cond := " AND attribute_not_exists(#wp)"
		nm := names(attrReduceSent, attrClaimToken, attrClaimExp, attrWP)
		vals := item{":t": boolean(true)}
		if first, known := getNum(it, attrFirstPart); !known || first != 1 {
			nm["#metadata"] = attrMetadata
			switch meta, present := it[attrMetadata]; {
			case !present:
				update += ", #metadata = :pym"
				cond += " AND attribute_not_exists(#metadata)"
				vals[":pym"] = &types.AttributeValueMemberM{Value: item{pyReduceSentKey: boolean(true)}}
			case isMap(meta):
				nm["#rms"] = pyReduceSentKey
				update += ", #metadata.#rms = :t"
				cond += " AND attribute_type(#metadata, :m)"
				vals[":m"] = str("M")
			default:
				cond += " AND attribute_exists(#metadata) AND NOT attribute_type(#metadata, :m)"
				vals[":m"] = str("M")
			}
		}
		ok, err := st.updateJob(ctx, "mark reduce sent", jobID, update+" REMOVE #claimToken, #claimExp", cond, nm, vals)
		if err != nil || ok {
			return err
		}
		// The metadata changed between the read and the write: read again.
	}
	return errors.New("the job's metadata keeps changing")
}

func isMap(av types.AttributeValue) bool {
	_, ok := av.(*types.AttributeValueMemberM)
	return ok
}

// MarkReduced sets reduced.
func (st *Store) MarkReduced(ctx context.Context, jobID string) error {
	ok, err := st.updateJob(ctx, "mark reduced", jobID, "SET #reduced = :t", "",
		names(attrReduced), item{":t": boolean(true)})
	if err == nil && !ok {
		return fmt.Errorf("the job changed meanwhile: %w", backends.ErrNotFound)
	}
	return err
}
