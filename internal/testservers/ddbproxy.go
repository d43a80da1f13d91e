package testservers

// A DynamoDB proxy for tests: it sits between any DynamoDB client (the wp
// binary itself, through AWS_ENDPOINT_URL_DYNAMODB) and dynalite, meters the
// capacity every request consumes, records the operations called, answers
// the Time to Live calls dynalite lacks, and can throttle like a table with
// provisioned throughput. The client's SDK is untouched.
//
// Where each figure comes from (dynalite 4.0.0, node_modules/dynalite):
//
//   - Write units: dynalite's ConsumedCapacity (db/index.js capacityUnits:
//     ceil(size/1 KB) of the larger of the old and the new item, 1 when there
//     is neither), which is DynamoDB's rule for the base table. BatchWriteItem
//     adds these up per table (actions/batchWriteItem.js). Neither dynalite nor
//     the proxy counts the writes DynamoDB makes to secondary indexes.
//   - A conditional write whose condition fails: dynalite reports nothing (an
//     error has no ConsumedCapacity); DynamoDB still consumes write capacity,
//     by the size of the existing item, at least 1. The proxy counts 1 (it
//     does not see the existing item; wp's items are under 1 KB).
//   - GetItem and BatchGetItem: dynalite's figures, which follow DynamoDB's
//     rules: per item ceil(size/4 KB), halved unless ConsistentRead, and a
//     missing item costs the minimum (0.5 or 1), counted on the whole item
//     even when a projection returns less.
//   - Query and Scan: dynalite adds up the size of the items read (scanned,
//     before any filter, up to Limit and the 1 MB page), rounds up to 4 KB and
//     halves unless ConsistentRead (db/index.js queryTable), as DynamoDB
//     documents. Two faults, which the proxy corrects: Scan drops
//     ConsistentRead (validations/scan.js does not declare it, and
//     checkTypes deletes undeclared fields), so a consistent Scan is reported
//     halved: the proxy doubles it back; and a read of nothing reports 0,
//     where DynamoDB charges the minimum read (0.5, or 1 when consistent),
//     as for a GetItem of a missing item: the proxy counts that minimum.
//     When the client asked for ReturnConsumedCapacity it gets the corrected
//     figures.
//   - Item sizes: dynalite's (names plus values, as in the developer guide),
//     except that it counts a string by its UTF-16 length, not its UTF-8
//     bytes: non-ASCII text is undercounted. The proxy's own size estimate
//     (itemSize, mirroring backends/dynamodb/size.go) only prices a request
//     before it is admitted.
//
// Signatures: the client signs each request for the proxy's host, and the
// proxy may rewrite the body (ReturnConsumedCapacity), which invalidates the
// signature's payload hash. dynalite checks only that the Authorization
// header has the SigV4 form (AWS4-, Credential, Signature, SignedHeaders) and
// that X-Amz-Date or Date is set (index.js httpHandler); it verifies neither
// the signature nor the Host. So the proxy forwards the client's headers as
// they are and does not re-sign. It would have to in front of a real
// DynamoDB, which this proxy is not for.
//
// dynalite 4.0.0 and secondary indexes: CreateTable with
// GlobalSecondaryIndexes works, including a sparse one (an item without the
// index key is not indexed), and Query or Scan with IndexName works and
// reports the index's read units. UpdateTable with GlobalSecondaryIndexUpdates
// Create wants ProvisionedThroughput on the new index even for an on-demand
// table (DynamoDB refuses it there), and with it answers 200 but changes
// nothing (actions/updateTable.js only applies throughput updates): the
// index never appears in DescribeTable and a Query on it fails with "The
// table does not have the specified index". The proxy passes UpdateTable
// through unchanged: a sparse index can be tested against dynalite only when
// CreateTable makes it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ProxyOptions configures a DynamoProxy. The zero value meters and records
// without throttling.
type ProxyOptions struct {
	// ReadUnitsPerSecond and WriteUnitsPerSecond are each table's
	// provisioned throughput; 0 is no limit in that direction.
	ReadUnitsPerSecond  float64
	WriteUnitsPerSecond float64
	// ReadBurst and WriteBurst are how many units a table's bucket holds
	// (its burst); 0 is one second's worth of the rate. DynamoDB keeps up to
	// 300 s of unused capacity; tests want a strict limit, so the default is
	// small.
	ReadBurst  float64
	WriteBurst float64
	// MaxCalls is how many calls Calls keeps (the first ones since Reset);
	// 0 is 20000, negative keeps none. Stats count every call regardless.
	MaxCalls int
	// MaxBodyBytes is how much of each request body a Call keeps; 0 is
	// 2048.
	MaxBodyBytes int
}

