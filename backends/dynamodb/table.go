package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// The index's own throughput on a table with provisioned capacity
// (UpgradeTable). A listing reads about half a unit per 8 KB of job items;
// the index is written when a job is created, ends a group, gives a part
// up, fails, is reduced or has its expiry set: a few writes a job, not one a
// part. Raise them with the table's other settings if many jobs are created
// or many parts given up at once (a throttled index throttles the writes to
// the table that change it).
const (
	indexReadUnits  = 5
	indexWriteUnits = 5
)

// keyAttributes are the table's and the index's key attributes.
var keyAttributes = []types.AttributeDefinition{
	{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS},
	{AttributeName: aws.String(attrList), AttributeType: types.ScalarAttributeTypeS},
	{AttributeName: aws.String(attrListed), AttributeType: types.ScalarAttributeTypeN},
}

// jobsIndex is the wp-jobs index, with throughput pt on a provisioned
// table (nil on an on-demand one).
func jobsIndex(pt *types.ProvisionedThroughput) types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName: aws.String(indexName),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrList), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrListed), KeyType: types.KeyTypeRange},
		},
		Projection:            &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: indexAttrs},
		ProvisionedThroughput: pt,
	}
}

// CreateTable creates a progress table: hash key id (S), on-demand billing,
// the wp-jobs index (see doc.go, "Listing"), and the time to live on
// wpExpires. It waits until the table is ACTIVE (at most 5 minutes) and
// fails with a clear error if the table exists. An endpoint without time to
// live (dynalite, a local emulator) gets the table without it: expired jobs
// are then hidden but never reclaimed.
func CreateTable(ctx context.Context, cfg aws.Config, name string) error {
	db := ddb.NewFromConfig(cfg)
	_, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:              aws.String(name),
		AttributeDefinitions:   keyAttributes,
		KeySchema:              []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		BillingMode:            types.BillingModePayPerRequest,
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{jobsIndex(nil)},
	})
	if err != nil {
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: it already exists (pick another name, or use it as is)", name)
		}
		return fmt.Errorf("create table %s: %w", name, err)
	}
	w := ddb.NewTableExistsWaiter(db, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay = 20 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)}, 5*time.Minute); err != nil {
		return fmt.Errorf("create table %s: waiting for it to become active: %w", name, err)
	}
	if err := enableTTL(ctx, db, name); err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	return nil
}

// unknownOperation tells an endpoint that lacks an operation (dynalite has
// no time to live).
func unknownOperation(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "UnknownOperationException"
}

// enableTTL turns the table's time to live on for wpExpires, unless it is
// on already. Time to live on another attribute is an error: a table has
// one, and wp's expiry needs it.
func enableTTL(ctx context.Context, db *ddb.Client, name string) error {
	d, err := db.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil && !unknownOperation(err) {
		return fmt.Errorf("read the time to live: %w", err)
	}
	if err == nil && d.TimeToLiveDescription != nil {
		td := d.TimeToLiveDescription
		attr := aws.ToString(td.AttributeName)
		switch td.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if attr == attrExpires {
				return nil
			}
			return fmt.Errorf("the table's time to live is on attribute %q: wp's expiry needs it on %s (a table has one; disable the other first)", attr, attrExpires)
		case types.TimeToLiveStatusDisabling:
			return fmt.Errorf("the table's time to live (on %q) is being disabled: run this again once it is (it takes up to an hour)", attr)
		}
	}
	_, err = db.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
	})
	if err != nil && !unknownOperation(err) {
		return fmt.Errorf("enable the time to live on %s: %w", attrExpires, err)
	}
	return nil
}

