package testservers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ddbClient is an SDK client for endpoint; maxAttempts 1 is no retries.
func ddbClient(endpoint string, maxAttempts int) *ddb.Client {
	var r aws.Retryer = aws.NopRetryer{}
	if maxAttempts > 1 {
		r = retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = time.Second
			o.RateLimiter = ratelimit.None
		})
	}
	return ddb.New(ddb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDPROXYTEST", "proxy-test-secret", ""),
		Retryer:      r,
	})
}

// proxyFixture is dynalite, a proxy in front of it, and clients of both.
type proxyFixture struct {
	dyn    *Server
	proxy  *DynamoProxy
	direct *ddb.Client // to dynalite, bypassing the proxy
	client *ddb.Client // through the proxy, no retries
}

func newProxyFixture(t *testing.T, opt ProxyOptions) *proxyFixture {
	t.Helper()
	dyn := StartDynaliteT(t)
	p := StartDynamoProxyT(t, dyn.URL, opt)
	return &proxyFixture{dyn: dyn, proxy: p, direct: ddbClient(dyn.URL, 1), client: ddbClient(p.URL, 1)}
}

func proxyCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// createKV makes table with a string hash key pk and string range key sk.
func createKV(t *testing.T, ctx context.Context, c *ddb.Client, table string) {
	t.Helper()
	_, err := c.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, ctx, c, table)
}

func waitActive(t *testing.T, ctx context.Context, c *ddb.Client, table string) {
	t.Helper()
	w := ddb.NewTableExistsWaiter(c, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay = 10 * time.Millisecond
		o.MaxDelay = 50 * time.Millisecond
	})
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk), "sk": str(sk)}
}

// item is a key with a data attribute d of n bytes.
func item(pk, sk string, n int) map[string]types.AttributeValue {
	it := key(pk, sk)
	if n > 0 {
		it["d"] = str(strings.Repeat("x", n))
	}
	return it
}

// sizeOf is the item's size by the developer guide's rules (names plus
// values; only strings here).
func sizeOf(it map[string]types.AttributeValue) int {
	n := 0
	for k, v := range it {
		n += len(k) + len(v.(*types.AttributeValueMemberS).Value)
	}
	return n
}