// OpStats adds up the requests of one operation (or of all).
type OpStats struct {
	// Requests is every request received, throttled ones included.
	Requests int
	// Throttled is how many the proxy refused with
	// ProvisionedThroughputExceededException.
	Throttled int
	// Errors is how many upstream (or the proxy's TTL emulation) answered
	// with an error; ConditionFailed is the ConditionalCheckFailedException
	// part of them.
	Errors          int
	ConditionFailed int
	// ReadUnits and WriteUnits are the capacity units consumed, by the
	// rules in this file's comment.
	ReadUnits  float64
	WriteUnits float64
}

func (s *OpStats) add(c *Call) {
	s.Requests++
	if c.Throttled {
		s.Throttled++
	}
	if c.ErrorType != "" && !c.Throttled {
		s.Errors++
		if c.ErrorType == "ConditionalCheckFailedException" {
			s.ConditionFailed++
		}
	}
	s.ReadUnits += c.ReadUnits
	s.WriteUnits += c.WriteUnits
}

// ProxyStats are the totals since start or Reset, and per operation
// ("PutItem", ...).
type ProxyStats struct {
	OpStats
	Ops map[string]OpStats
}

// Call is one DynamoDB request the proxy received.
type Call struct {
	// Time is when the proxy admitted (or refused) the request: the time
	// its units count at for throttling.
	Time time.Time
	// Op is the operation (X-Amz-Target after "DynamoDB_20120810.").
	Op string
	// Tables are the tables named: one, or for Batch* and Transact* each
	// table, sorted.
	Tables []string
	// Request is the client's request body, cut at MaxBodyBytes
	// (Truncated then says so, and Request is not valid JSON).
	Request   []byte
	Truncated bool
	// Status is the HTTP status of the answer; ErrorType the short name of
	// the error type ("ConditionalCheckFailedException"), "" on success.
	Status    int
	ErrorType string
	// Throttled says the proxy refused it.
	Throttled bool
	// Local says the proxy answered it itself (UpdateTimeToLive,
	// DescribeTimeToLive).
	Local bool
	// ReadUnits and WriteUnits are what the proxy counts; UpstreamUnits is
	// what dynalite reported (its ConsumedCapacity, added up), or -1 when
	// it reported none.
	ReadUnits     float64
	WriteUnits    float64
	UpstreamUnits float64
}

// Table is the first table the call names, "" for none.
func (c Call) Table() string {
	if len(c.Tables) == 0 {
		return ""
	}
	return c.Tables[0]
}

// Decode unmarshals the recorded request body into v.
func (c Call) Decode(v any) error {
	if c.Truncated {
		return fmt.Errorf("%s request was cut at %d bytes", c.Op, len(c.Request))
	}
	return json.Unmarshal(c.Request, v)
}

// TTLSpec is a table's Time to Live setting as the proxy keeps it.
type TTLSpec struct {
	AttributeName string
	Enabled       bool
}

// DynamoProxy is a running proxy. URL is the endpoint to give a client
// (AWS_ENDPOINT_URL_DYNAMODB).
type DynamoProxy struct {
	Addr string
	URL  string

	upstream string
	client   *http.Client
	srv      *http.Server
	done     chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	opt      ProxyOptions
	total    OpStats
	ops      map[string]*OpStats
	calls    []Call
	dropped  int
	buckets  map[bucketKey]*bucket
	ttl      map[string]TTLSpec
	clockNow func() time.Time
}