// UpgradeTable readies a table made before (by an older wp, by watchbot's
// reduce mode: hash key id, no index) for what this wp does:
//
//  1. the time to live on wpExpires, unless it is on (an error when it is
//     on another attribute);
//  2. the wp-jobs index keys (wpList, wpListed) on every job item that
//     lacks them, wp's and the libraries' alike: one Scan of the table and
//     one small conditional write a job (charged by the job item's size,
//     which is large only for the libraries' jobs of many parts);
//  3. the wp-jobs index itself (UpdateTable with a GSI Create), unless the
//     table has it: on a table with provisioned capacity it gets its own,
//     indexReadUnits and indexWriteUnits. DynamoDB then builds it from the
//     items that carry its keys, which takes minutes to hours; List scans
//     the table until it is ACTIVE.
//
// Each step is idempotent: running it twice does nothing more, and running
// it again after an interruption finishes the work.
func UpgradeTable(ctx context.Context, cfg aws.Config, name string) error {
	db := ddb.NewFromConfig(cfg)
	d, err := db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("upgrade table %s: %w", name, err)
	}
	t := d.Table
	if err := enableTTL(ctx, db, name); err != nil {
		return fmt.Errorf("upgrade table %s: %w", name, err)
	}
	if err := backfillListed(ctx, db, name); err != nil {
		return fmt.Errorf("upgrade table %s: %w", name, err)
	}
	for _, g := range t.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) != indexName {
			continue
		}
		ks := g.KeySchema
		if len(ks) != 2 || aws.ToString(ks[0].AttributeName) != attrList || aws.ToString(ks[1].AttributeName) != attrListed {
			return fmt.Errorf("upgrade table %s: it has an index %s that is not wp's (keys %s, %s): delete it, then run this again", name, indexName, attrList, attrListed)
		}
		return nil
	}
	var pt *types.ProvisionedThroughput
	if t.BillingModeSummary == nil || t.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		pt = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(indexReadUnits), WriteCapacityUnits: aws.Int64(indexWriteUnits)}
	}
	ix := jobsIndex(pt)
	_, err = db.UpdateTable(ctx, &ddb.UpdateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: keyAttributes,
		GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
			IndexName:             ix.IndexName,
			KeySchema:             ix.KeySchema,
			Projection:            ix.Projection,
			ProvisionedThroughput: ix.ProvisionedThroughput,
		}}},
	})
	if err != nil {
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) && strings.Contains(strings.ToLower(err.Error()), "index") {
			return nil // being created by another upgrade
		}
		return fmt.Errorf("upgrade table %s: add the %s index: %w", name, indexName, err)
	}
	return nil
}

// backfillListed puts the index keys on every job item of the table that
// lacks them (see UpgradeTable): pages of 100 items, eventually consistent
// (a job written meanwhile by this wp has the keys already), writes
// retried while throttled.
func backfillListed(ctx context.Context, db *ddb.Client, name string) error {
	var start item
	for {
		var out *ddb.ScanOutput
		err := whileThrottled(ctx, func() error {
			var err error
			out, err = db.Scan(ctx, &ddb.ScanInput{
				TableName:                aws.String(name),
				Limit:                    aws.Int32(100),
				ExclusiveStartKey:        start,
				FilterExpression:         aws.String("attribute_exists(#total) AND attribute_not_exists(#creating) AND attribute_not_exists(#wpList)"),
				ProjectionExpression:     aws.String("#id, #total, #wp, #created"),
				ExpressionAttributeNames: names(attrID, attrTotal, attrCreating, attrList, attrWP, attrCreated),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("scan for jobs to list: %w", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(out.Items))
		sem := make(chan struct{}, 4)
		for _, it := range out.Items {
			update := "SET #wpList = :jobs, #wpListed = :at"
			nm := names(attrTotal, attrCreating, attrList, attrListed)
			vals := item{":jobs": str(listKey), ":at": num(0)}
			if v, isWP := getNum(it, attrWP); isWP {
				listed, _ := getNum(it, attrCreated)
				vals[":at"] = num(listed)
				if v == 1 {
					// A job of wp 1 gets its parts guard in the same
					// write, as the first wp command reading it would
					// give it: a listing from the index never sees
					// that it lacks one.
					update = "SET #wpList = :jobs, #wpListed = :at, #parts = if_not_exists(#parts, :guard)"
					nm["#parts"] = attrParts
					vals[":guard"] = partsGuard
				}
			}
			id := getStr(it, attrID)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				err := whileThrottled(ctx, func() error {
					_, err := db.UpdateItem(ctx, &ddb.UpdateItemInput{
						TableName:                 aws.String(name),
						Key:                       key(id),
						UpdateExpression:          aws.String(update),
						ConditionExpression:       aws.String("attribute_exists(#total) AND attribute_not_exists(#creating) AND attribute_not_exists(#wpList)"),
						ExpressionAttributeNames:  nm,
						ExpressionAttributeValues: vals,
					})
					if isCondFailed(err) {
						return nil // listed or deleted meanwhile
					}
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("list job %s: %w", id, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

// whileThrottled runs fn until it succeeds or fails for another reason
// than throughput, backing off up to 5 s between tries, for at most about
// 10 minutes.
func whileThrottled(ctx context.Context, fn func() error) error {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := fn()
		if err == nil || !isThrottle(err) || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