func units(cc *types.ConsumedCapacity) float64 {
	if cc == nil || cc.CapacityUnits == nil {
		return -1
	}
	return *cc.CapacityUnits
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestProxyTransparent: a client that did not ask for consumed capacity
// gets none, though the proxy asked dynalite for it and metered it; one that
// asked gets dynalite's figures.
func TestProxyTransparent(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "transparent")
	tn := aws.String("transparent")

	put, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("a", "1", 100)})
	if err != nil {
		t.Fatal(err)
	}
	if put.ConsumedCapacity != nil {
		t.Errorf("PutItem without ReturnConsumedCapacity got %+v", put.ConsumedCapacity)
	}
	get, err := f.client.GetItem(ctx, &ddb.GetItemInput{TableName: tn, Key: key("a", "1")})
	if err != nil {
		t.Fatal(err)
	}
	if get.ConsumedCapacity != nil || get.Item == nil {
		t.Errorf("GetItem: item %v, capacity %+v; want the item and no capacity", get.Item, get.ConsumedCapacity)
	}
	q, err := f.client.Query(ctx, &ddb.QueryInput{TableName: tn, KeyConditionExpression: aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str("a")}, ReturnConsumedCapacity: types.ReturnConsumedCapacityNone})
	if err != nil {
		t.Fatal(err)
	}
	if q.ConsumedCapacity != nil || q.Count != 1 {
		t.Errorf("Query NONE: count %d, capacity %+v", q.Count, q.ConsumedCapacity)
	}
	bw, err := f.client.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
		"transparent": {{PutRequest: &types.PutRequest{Item: item("b", "1", 10)}}, {PutRequest: &types.PutRequest{Item: item("b", "2", 10)}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if bw.ConsumedCapacity != nil {
		t.Errorf("BatchWriteItem got %+v", bw.ConsumedCapacity)
	}
	bg, err := f.client.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		"transparent": {Keys: []map[string]types.AttributeValue{key("b", "1"), key("b", "2")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if bg.ConsumedCapacity != nil || len(bg.Responses["transparent"]) != 2 {
		t.Errorf("BatchGetItem: %d items, capacity %+v", len(bg.Responses["transparent"]), bg.ConsumedCapacity)
	}
	st := f.proxy.Stats()
	if !near(st.WriteUnits, 3) || !near(st.ReadUnits, 0.5+0.5+1) {
		t.Errorf("metered %v WCU and %v RCU; want 3 and 2", st.WriteUnits, st.ReadUnits)
	}

	// A client that asks gets what dynalite reports, INDEXES included.
	for _, rcc := range []types.ReturnConsumedCapacity{types.ReturnConsumedCapacityTotal, types.ReturnConsumedCapacityIndexes} {
		viaProxy, err := f.client.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: tn, Key: key("a", "1"),
			UpdateExpression: aws.String("SET n = :n"), ExpressionAttributeValues: map[string]types.AttributeValue{":n": &types.AttributeValueMemberN{Value: "1"}},
			ReturnConsumedCapacity: rcc})
		if err != nil {
			t.Fatal(err)
		}
		direct, err := f.direct.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: tn, Key: key("a", "1"),
			UpdateExpression: aws.String("SET n = :n"), ExpressionAttributeValues: map[string]types.AttributeValue{":n": &types.AttributeValueMemberN{Value: "2"}},
			ReturnConsumedCapacity: rcc})
		if err != nil {
			t.Fatal(err)
		}
		if units(viaProxy.ConsumedCapacity) != units(direct.ConsumedCapacity) || units(viaProxy.ConsumedCapacity) != 1 {
			t.Errorf("%s: via proxy %v, direct %v; want 1", rcc, units(viaProxy.ConsumedCapacity), units(direct.ConsumedCapacity))
		}
		if (rcc == types.ReturnConsumedCapacityIndexes) != (viaProxy.ConsumedCapacity.Table != nil) {
			t.Errorf("%s: Table part %+v", rcc, viaProxy.ConsumedCapacity.Table)
		}
	}

	// A malformed request gets dynalite's own error.
	for _, op := range []string{"Query", "PutItem", "BatchGetItem"} {
		for _, body := range []string{`{}`, `not json`} {
			viaProxy, pr := rawCall(t, f.proxy.URL, op, body)
			direct, dr := rawCall(t, f.dyn.URL, op, body)
			if pr.StatusCode != dr.StatusCode || !bytes.Equal(viaProxy, direct) {
				t.Errorf("%s %s: via proxy %d %s, direct %d %s", op, body, pr.StatusCode, viaProxy, dr.StatusCode, direct)
			}
		}
	}

	// Byte for byte: without capacity the proxy's answer is dynalite's.
	body := `{"TableName":"transparent","Key":{"pk":{"S":"a"},"sk":{"S":"1"}},"ProjectionExpression":"pk"}`
	viaProxy, _ := rawCall(t, f.proxy.URL, "GetItem", body)
	direct, _ := rawCall(t, f.dyn.URL, "GetItem", body)
	if !bytes.Equal(viaProxy, direct) {
		t.Errorf("GetItem answer via proxy %s, direct %s", viaProxy, direct)
	}
}