// StartDynamoProxy starts a proxy on a free loopback port in front of
// upstream (dynalite's URL, http://host:port).
func StartDynamoProxy(upstream string, opt ProxyOptions) (*DynamoProxy, error) {
	if !strings.HasPrefix(upstream, "http://") && !strings.HasPrefix(upstream, "https://") {
		return nil, fmt.Errorf("dynamo proxy: upstream %q is not an http:// URL", upstream)
	}
	if opt.MaxCalls == 0 {
		opt.MaxCalls = 20000
	}
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 2048
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dynamo proxy: listen: %w", err)
	}
	p := &DynamoProxy{
		Addr:     ln.Addr().String(),
		URL:      "http://" + ln.Addr().String(),
		upstream: strings.TrimRight(upstream, "/"),
		client: &http.Client{
			Timeout: 2 * time.Minute,
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     30 * time.Second,
			},
		},
		done:     make(chan struct{}),
		opt:      opt,
		ops:      map[string]*OpStats{},
		buckets:  map[bucketKey]*bucket{},
		ttl:      map[string]TTLSpec{},
		clockNow: time.Now,
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		p.srv.Serve(ln)
	}()
	return p, nil
}

// StartDynamoProxyT starts a proxy for a test and stops it in t.Cleanup.
func StartDynamoProxyT(t testing.TB, upstream string, opt ProxyOptions) *DynamoProxy {
	t.Helper()
	p, err := StartDynamoProxy(upstream, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Stop closes the proxy and its connections. Safe to call twice.
func (p *DynamoProxy) Stop() {
	p.stopOnce.Do(func() {
		p.srv.Close()
		<-p.done
		p.client.CloseIdleConnections()
	})
}

// SetLimits changes the throughput limits (the Read*/Write* fields of o; the
// others are ignored) and refills every bucket.
func (p *DynamoProxy) SetLimits(o ProxyOptions) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opt.ReadUnitsPerSecond, p.opt.WriteUnitsPerSecond = o.ReadUnitsPerSecond, o.WriteUnitsPerSecond
	p.opt.ReadBurst, p.opt.WriteBurst = o.ReadBurst, o.WriteBurst
	p.buckets = map[bucketKey]*bucket{}
}

// Stats returns the totals and per-operation figures since start or Reset.
func (p *DynamoProxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProxyStats{OpStats: p.total, Ops: make(map[string]OpStats, len(p.ops))}
	for op, o := range p.ops {
		s.Ops[op] = *o
	}
	return s
}

// Calls returns the calls recorded since start or Reset, oldest first, and
// how many more there were past MaxCalls.
func (p *DynamoProxy) Calls() (calls []Call, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...), p.dropped
}

// CallsOf returns the recorded calls of op.
func (p *DynamoProxy) CallsOf(op string) []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Call
	for _, c := range p.calls {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// Reset clears the stats and the recorded calls. The Time to Live settings
// and the throttling buckets stay: they are state of the tables.
func (p *DynamoProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = OpStats{}
	p.ops = map[string]*OpStats{}
	p.calls = nil
	p.dropped = 0
}

// TTL returns the Time to Live setting the proxy keeps for table.
func (p *DynamoProxy) TTL(table string) TTLSpec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ttl[table]
}

// direction is which capacity an operation consumes.
type direction int

const (
	noCapacity direction = iota
	readCapacity
	writeCapacity
)

// opDirection is the capacity op consumes; noCapacity for control-plane
// operations, which are neither metered nor throttled.
func opDirection(op string) direction {
	switch op {
	case "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems":
		return readCapacity
	case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
		return writeCapacity
	}
	return noCapacity
}

// Token buckets, one per table and direction. A request is admitted when
// its table's bucket holds at least the least the request can cost
// (estimate: known before it runs), capped at the burst so that a request
// dearer than the burst still gets in from a full bucket. That least is
// taken at admission, so that concurrent requests cannot all pass one
// bucket before any is charged; once the answer says what the request
// really consumed, the difference is taken too (or given back), which can
// put the bucket in debt. A bucket refills at the rate up to the burst. So
// the units admitted in any window of w seconds are at most rate*w + burst
// plus what requests consumed past their estimate, and the long-run rate
// converges to the limit.
type bucketKey struct {
	table string
	dir   direction
}

