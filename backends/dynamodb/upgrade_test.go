package dynamodb

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// TestCreateTable_IndexAndTTL: CreateTable makes the wp-jobs index
// (INCLUDE, within DynamoDB's 20 attributes) and turns the time to live on
// for wpExpires once the table is active.
func TestCreateTable_IndexAndTTL(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	if got := p.TTL(st.table); got != (testservers.TTLSpec{AttributeName: attrExpires, Enabled: true}) {
		t.Errorf("time to live = %+v, want enabled on %s", got, attrExpires)
	}
	d, err := st.db.DescribeTable(testCtx(t), &ddb.DescribeTableInput{TableName: aws.String(st.table)})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Table.GlobalSecondaryIndexes) != 1 || aws.ToString(d.Table.GlobalSecondaryIndexes[0].IndexName) != indexName {
		t.Fatalf("indexes = %+v, want %s", d.Table.GlobalSecondaryIndexes, indexName)
	}
	if n := len(d.Table.GlobalSecondaryIndexes[0].Projection.NonKeyAttributes); n > 20 {
		t.Errorf("the index projects %d attributes, more than DynamoDB's 20", n)
	}
}

// upgradeRequest is the part of an UpdateTable request UpgradeTable sends.
type upgradeRequest struct {
	AttributeDefinitions        []struct{ AttributeName, AttributeType string }
	GlobalSecondaryIndexUpdates []struct {
		Create *struct {
			IndexName  string
			KeySchema  []struct{ AttributeName, KeyType string }
			Projection struct {
				ProjectionType   string
				NonKeyAttributes []string
			}
			ProvisionedThroughput *struct{ ReadCapacityUnits, WriteCapacityUnits int64 }
		}
	}
}

func upgradeCall(t *testing.T, p *testservers.DynamoProxy) upgradeRequest {
	t.Helper()
	calls := p.CallsOf("UpdateTable")
	if len(calls) != 1 {
		t.Fatalf("%d UpdateTable calls, want 1", len(calls))
	}
	var req upgradeRequest
	if err := calls[0].Decode(&req); err != nil {
		t.Fatal(err)
	}
	if len(req.GlobalSecondaryIndexUpdates) != 1 || req.GlobalSecondaryIndexUpdates[0].Create == nil {
		t.Fatalf("UpdateTable request = %s, want one index Create", calls[0].Request)
	}
	return req
}

// TestUpgradeTable_Provisioned: on watchbot's table (provisioned, no index,
// no time to live) holding jobs of an older wp, of wp 1 and of both
// libraries, UpgradeTable turns the time to live on, puts the index keys
// on every job item (and the parts guard on wp 1's), and asks for the index
// with its own throughput; run again, it writes nothing more. (dynalite
// answers the index Create and makes nothing: the request is what is
// checked.)
func TestUpgradeTable_Provisioned(t *testing.T) {
	st, name := newWatchbotTable(t)
	ctx := testCtx(t)
	for _, id := range []string{"old", "v1"} {
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 600}); err != nil {
			t.Fatal(err)
		}
		setRaw(t, st, id, "REMOVE #wpList, #wpListed", nil)
	}
	setRaw(t, st, "v1", "SET #wp = :one REMOVE #parts", item{":one": num(1)})
	putLegacy(t, st, "py", seq(0, 4), 5, nil)
	putLegacy(t, st, "node", seq(1, 5), 5, nil)
	p := startProxy(t, testservers.ProxyOptions{})
	cfg := proxyConfig(t, p)
	if err := UpgradeTable(ctx, cfg, name); err != nil {
		t.Fatal(err)
	}
	if got := p.TTL(name); got != (testservers.TTLSpec{AttributeName: attrExpires, Enabled: true}) {
		t.Errorf("time to live = %+v, want enabled on %s", got, attrExpires)
	}
	req := upgradeCall(t, p)
	c := req.GlobalSecondaryIndexUpdates[0].Create
	if c.IndexName != indexName || len(c.KeySchema) != 2 || c.KeySchema[0].AttributeName != attrList || c.KeySchema[1].AttributeName != attrListed || c.Projection.ProjectionType != "INCLUDE" {
		t.Errorf("index Create = %+v", c)
	}
	if pt := c.ProvisionedThroughput; pt == nil || pt.ReadCapacityUnits != indexReadUnits || pt.WriteCapacityUnits != indexWriteUnits {
		t.Errorf("index throughput = %+v, want %d read and %d write units", pt, indexReadUnits, indexWriteUnits)
	}
	defs := fmt.Sprint(req.AttributeDefinitions)
	if !strings.Contains(defs, "{wpList S}") || !strings.Contains(defs, "{wpListed N}") {
		t.Errorf("attribute definitions = %s", defs)
	}
	for id, want := range map[string]int64{"old": -1, "v1": -1, "py": 0, "node": 0} {
		it := rawItem(t, st, id)
		at, ok := getNum(it, attrListed)
		created, _ := getNum(it, attrCreated)
		if getStr(it, attrList) != listKey || !ok || (want == 0 && at != 0) || (want < 0 && at != created) {
			t.Errorf("%s: wpList %q wpListed %d (%v), want %q and %v", id, getStr(it, attrList), at, ok, listKey, map[bool]string{true: "0", false: "its created"}[want == 0])
		}
	}
	if _, ok := rawItem(t, st, "v1")[attrParts].(*types.AttributeValueMemberBOOL); !ok {
		t.Error("wp 1's job has no parts guard after the upgrade")
	}
	if _, ok := rawItem(t, st, shardKey("old", 0))[attrList]; ok {
		t.Error("a shard item got the index keys")
	}
	p.Reset()
	if err := UpgradeTable(ctx, cfg, name); err != nil {
		t.Fatalf("the second UpgradeTable: %v", err)
	}
	if n, _, _ := opUnits(p, "UpdateItem"); n != 0 || len(p.CallsOf("UpdateTimeToLive")) != 0 {
		t.Errorf("the second UpgradeTable made %d writes and %d time to live calls, want none", n, len(p.CallsOf("UpdateTimeToLive")))
	}
}