// rawCall posts body as a DynamoDB call with a SigV4-shaped header (dynalite
// checks the form, not the signature) and returns the answer's body and
// response.
func rawCall(t *testing.T, url, op, body string) ([]byte, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", amzJSON)
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("X-Amz-Date", "20240101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, resp
}

// TestProxyWriteUnits: write units are dynalite's (which it computes as
// DynamoDB does for the base table), plus 1 for a failed conditional write.
func TestProxyWriteUnits(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "writes")
	tn := aws.String("writes")

	f.proxy.Reset()
	step := func(name string, want float64, do func(c *ddb.Client) (*types.ConsumedCapacity, error)) {
		t.Helper()
		before := f.proxy.Stats().WriteUnits
		if _, err := do(f.client); err != nil {
			t.Fatalf("%s via proxy: %v", name, err)
		}
		got := f.proxy.Stats().WriteUnits - before
		cc, err := do(f.direct)
		if err != nil {
			t.Fatalf("%s direct: %v", name, err)
		}
		if !near(got, want) || !near(units(cc), want) {
			t.Errorf("%s: proxy metered %v WCU, dynalite reports %v directly; want %v", name, got, units(cc), want)
		}
	}
	rcc := types.ReturnConsumedCapacityTotal
	step("small PutItem", 1, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		o, err := c.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("p", "1", 200), ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		return o.ConsumedCapacity, nil
	})
	step("small UpdateItem", 1, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		o, err := c.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: tn, Key: key("p", "1"), UpdateExpression: aws.String("ADD n :one"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}}, ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		return o.ConsumedCapacity, nil
	})
	big := item("p", "2", 2500)
	wantBig := math.Ceil(float64(sizeOf(big)) / 1024)
	step("2.5 KB PutItem", wantBig, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		o, err := c.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: big, ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		return o.ConsumedCapacity, nil
	})
	// Shrinking an item costs its old size (the larger of the two). The
	// proxy's run shrinks p/2, the direct run a copy at p/3.
	if _, err := f.direct.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("p", "3", 2500)}); err != nil {
		t.Fatal(err)
	}
	step("UpdateItem removing 2.5 KB", wantBig, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		sk := "2"
		if c == f.direct {
			sk = "3"
		}
		o, err := c.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: tn, Key: key("p", sk), UpdateExpression: aws.String("REMOVE d"), ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		return o.ConsumedCapacity, nil
	})
	step("DeleteItem of nothing", 1, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		o, err := c.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: tn, Key: key("none", "1"), ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		return o.ConsumedCapacity, nil
	})
	step("BatchWriteItem of 5", 5, func(c *ddb.Client) (*types.ConsumedCapacity, error) {
		var ws []types.WriteRequest
		for i := 0; i < 4; i++ {
			ws = append(ws, types.WriteRequest{PutRequest: &types.PutRequest{Item: item("b", strconv.Itoa(i), 50)}})
		}
		ws = append(ws, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key("b", "9")}})
		o, err := c.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"writes": ws}, ReturnConsumedCapacity: rcc})
		if err != nil {
			return nil, err
		}
		if len(o.ConsumedCapacity) != 1 {
			return nil, fmt.Errorf("ConsumedCapacity %+v", o.ConsumedCapacity)
		}
		return &o.ConsumedCapacity[0], nil
	})

	// A failed condition: dynalite reports nothing, DynamoDB charges at
	// least 1, and so does the proxy.
	before := f.proxy.Stats()
	_, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("p", "1", 10),
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("conditional PutItem: %v; want ConditionalCheckFailedException", err)
	}
	after := f.proxy.Stats()
	if got := after.WriteUnits - before.WriteUnits; !near(got, 1) {
		t.Errorf("failed conditional write metered %v WCU, want 1", got)
	}
	if after.Ops["PutItem"].ConditionFailed != 1 || after.ConditionFailed != 1 {
		t.Errorf("ConditionFailed %d (PutItem %d), want 1", after.ConditionFailed, after.Ops["PutItem"].ConditionFailed)
	}
	if after.ReadUnits != 0 {
		t.Errorf("writes metered %v read units", after.ReadUnits)
	}
}