type bucket struct {
	tokens float64
	last   time.Time
}

// limit returns the rate and burst of dir; rate 0 is no limit.
func (p *DynamoProxy) limit(dir direction) (rate, burst float64) {
	switch dir {
	case readCapacity:
		rate, burst = p.opt.ReadUnitsPerSecond, p.opt.ReadBurst
	case writeCapacity:
		rate, burst = p.opt.WriteUnitsPerSecond, p.opt.WriteBurst
	}
	if burst <= 0 {
		burst = rate
	}
	return rate, burst
}

// bucketLocked returns the bucket of table and dir refilled to now, nil
// when dir has no limit. p.mu is held.
func (p *DynamoProxy) bucketLocked(table string, dir direction, now time.Time) (*bucket, float64) {
	rate, burst := p.limit(dir)
	if rate <= 0 {
		return nil, 0
	}
	k := bucketKey{table, dir}
	b := p.buckets[k]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		p.buckets[k] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(burst, b.tokens+rate*dt)
		b.last = now
	}
	return b, burst
}

// admit takes est from the buckets of every table in est, or, when any is
// short, takes nothing and returns false. It returns the admission time.
func (p *DynamoProxy) admit(dir direction, est map[string]float64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clockNow()
	if dir == noCapacity {
		return now, true
	}
	const eps = 1e-9
	for table, units := range est {
		b, burst := p.bucketLocked(table, dir, now)
		if b != nil && b.tokens+eps < math.Min(units, burst) {
			return now, false
		}
	}
	for table, units := range est {
		if b, _ := p.bucketLocked(table, dir, now); b != nil {
			b.tokens -= units
		}
	}
	return now, true
}