// TestUpgradeTable_OnDemand: on an on-demand table the index Create has no
// throughput of its own, as DynamoDB requires (dynalite refuses it: the
// request is what is checked). A time to live on another attribute is an
// error, before anything is written.
func TestUpgradeTable_OnDemand(t *testing.T) {
	needDynalite(t)
	ctx := testCtx(t)
	p := startProxy(t, testservers.ProxyOptions{})
	cfg := proxyConfig(t, p)
	db := ddb.NewFromConfig(cfg)
	name := fmt.Sprintf("wp-ondemand-%d-%d", os.Getpid(), tableSeq.Add(1))
	if _, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(name)}) })
	if err := fastWaiter(db).Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)}, 60e9); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	err := UpgradeTable(ctx, cfg, name)
	t.Logf("UpgradeTable on dynalite's on-demand table: %v", err)
	if c := upgradeCall(t, p).GlobalSecondaryIndexUpdates[0].Create; c.ProvisionedThroughput != nil {
		t.Errorf("index Create on an on-demand table has throughput %+v, want none", c.ProvisionedThroughput)
	}

	other := fmt.Sprintf("wp-otherttl-%d-%d", os.Getpid(), tableSeq.Add(1))
	if _, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:             aws.String(other),
		AttributeDefinitions:  []types.AttributeDefinition{{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(30), WriteCapacityUnits: aws.Int64(30)},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(other)}) })
	if err := fastWaiter(db).Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(other)}, 60e9); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{TableName: aws.String(other),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	err = UpgradeTable(ctx, cfg, other)
	if err == nil || !strings.Contains(err.Error(), `"ttl"`) {
		t.Errorf("UpgradeTable with the time to live on ttl: %v, want an error naming it", err)
	}
	if len(p.CallsOf("UpdateTable")) != 0 {
		t.Error("UpgradeTable asked for the index though the time to live is on another attribute")
	}
}

// TestThrottled: a request the table refuses for throughput, once the
// SDK's retries are spent, matches backends.ErrThrottled, through the
// portable Store too.
func TestThrottled(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "thr", Total: 600}); err != nil {
		t.Fatal(err)
	}
	s := backends.New(st, 0)
	p.SetLimits(testservers.ProxyOptions{WriteUnitsPerSecond: 0.001})
	var err error
	for p := int64(0); p < 3 && err == nil; p++ {
		_, err = s.Complete(ctx, "thr", p)
	}
	if !errors.Is(err, backends.ErrThrottled) {
		t.Errorf("Complete on a throttled table: %v, want ErrThrottled", err)
	}
	t.Logf("write: %v", err)
	p.SetLimits(testservers.ProxyOptions{ReadUnitsPerSecond: 0.001})
	for i := 0; i < 3; i++ {
		if _, err = s.Status(ctx, "thr"); err != nil {
			break
		}
	}
	if !errors.Is(err, backends.ErrThrottled) {
		t.Errorf("Status on a throttled table: %v, want ErrThrottled", err)
	}
	p.SetLimits(testservers.ProxyOptions{})
	if _, err := s.Status(ctx, "thr"); err != nil {
		t.Errorf("Status once the limit is lifted: %v", err)
	}
}

func fastWaiter(db *ddb.Client) *ddb.TableExistsWaiter {
	return ddb.NewTableExistsWaiter(db, func(o *ddb.TableExistsWaiterOptions) { o.MinDelay = 20 * time.Millisecond })
}