// TestProxyReadUnits: read units by DynamoDB's rules, dynalite's figures
// where they follow them, the proxy's corrections where they do not.
func TestProxyReadUnits(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "reads")
	tn := aws.String("reads")
	oneKB := item("g", "1k", 1000)
	nineKB := item("g", "9k", 9000)
	for _, it := range []map[string]types.AttributeValue{oneKB, nineKB} {
		if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	// N small items under one partition key, for Query and Scan.
	const n = 40
	smallTotal := 0
	for i := 0; i < n; i++ {
		it := item("s", fmt.Sprintf("%03d", i), 150)
		smallTotal += sizeOf(it)
		if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	if smallTotal <= 4096 {
		t.Fatalf("the small items add up to %d bytes; the test wants more than 4 KB", smallTotal)
	}
	pages := math.Ceil(float64(smallTotal) / 4096)
	tableTotal := smallTotal + sizeOf(oneKB) + sizeOf(nineKB)
	scanPages := math.Ceil(float64(tableTotal) / 4096)

	read := func(name string, want float64, do func() error) {
		t.Helper()
		before := f.proxy.Stats()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after := f.proxy.Stats()
		if got := after.ReadUnits - before.ReadUnits; !near(got, want) {
			t.Errorf("%s: metered %v RCU, want %v", name, got, want)
		}
		if after.WriteUnits != before.WriteUnits {
			t.Errorf("%s metered write units", name)
		}
	}
	get := func(k map[string]types.AttributeValue, consistent bool) func() error {
		return func() error {
			_, err := f.client.GetItem(ctx, &ddb.GetItemInput{TableName: tn, Key: k, ConsistentRead: aws.Bool(consistent), ProjectionExpression: aws.String("pk")})
			return err
		}
	}
	read("GetItem 1 KB consistent", 1, get(key("g", "1k"), true))
	read("GetItem 1 KB eventual", 0.5, get(key("g", "1k"), false))
	read("GetItem 9 KB consistent", 3, get(key("g", "9k"), true))
	read("GetItem 9 KB eventual", 1.5, get(key("g", "9k"), false))
	read("GetItem missing eventual", 0.5, get(key("g", "none"), false))
	read("GetItem missing consistent", 1, get(key("g", "none"), true))

	batch := func(consistent bool) func() error {
		return func() error {
			o, err := f.client.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				"reads": {Keys: []map[string]types.AttributeValue{key("g", "1k"), key("g", "9k"), key("g", "none")}, ConsistentRead: aws.Bool(consistent)},
			}})
			if err == nil && len(o.Responses["reads"]) != 2 {
				err = fmt.Errorf("%d items", len(o.Responses["reads"]))
			}
			return err
		}
	}
	// Per item, each rounded up: 1 + 3 + the minimum for the missing one.
	read("BatchGetItem consistent", 1+3+1, batch(true))
	read("BatchGetItem eventual", (1+3+1)/2.0, batch(false))

	query := func(pk string, consistent bool, filter bool) func() error {
		return func() error {
			in := &ddb.QueryInput{TableName: tn, KeyConditionExpression: aws.String("pk = :p"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(pk)}, ConsistentRead: aws.Bool(consistent)}
			if filter {
				in.FilterExpression = aws.String("d = :nope")
				in.ExpressionAttributeValues[":nope"] = str("nope")
			}
			_, err := f.client.Query(ctx, in)
			return err
		}
	}
	read("Query of N small items, consistent", pages, query("s", true, false))
	read("Query of N small items, eventual", pages/2, query("s", false, false))
	// A filter drops items after they are read: they still count.
	read("Query with a filter", pages/2, query("s", false, true))
	read("Query of nothing", 0.5, query("none", false, false))
	read("Query of nothing, consistent", 1, query("none", true, false))

	scan := func(consistent bool) func() error {
		return func() error {
			_, err := f.client.Scan(ctx, &ddb.ScanInput{TableName: tn, ConsistentRead: aws.Bool(consistent), Select: types.SelectCount})
			return err
		}
	}
	read("Scan eventual", scanPages/2, scan(false))
	read("Scan consistent", scanPages, scan(true))
	// With a Limit, what is read is what is returned (no filter): price it
	// from the items the Scan gave.
	before := f.proxy.Stats().ReadUnits
	lim, err := f.client.Scan(ctx, &ddb.ScanInput{TableName: tn, Limit: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	limSize := 0
	for _, it := range lim.Items {
		limSize += sizeOf(it)
	}
	if want := math.Max(1, math.Ceil(float64(limSize)/4096)) / 2; len(lim.Items) != 5 || !near(f.proxy.Stats().ReadUnits-before, want) {
		t.Errorf("Scan with Limit 5: %d items of %d bytes metered %v RCU, want %v", len(lim.Items), limSize, f.proxy.Stats().ReadUnits-before, want)
	}

	// The client that asks gets the corrected figures.
	o, err := f.client.Scan(ctx, &ddb.ScanInput{TableName: tn, ConsistentRead: aws.Bool(true), Select: types.SelectCount,
		ReturnConsumedCapacity: types.ReturnConsumedCapacityIndexes})
	if err != nil {
		t.Fatal(err)
	}
	if units(o.ConsumedCapacity) != scanPages || o.ConsumedCapacity.Table == nil || *o.ConsumedCapacity.Table.CapacityUnits != scanPages {
		t.Errorf("consistent Scan told the client %+v, want %v", o.ConsumedCapacity, scanPages)
	}
	// What dynalite itself says, so that a dynalite that fixes it fails
	// here and the correction can go.
	d, err := f.direct.Scan(ctx, &ddb.ScanInput{TableName: tn, ConsistentRead: aws.Bool(true), Select: types.SelectCount,
		ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
	if err != nil {
		t.Fatal(err)
	}
	if units(d.ConsumedCapacity) != scanPages/2 {
		t.Errorf("dynalite reports %v for a consistent Scan (expected its halved %v): drop the proxy's doubling", units(d.ConsumedCapacity), scanPages/2)
	}
	dq, err := f.direct.Query(ctx, &ddb.QueryInput{TableName: tn, KeyConditionExpression: aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str("none")}, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
	if err != nil {
		t.Fatal(err)
	}
	if units(dq.ConsumedCapacity) != 0 {
		t.Errorf("dynalite reports %v for a Query of nothing (expected 0): drop the proxy's minimum", units(dq.ConsumedCapacity))
	}
	if st := f.proxy.Stats(); st.Ops["Scan"].ReadUnits == 0 || st.Ops["GetItem"].Requests != 6 {
		t.Errorf("per-op stats %+v", st.Ops)
	}
}

// TestProxyTTL: the proxy answers UpdateTimeToLive and DescribeTimeToLive,
// which dynalite lacks, and records them.
func TestProxyTTL(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "ttl-table")
	tn := aws.String("ttl-table")

	// dynalite alone: no UpdateTimeToLive.
	if _, err := f.direct.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{TableName: tn,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("exp"), Enabled: aws.Bool(true)}}); err == nil {
		t.Log("dynalite now implements UpdateTimeToLive: the proxy's emulation may go")
	}

	d, err := f.client.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: tn})
	if err != nil {
		t.Fatal(err)
	}
	if d.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusDisabled {
		t.Errorf("new table: %+v", d.TimeToLiveDescription)
	}
	u, err := f.client.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{TableName: tn,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("wpExpires"), Enabled: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(u.TimeToLiveSpecification.AttributeName) != "wpExpires" || !aws.ToBool(u.TimeToLiveSpecification.Enabled) {
		t.Errorf("UpdateTimeToLive answered %+v", u.TimeToLiveSpecification)
	}
	d, err = f.client.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: tn})
	if err != nil {
		t.Fatal(err)
	}
	if d.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.TimeToLiveDescription.AttributeName) != "wpExpires" {
		t.Errorf("after enabling: %+v", d.TimeToLiveDescription)
	}
	// Enabling twice is DynamoDB's ValidationException.
	_, err = f.client.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{TableName: tn,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("wpExpires"), Enabled: aws.Bool(true)}})
	if err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "already enabled") {
		t.Errorf("enabling again: %v", err)
	}
	// A missing table is dynalite's ResourceNotFoundException.
	_, err = f.client.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{TableName: aws.String("no-such-table"),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("x"), Enabled: aws.Bool(true)}})
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Errorf("UpdateTimeToLive of a missing table: %v", err)
	}

	calls := f.proxy.CallsOf("UpdateTimeToLive")
	if len(calls) != 3 || calls[0].Table() != "ttl-table" || !calls[0].Local {
		t.Fatalf("recorded UpdateTimeToLive calls: %+v", calls)
	}
	var in struct {
		TimeToLiveSpecification struct {
			AttributeName string
			Enabled       bool
		}
	}
	if err := calls[0].Decode(&in); err != nil || in.TimeToLiveSpecification.AttributeName != "wpExpires" || !in.TimeToLiveSpecification.Enabled {
		t.Errorf("recorded request %s (%v)", calls[0].Request, err)
	}
	if calls[1].ErrorType != "ValidationException" || calls[2].ErrorType != "ResourceNotFoundException" {
		t.Errorf("recorded errors %q, %q", calls[1].ErrorType, calls[2].ErrorType)
	}

	// Deleting the table forgets its TTL.
	if _, err := f.client.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: tn}); err != nil {
		t.Fatal(err)
	}
	if f.proxy.TTL("ttl-table").Enabled {
		t.Error("TTL kept after DeleteTable")
	}
}