// settle takes from each table's bucket what a request consumed past its
// estimate, or gives back what it consumed less.
func (p *DynamoProxy) settle(dir direction, est, used map[string]float64) {
	if dir == noCapacity {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clockNow()
	tables := map[string]bool{}
	for t := range est {
		tables[t] = true
	}
	for t := range used {
		tables[t] = true
	}
	for t := range tables {
		if b, _ := p.bucketLocked(t, dir, now); b != nil {
			b.tokens -= used[t] - est[t]
		}
	}
}

// record adds c to the stats and, room permitting, the call list.
func (p *DynamoProxy) record(c Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total.add(&c)
	o := p.ops[c.Op]
	if o == nil {
		o = &OpStats{}
		p.ops[c.Op] = o
	}
	o.add(&c)
	if p.opt.MaxCalls > 0 && len(p.calls) < p.opt.MaxCalls {
		p.calls = append(p.calls, c)
	} else {
		p.dropped++
	}
}

const (
	targetPrefix  = "DynamoDB_20120810."
	amzJSON       = "application/x-amz-json-1.0"
	errTypePrefix = "com.amazonaws.dynamodb.v20120810#"
	throttleBody  = `{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}`
	maxRequest    = 16 << 20
)

// ServeHTTP proxies one request.
func (p *DynamoProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil {
		http.Error(w, "dynamo proxy: read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if r.Method != http.MethodPost || !ok {
		// Not a DynamoDB call (dynalite's health GET, a wrong target):
		// upstream answers it as it would.
		p.pass(w, r, body)
		return
	}
	var req map[string]json.RawMessage
	if json.Unmarshal(body, &req) != nil {
		req = nil // upstream answers SerializationException
	}
	c := Call{Op: op, Tables: requestTables(op, req), UpstreamUnits: -1}
	if len(body) > p.opt.MaxBodyBytes {
		c.Request, c.Truncated = append([]byte(nil), body[:p.opt.MaxBodyBytes]...), true
	} else {
		c.Request = append([]byte(nil), body...)
	}
	if req != nil && (op == "UpdateTimeToLive" || op == "DescribeTimeToLive") {
		c.Time = p.now()
		p.send(w, &c, p.answerTTL(r, op, req, &c))
		return
	}

	dir := opDirection(op)
	est := estimate(op, req)
	var admitted bool
	c.Time, admitted = p.admit(dir, est)
	if !admitted {
		c.Throttled, c.ErrorType = true, "ProvisionedThroughputExceededException"
		p.send(w, &c, reply{status: http.StatusBadRequest, body: []byte(throttleBody), contentType: amzJSON})
		return
	}

	asked := false
	if req != nil && dir != noCapacity {
		var rcc string
		json.Unmarshal(req["ReturnConsumedCapacity"], &rcc)
		asked = rcc == "TOTAL" || rcc == "INDEXES"
		if !asked {
			req["ReturnConsumedCapacity"] = json.RawMessage(`"TOTAL"`)
			if b, err := json.Marshal(req); err == nil {
				body = b
			}
		}
	}

	resp, respBody, err := p.do(r.Context(), r, target, body)
	if err != nil {
		p.settle(dir, est, nil)
		c.ErrorType = "ProxyError"
		p.send(w, &c, upstreamError(err))
		return
	}
	c.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		c.ErrorType = errorType(respBody)
	}

	var used map[string]float64
	if dir != noCapacity && req != nil {
		var fixed []byte
		used, c.UpstreamUnits, fixed = meter(op, req, resp.StatusCode, c.ErrorType, respBody, asked)
		if fixed != nil {
			respBody = fixed
		}
		for _, u := range used {
			if dir == readCapacity {
				c.ReadUnits += u
			} else {
				c.WriteUnits += u
			}
		}
	}
	p.settle(dir, est, used)
	if resp.StatusCode == http.StatusOK && (op == "CreateTable" || op == "DeleteTable") {
		p.mu.Lock()
		delete(p.ttl, c.Table())
		p.mu.Unlock()
	}
	p.send(w, &c, reply{status: resp.StatusCode, body: respBody, header: resp.Header})
}

// reply is an answer to send: upstream's header (or none), a body, and a
// Content-Type to set when not "".
type reply struct {
	status      int
	body        []byte
	header      http.Header
	contentType string
}

func upstreamError(err error) reply {
	return reply{status: http.StatusBadGateway, body: []byte("dynamo proxy: upstream: " + err.Error()), contentType: "text/plain; charset=utf-8"}
}

// send records c and then answers: a test that reads the stats once it has
// its answer finds the call counted.
func (p *DynamoProxy) send(w http.ResponseWriter, c *Call, rep reply) {
	c.Status = rep.status
	p.record(*c)
	copyHeaders(w.Header(), rep.header)
	writeJSON(w, rep.status, rep.body, rep.contentType)
}

func (p *DynamoProxy) now() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clockNow()
}

// pass forwards a request that is not a DynamoDB call and copies back the
// answer unchanged.
func (p *DynamoProxy) pass(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, respBody, err := p.do(r.Context(), r, r.Header.Get("X-Amz-Target"), body)
	if err != nil {
		http.Error(w, "dynamo proxy: upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	copyHeaders(w.Header(), resp.Header)
	w.Header().Set("Content-Length", strconv.Itoa(len(respBody)))
	w.WriteHeader(resp.StatusCode)
	w.Write(respBody)
}

// do sends body to upstream with the client's headers (its signature
// included: dynalite does not verify it) and target, and reads the answer.
func (p *DynamoProxy) do(ctx context.Context, r *http.Request, target string, body []byte) (*http.Response, []byte, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length", "Connection", "Accept-Encoding", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect":
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	if target != "" {
		out.Header.Set("X-Amz-Target", target)
	}
	resp, err := p.client.Do(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}

func copyHeaders(dst, src http.Header) {
	for k, vs := range src {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Date":
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// proxyRequestID numbers the answers the proxy makes itself.
var proxyRequestID atomic.Int64

// writeJSON writes body with a CRC32 matching it (the SDK checks
// X-Amz-Crc32 when it is present, and the proxy may have changed the body).
// contentType, when not "", replaces upstream's.
func writeJSON(w http.ResponseWriter, status int, body []byte, contentType string) {
	h := w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	if h.Get("X-Amzn-Requestid") == "" {
		h.Set("X-Amzn-RequestId", fmt.Sprintf("WPPROXY%012d", proxyRequestID.Add(1)))
	}
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// errorType is the short error type of a DynamoDB error body.
func errorType(body []byte) string {
	var e struct {
		Type string `json:"__type"`
	}
	if json.Unmarshal(body, &e) != nil || e.Type == "" {
		return "UnknownError"
	}
	if i := strings.LastIndexByte(e.Type, '#'); i >= 0 {
		return e.Type[i+1:]
	}
	return e.Type
}

// requestTables lists the tables a request names, sorted.
func requestTables(op string, req map[string]json.RawMessage) []string {
	if req == nil {
		return nil
	}
	var name string
	if json.Unmarshal(req["TableName"], &name) == nil && name != "" {
		return []string{name}
	}
	set := map[string]bool{}
	var items map[string]json.RawMessage
	if json.Unmarshal(req["RequestItems"], &items) == nil {
		for t := range items {
			set[t] = true
		}
	}
	var transact []map[string]struct {
		TableName string
	}
	if json.Unmarshal(req["TransactItems"], &transact) == nil {
		for _, ti := range transact {
			for _, a := range ti {
				if a.TableName != "" {
					set[a.TableName] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// readMin is the least a read of one item (or of nothing) costs.
func readMin(consistent bool) float64 {
	if consistent {
		return 1
	}
	return 0.5
}

func boolField(m map[string]json.RawMessage, k string) bool {
	var b bool
	json.Unmarshal(m[k], &b)
	return b
}

// estimate is the least a request can cost, per table, known before it
// runs: what the throttle admits it on.
func estimate(op string, req map[string]json.RawMessage) map[string]float64 {
	est := map[string]float64{}
	if req == nil {
		return est
	}
	tables := requestTables(op, req)
	if len(tables) == 0 {
		return est // upstream refuses it
	}
	switch op {
	case "GetItem", "Query", "Scan":
		est[tables[0]] = readMin(boolField(req, "ConsistentRead"))
	case "UpdateItem", "DeleteItem":
		est[tables[0]] = 1
	case "PutItem":
		var item map[string]json.RawMessage
		json.Unmarshal(req["Item"], &item)
		est[tables[0]] = writeUnits(itemSize(item))
	case "BatchGetItem":
		var items map[string]struct {
			Keys           []json.RawMessage
			ConsistentRead bool
		}
		json.Unmarshal(req["RequestItems"], &items)
		for t, ka := range items {
			est[t] = float64(len(ka.Keys)) * readMin(ka.ConsistentRead)
		}
	case "BatchWriteItem":
		var items map[string][]struct {
			PutRequest *struct {
				Item map[string]json.RawMessage
			}
			DeleteRequest json.RawMessage
		}
		json.Unmarshal(req["RequestItems"], &items)
		for t, ws := range items {
			for _, w := range ws {
				if w.PutRequest != nil {
					est[t] += writeUnits(itemSize(w.PutRequest.Item))
				} else {
					est[t]++
				}
			}
		}
	case "TransactGetItems", "TransactWriteItems":
		// Two units an item (a transactional read or write of up to 4 KB
		// or 1 KB); dynalite 4.0.0 does not implement these.
		var transact []map[string]struct {
			TableName string
		}
		json.Unmarshal(req["TransactItems"], &transact)
		for _, ti := range transact {
			for _, a := range ti {
				est[a.TableName] += 2
			}
		}
	}
	return est
}

// writeUnits is what writing an item of size bytes costs: ceil(size/1 KB),
// at least 1.
func writeUnits(size int) float64 {
	return math.Max(1, math.Ceil(float64(size)/1024))
}

// consumed is one ConsumedCapacity entry of an answer.
type consumed struct {
	TableName     string
	CapacityUnits float64
}

// meter returns the units a request consumed per table, what upstream
// reported (-1 for nothing), and, when the answer must change, the new
// answer: without ConsumedCapacity when the client did not ask for it,
// with the corrected figures when it did and the proxy corrected them.
func meter(op string, req map[string]json.RawMessage, status int, errType string, body []byte, asked bool) (used map[string]float64, upstream float64, fixed []byte) {
	used = map[string]float64{}
	upstream = -1
	tables := requestTables(op, req)
	if status != http.StatusOK {
		if errType == "ConditionalCheckFailedException" && len(tables) == 1 {
			// DynamoDB charges a failed conditional write by the
			// existing item's size, at least 1; dynalite reports none.
			used[tables[0]] = 1
		}
		return used, upstream, nil
	}
	var resp map[string]json.RawMessage
	if json.Unmarshal(body, &resp) != nil {
		return used, upstream, nil
	}
	raw, ok := resp["ConsumedCapacity"]
	if !ok {
		return used, upstream, nil
	}
	var list []consumed
	if len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '[' {
		json.Unmarshal(raw, &list)
	} else {
		var one consumed
		json.Unmarshal(raw, &one)
		list = []consumed{one}
	}
	upstream = 0
	for _, cc := range list {
		upstream += cc.CapacityUnits
		used[cc.TableName] += cc.CapacityUnits
	}
	corrected := false
	if (op == "Scan" || op == "Query") && len(tables) == 1 {
		t := tables[0]
		consistent := boolField(req, "ConsistentRead")
		u := used[t]
		if op == "Scan" && consistent {
			u *= 2 // dynalite's Scan drops ConsistentRead
		}
		u = math.Max(u, readMin(consistent))
		if u != used[t] {
			used[t], corrected = u, true
		}
	}
	switch {
	case !asked:
		delete(resp, "ConsumedCapacity")
	case corrected:
		resp["ConsumedCapacity"] = fixReadCapacity(raw, req, used[tables[0]])
	default:
		return used, upstream, nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return used, upstream, nil
	}
	return used, upstream, b
}

// fixReadCapacity rewrites the ConsumedCapacity object of a Query or Scan
// to total units: the total, and the table's or the index's part (the one
// that was read).
func fixReadCapacity(raw json.RawMessage, req map[string]json.RawMessage, total float64) json.RawMessage {
	var cc map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&cc) != nil {
		return raw
	}
	units := json.Number(strconv.FormatFloat(total, 'f', -1, 64))
	cc["CapacityUnits"] = units
	var index string
	json.Unmarshal(req["IndexName"], &index)
	set := func(m any) {
		if mm, ok := m.(map[string]any); ok {
			mm["CapacityUnits"] = units
		}
	}
	if index == "" {
		set(cc["Table"])
	} else {
		for _, k := range []string{"GlobalSecondaryIndexes", "LocalSecondaryIndexes"} {
			if ix, ok := cc[k].(map[string]any); ok {
				set(ix[index])
			}
		}
		if t, ok := cc["Table"].(map[string]any); ok {
			t["CapacityUnits"] = json.Number("0")
		}
	}
	b, err := json.Marshal(cc)
	if err != nil {
		return raw
	}
	return b
}

// answerTTL answers UpdateTimeToLive and DescribeTimeToLive, which dynalite
// does not implement (it has a DescribeTimeToLive that always says
// DISABLED). The table must exist upstream: the proxy asks dynalite's
// DescribeTimeToLive, which checks that, and passes on its error. Enabling
// takes effect at once (DynamoDB is ENABLING for up to an hour); enabling
// an enabled or disabling a disabled TTL is a ValidationException, as in
// DynamoDB. Expired items are not deleted.
func (p *DynamoProxy) answerTTL(r *http.Request, op string, req map[string]json.RawMessage, c *Call) reply {
	c.Local = true
	fail := func(errType, msg string) reply {
		b, _ := json.Marshal(map[string]string{"__type": errTypePrefix + errType, "message": msg})
		c.ErrorType = errType
		return reply{status: http.StatusBadRequest, body: b, contentType: amzJSON}
	}
	ok := func(v any) reply {
		b, _ := json.Marshal(v)
		return reply{status: http.StatusOK, body: b, contentType: amzJSON}
	}
	var table string
	json.Unmarshal(req["TableName"], &table)
	check, _ := json.Marshal(map[string]string{"TableName": table})
	resp, respBody, err := p.do(r.Context(), r, targetPrefix+"DescribeTimeToLive", check)
	if err != nil {
		c.ErrorType = "ProxyError"
		return upstreamError(err)
	}
	if resp.StatusCode != http.StatusOK {
		c.ErrorType = errorType(respBody)
		return reply{status: resp.StatusCode, body: respBody, header: resp.Header}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.ttl[table]
	if op == "DescribeTimeToLive" {
		desc := map[string]string{"TimeToLiveStatus": "DISABLED"}
		if cur.Enabled {
			desc = map[string]string{"TimeToLiveStatus": "ENABLED", "AttributeName": cur.AttributeName}
		}
		return ok(map[string]any{"TimeToLiveDescription": desc})
	}
	var spec *struct {
		AttributeName *string
		Enabled       *bool
	}
	json.Unmarshal(req["TimeToLiveSpecification"], &spec)
	switch {
	case spec == nil:
		return fail("ValidationException", "1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null")
	case spec.AttributeName == nil || *spec.AttributeName == "" || spec.Enabled == nil:
		return fail("ValidationException", "TimeToLiveSpecification needs AttributeName (1 to 255 characters) and Enabled")
	case *spec.Enabled && cur.Enabled:
		return fail("ValidationException", "TimeToLive is already enabled")
	case !*spec.Enabled && !cur.Enabled:
		return fail("ValidationException", "TimeToLive is already disabled")
	case !*spec.Enabled && cur.AttributeName != *spec.AttributeName:
		return fail("ValidationException", "TimeToLive is active on a different AttributeName: current AttributeName is "+cur.AttributeName)
	}
	p.ttl[table] = TTLSpec{AttributeName: *spec.AttributeName, Enabled: *spec.Enabled}
	return ok(map[string]any{"TimeToLiveSpecification": map[string]any{"AttributeName": *spec.AttributeName, "Enabled": *spec.Enabled}})
}

// itemSize estimates the size of an item in DynamoDB's JSON form by the
// developer guide's rules, as backends/dynamodb/size.go does for the SDK's
// types: each attribute's name plus its value.
func itemSize(item map[string]json.RawMessage) int {
	n := 0
	for name, v := range item {
		n += len(name) + avSize(v)
	}
	return n
}

// avSize is the size of one value: a string or binary its bytes, a number
// one byte per two significant digits plus one, a boolean or null 1, a list
// or map 3 plus 1 per element plus the elements (and a map's keys), a set
// the sum of its members.
func avSize(raw json.RawMessage) int {
	var av map[string]json.RawMessage
	if json.Unmarshal(raw, &av) != nil {
		return 0
	}
	for typ, v := range av {
		switch typ {
		case "S":
			var s string
			json.Unmarshal(v, &s)
			return len(s)
		case "N":
			var s string
			json.Unmarshal(v, &s)
			return numberSize(s)
		case "B":
			return binarySize(v)
		case "BOOL", "NULL":
			return 1
		case "SS", "NS":
			var ss []string
			json.Unmarshal(v, &ss)
			n := 0
			for _, s := range ss {
				if typ == "SS" {
					n += len(s)
				} else {
					n += numberSize(s)
				}
			}
			return n
		case "BS":
			var bs []json.RawMessage
			json.Unmarshal(v, &bs)
			n := 0
			for _, b := range bs {
				n += binarySize(b)
			}
			return n
		case "L":
			var l []json.RawMessage
			json.Unmarshal(v, &l)
			n := 3
			for _, e := range l {
				n += 1 + avSize(e)
			}
			return n
		case "M":
			var m map[string]json.RawMessage
			json.Unmarshal(v, &m)
			n := 3
			for k, e := range m {
				n += 1 + len(k) + avSize(e)
			}
			return n
		}
	}
	return 0
}

func binarySize(v json.RawMessage) int {
	var s string
	json.Unmarshal(v, &s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return base64.StdEncoding.DecodedLen(len(s))
	}
	return len(b)
}

// numberSize is the size of a number written as s: its significant digits,
// two to a byte, plus one.
func numberSize(s string) int {
	s = strings.TrimLeft(s, "-+0")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Replace(s, ".", "", 1)
	s = strings.TrimRight(strings.TrimLeft(s, "0"), "0")
	return (len(s)+1)/2 + 1
}