// TestProxyRecording: the call list names operations and tables, keeps the
// request (cut when long), and Reset clears it.
func TestProxyRecording(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{MaxBodyBytes: 256, MaxCalls: 5})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "rec-a")
	createKV(t, ctx, f.client, "rec-b")
	f.proxy.Reset()
	if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String("rec-a"), Item: item("x", "1", 1000)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String("rec-a"), Key: key("x", "1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		"rec-b": {Keys: []map[string]types.AttributeValue{key("x", "1")}},
		"rec-a": {Keys: []map[string]types.AttributeValue{key("x", "1")}},
	}}); err != nil {
		t.Fatal(err)
	}
	calls, dropped := f.proxy.Calls()
	if len(calls) != 3 || dropped != 0 {
		t.Fatalf("%d calls (%d dropped), want 3", len(calls), dropped)
	}
	if calls[0].Op != "PutItem" || calls[0].Table() != "rec-a" || !calls[0].Truncated || len(calls[0].Request) != 256 {
		t.Errorf("PutItem call %+v", calls[0])
	}
	if calls[1].Op != "GetItem" || calls[1].Truncated {
		t.Errorf("GetItem call %+v", calls[1])
	}
	var got map[string]any
	if err := calls[1].Decode(&got); err != nil || got["TableName"] != "rec-a" {
		t.Errorf("GetItem request %s: %v", calls[1].Request, err)
	}
	// The recorded request is the client's, without the proxy's
	// ReturnConsumedCapacity.
	if _, ok := got["ReturnConsumedCapacity"]; ok {
		t.Errorf("recorded request has the proxy's ReturnConsumedCapacity: %s", calls[1].Request)
	}
	if fmt.Sprint(calls[2].Tables) != "[rec-a rec-b]" {
		t.Errorf("BatchGetItem tables %v", calls[2].Tables)
	}
	if len(f.proxy.CallsOf("Scan")) != 0 {
		t.Error("a Scan recorded")
	}
	for i := 0; i < 4; i++ {
		f.client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String("rec-a"), Key: key("x", "1")})
	}
	if calls, dropped = f.proxy.Calls(); len(calls) != 5 || dropped != 2 {
		t.Errorf("past MaxCalls: %d calls, %d dropped; want 5 and 2", len(calls), dropped)
	}
	if st := f.proxy.Stats(); st.Requests != 7 || st.Ops["GetItem"].Requests != 5 {
		t.Errorf("stats count %d requests (%d GetItem), want 7 (5)", st.Requests, st.Ops["GetItem"].Requests)
	}
	f.proxy.Reset()
	if calls, dropped = f.proxy.Calls(); len(calls) != 0 || dropped != 0 || f.proxy.Stats().Requests != 0 {
		t.Error("Reset left calls or stats")
	}
}

// TestProxyThrottleError: a refused request is DynamoDB's throttling
// answer, and the SDK takes it as one.
func TestProxyThrottleError(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "throttle")
	tn := aws.String("throttle")
	// A bucket of one unit, refilled at 0.1 a second (so that a slow
	// machine does not refill it within the test): the second write in a
	// row is refused, and so is the third read.
	f.proxy.SetLimits(ProxyOptions{WriteUnitsPerSecond: 0.1, WriteBurst: 1, ReadUnitsPerSecond: 0.1, ReadBurst: 1})
	if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("a", "1", 10)}); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: tn, Item: item("a", "2", 10)})
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Fatalf("second PutItem: %v; want ProvisionedThroughputExceededException", err)
	}
	if !retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool() {
		t.Errorf("the SDK's retryer does not take %v as a throttle", err)
	}
	if !retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool() {
		t.Errorf("the SDK's retryer does not retry %v", err)
	}
	// Reads have their own bucket: two eventually consistent reads of one
	// item pass (0.5 each), the third is refused.
	for i := 0; i < 3; i++ {
		_, err = f.client.GetItem(ctx, &ddb.GetItemInput{TableName: tn, Key: key("a", "1")})
		if (err != nil) != (i == 2) {
			t.Errorf("GetItem %d: %v", i, err)
		}
	}
	if !errors.As(err, &pte) {
		t.Errorf("third GetItem: %v; want ProvisionedThroughputExceededException", err)
	}
	// Another table has its own buckets.
	createKV(t, ctx, f.client, "throttle-2")
	if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String("throttle-2"), Item: item("a", "1", 10)}); err != nil {
		t.Errorf("PutItem on another table: %v", err)
	}

	// The raw answer, as DynamoDB sends it.
	body, resp := rawCall(t, f.proxy.URL, "PutItem", `{"TableName":"throttle","Item":{"pk":{"S":"r"},"sk":{"S":"1"}}}`)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != amzJSON || string(body) != throttleBody {
		t.Errorf("throttle answer: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	st := f.proxy.Stats()
	if st.Throttled != 3 || st.Ops["PutItem"].Throttled != 2 || st.Ops["GetItem"].Throttled != 1 {
		t.Errorf("throttled counts: total %d, PutItem %d, GetItem %d; want 3, 2, 1", st.Throttled, st.Ops["PutItem"].Throttled, st.Ops["GetItem"].Throttled)
	}
	// A refused write consumed nothing.
	if !near(st.WriteUnits, 2) {
		t.Errorf("metered %v WCU, want 2 (the two admitted writes)", st.WriteUnits)
	}
}

// TestProxyThrottleRate: 300 concurrent small writes at 30 WCU/s through a
// client that retries are throttled to about 30 a second. The timing is
// asserted loosely; the accounting strictly: in any window of the proxy's
// admission log, the units admitted are at most rate*window + burst.
func TestProxyThrottleRate(t *testing.T) {
	const (
		rate   = 30.0
		writes = 300
	)
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "rate")
	f.proxy.SetLimits(ProxyOptions{WriteUnitsPerSecond: rate})
	f.proxy.Reset()
	c := ddbClient(f.proxy.URL, 1000)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := 0; i < writes; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String("rate"), Item: item("w", strconv.Itoa(i), 20)})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("a write failed despite retries: %v", err)
	}
	st := f.proxy.Stats()
	measured := float64(writes) / elapsed.Seconds()
	t.Logf("%d writes in %v (%.1f/s), %d throttled attempts", writes, elapsed.Round(time.Millisecond), measured, st.Throttled)
	if st.Throttled == 0 {
		t.Error("no request was throttled")
	}
	if !near(st.WriteUnits, writes) || st.Ops["PutItem"].Requests != writes+st.Throttled {
		t.Errorf("metered %v WCU over %d requests; want %d over %d+%d", st.WriteUnits, st.Ops["PutItem"].Requests, writes, writes, st.Throttled)
	}
	if measured > 45 {
		t.Errorf("%.1f writes a second, want about %v", measured, rate)
	}

	// The accounting: sort the admitted calls by time; for every window
	// [t_i, t_j], the units admitted in it are at most rate*(t_j-t_i) plus
	// the burst (one second's worth).
	calls, dropped := f.proxy.Calls()
	if dropped != 0 {
		t.Fatalf("%d calls dropped", dropped)
	}
	var adm []Call
	for _, c := range calls {
		if !c.Throttled {
			adm = append(adm, c)
		}
	}
	sort.Slice(adm, func(i, j int) bool { return adm[i].Time.Before(adm[j].Time) })
	worst := 0.0
	for i := range adm {
		sum := 0.0
		for j := i; j < len(adm); j++ {
			sum += adm[j].WriteUnits
			w := adm[j].Time.Sub(adm[i].Time).Seconds()
			if excess := sum - (rate*w + rate); excess > worst {
				worst = excess
			}
		}
	}
	if worst > 1e-6 {
		t.Errorf("a window admitted %.3f units more than rate*window+burst", worst)
	}
	if span := adm[len(adm)-1].Time.Sub(adm[0].Time).Seconds(); span < (writes-rate)/rate*0.95 {
		t.Errorf("admissions span %.2fs, less than the %.2fs the bucket allows", span, (writes-rate)/rate)
	}
}

// TestProxyDynaliteGSI records what dynalite 4.0.0 does with global
// secondary indexes: CreateTable with a sparse GSI and Query on it work;
// UpdateTable adding one answers success and does nothing.
func TestProxyDynaliteGSI(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	_, err := f.client.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:   aws.String("gsi-table"),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("open"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("open-index"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("open"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, ctx, f.client, "gsi-table")
	for i := 0; i < 10; i++ {
		it := map[string]types.AttributeValue{"pk": str(strconv.Itoa(i))}
		if i%5 == 0 {
			it["open"] = str("yes") // sparse: only these are in the index
		}
		if _, err := f.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String("gsi-table"), Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	q, err := f.client.Query(ctx, &ddb.QueryInput{TableName: aws.String("gsi-table"), IndexName: aws.String("open-index"),
		KeyConditionExpression: aws.String("#o = :y"), ExpressionAttributeNames: map[string]string{"#o": "open"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":y": str("yes")}})
	if err != nil {
		t.Fatalf("Query on a GSI: %v", err)
	}
	if q.Count != 2 {
		t.Errorf("sparse GSI Query found %d items, want 2", q.Count)
	}
	sc, err := f.client.Scan(ctx, &ddb.ScanInput{TableName: aws.String("gsi-table"), IndexName: aws.String("open-index")})
	if err != nil || sc.Count != 2 {
		t.Errorf("Scan of the sparse GSI: %v items, %v", sc, err)
	}

	// UpdateTable adding a GSI: dynalite wants ProvisionedThroughput on
	// it even on an on-demand table (DynamoDB refuses it there), and then
	// answers success without creating the index.
	update := func(throughput *types.ProvisionedThroughput) error {
		_, err := f.client.UpdateTable(ctx, &ddb.UpdateTableInput{
			TableName: aws.String("gsi-table"),
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("late"), AttributeType: types.ScalarAttributeTypeS},
			},
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
				IndexName:             aws.String("late-index"),
				KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String("late"), KeyType: types.KeyTypeHash}},
				Projection:            &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
				ProvisionedThroughput: throughput,
			}}},
		})
		return err
	}
	if err := update(nil); err == nil || !strings.Contains(err.Error(), "provisionedThroughput") {
		t.Errorf("UpdateTable GSI Create without ProvisionedThroughput: %v; dynalite used to refuse it", err)
	}
	if err := update(&types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(1), WriteCapacityUnits: aws.Int64(1)}); err != nil {
		t.Errorf("UpdateTable GSI Create with ProvisionedThroughput: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	d, err := f.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String("gsi-table")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range d.Table.GlobalSecondaryIndexes {
		names = append(names, aws.ToString(g.IndexName))
	}
	if fmt.Sprint(names) != "[open-index]" {
		t.Errorf("after UpdateTable the GSIs are %v: dynalite now creates them (update ddbproxy.go's comment)", names)
	}
	_, err = f.client.Query(ctx, &ddb.QueryInput{TableName: aws.String("gsi-table"), IndexName: aws.String("late-index"),
		KeyConditionExpression: aws.String("late = :x"), ExpressionAttributeValues: map[string]types.AttributeValue{":x": str("x")}})
	if err == nil || !strings.Contains(err.Error(), "does not have the specified index") {
		t.Errorf("Query on the index UpdateTable was to add: %v", err)
	}
	if calls := f.proxy.CallsOf("UpdateTable"); len(calls) != 2 || !bytes.Contains(calls[0].Request, []byte(`"late-index"`)) {
		t.Errorf("UpdateTable not recorded: %+v", calls)
	}
}

// TestProxyItemSize checks the proxy's size estimate against dynalite's on
// items of every type (ASCII strings; dynalite counts UTF-16 units).
func TestProxyItemSize(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{})
	ctx := proxyCtx(t)
	createKV(t, ctx, f.client, "sizes")
	pad := func(n int) types.AttributeValue { return str(strings.Repeat("p", n)) }
	items := []map[string]types.AttributeValue{
		{"n": &types.AttributeValueMemberN{Value: "123456789"}, "b": &types.AttributeValueMemberB{Value: bytes.Repeat([]byte{1}, 300)}},
		{"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": str("v"), "kk": &types.AttributeValueMemberBOOL{Value: true}}},
			"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{str("abc"), &types.AttributeValueMemberNULL{Value: true}}}},
		{"ss": &types.AttributeValueMemberSS{Value: []string{"one", "two"}}, "ns": &types.AttributeValueMemberNS{Value: []string{"1", "22.5"}}},
	}
	for i, extra := range items {
		it := key("size", strconv.Itoa(i))
		for k, v := range extra {
			it[k] = v
		}
		// Pad to just around a 1 KB boundary, so a size off by a few
		// bytes shows as a unit off.
		body, _ := rawItemJSON(it)
		est := itemSize(body)
		for _, delta := range []int{-3, -1, 0, 1, 3} {
			n := 1024 - est - len("zz") + delta
			if n < 0 {
				continue
			}
			it["zz"] = pad(n)
			body, _ := rawItemJSON(it)
			want := writeUnits(itemSize(body))
			o, err := f.direct.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String("sizes"), Item: it, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
			if err != nil {
				t.Fatal(err)
			}
			f.direct.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String("sizes"), Key: key("size", strconv.Itoa(i))})
			if got := units(o.ConsumedCapacity); got != want {
				t.Errorf("item %d padded %+d around 1 KB: dynalite counts %v WCU, the proxy's estimate %v (size %d)", i, delta, got, want, itemSize(body))
			}
		}
	}
}

// rawItemJSON is it in DynamoDB's JSON form, as the proxy sees it.
func rawItemJSON(it map[string]types.AttributeValue) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for k, v := range it {
		b, err := json.Marshal(avJSON(v))
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

func avJSON(v types.AttributeValue) any {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": v.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": v.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": v.Value} // []byte marshals as base64
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": v.Value}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": v.Value}
	case *types.AttributeValueMemberNS:
		return map[string]any{"NS": v.Value}
	case *types.AttributeValueMemberL:
		l := []any{}
		for _, e := range v.Value {
			l = append(l, avJSON(e))
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		m := map[string]any{}
		for k, e := range v.Value {
			m[k] = avJSON(e)
		}
		return map[string]any{"M": m}
	}
	return nil
}
