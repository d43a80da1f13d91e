package dynamodb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// Attribute names (see the package comment). Every expression refers to
// them through #aliases, as several are DynamoDB reserved words.
const (
	attrID           = "id"
	attrWP           = "wp"
	attrTotal        = "total"
	attrShardSize    = "shardSize"
	attrGroupSize    = "groupSize"
	attrShards       = "shards"
	attrExtent       = "extent"
	attrGroups       = "groups"
	attrMetadata     = "metadata"
	attrCreated      = "created"
	attrError        = "error"
	attrReduceSent   = "reduceSent"   // legacy jobs (the Node library's flag), and wp jobs of layout 1
	attrWPReduceSent = "wpReduceSent" // wp jobs of layout 2
	attrReduced      = "reduced"
	attrClaimToken   = "claimToken"
	attrClaimExp     = "claimExp"
	attrCreating     = "creating"
	attrLease        = "lease"
	attrFirstPart    = "wpFirstPart"
	attrParts        = "parts" // shard items, and legacy job items
	attrLeft         = "left"  // group items
	attrT            = "t"     // shard and group items
	attrFailed       = "f"     // shard items of a failed job
	attrFailMarked   = "failMarked"
	pyReduceSentKey  = "reduce_message_sent"

	// Given-up parts, on job items of both kinds: prefixed,
	// as the legacy libraries own the unprefixed names.
	attrGivenUp    = "wpGivenUp"         // NS: the given-up parts (index)
	attrGivenUpVer = "wpGivenUpV"        // N: legacy jobs, bumped by every change of wpGivenUp
	attrTolerance  = "wpTolerance"       // S: "3", "10%"
	attrTolLimit   = "wpTolLimit"        // N: the most given-up parts tolerated
	attrGivenUpMax = "wpGivenUpMax"      // N: the most part ids wpGivenUp may list (the item's room; see givenUpRoom)
	attrTolFailed  = "wpTolFailed"       // BOOL: failed by the tolerance
	attrROF        = "wpReduceOnFailure" // BOOL
	attrDigest     = "wpDigest"          // S
	// On shard items.
	attrGU       = "gu" // NS: given-up offsets
	attrRetry    = "r"  // S: the token of the wp retry holding the shard
	attrRetryExp = "rx" // N: when that hold runs out (unix ms)

	// Progress, expiry and listing (see doc.go).
	attrExpires    = "wpExpires"    // N: every item of a job: when it expires (unix seconds; the table's time to live)
	attrEnded      = "wpEnded"      // N: job item: when a part last ended, as of the last group that emptied (unix ms)
	attrBatch      = "wpBatch"      // N: job item: Job.Batch, when set
	attrBatchBytes = "wpBatchBytes" // N: job item: Job.BatchBytes, when set
	attrList       = "wpList"       // S: job items only: "jobs", the hash key of the wp-jobs index
	attrListed     = "wpListed"     // N: job items only: the range key: created (unix ms), 0 for other tools' jobs
	// Details items.
	attrReason = "reason"

	deletingToken = "deleting"
)

type item = map[string]types.AttributeValue

// partsGuard is the parts attribute of a wp job item (layout 2): not a number
// set, so that the legacy libraries' completion (DELETE parts :p) fails with
// a ValidationException and their status and pending calls fail with a
// TypeError, instead of taking the job for a finished one of theirs (see the
// package comment).
var partsGuard types.AttributeValue = &types.AttributeValueMemberBOOL{Value: true}

func shardKey(job string, s int64) string { return fmt.Sprintf("%s#s%05d", job, s) }
func groupKey(job string, g int64) string { return fmt.Sprintf("%s#g%05d", job, g) }

func key(id string) item { return item{attrID: &types.AttributeValueMemberS{Value: id}} }

// names builds ExpressionAttributeNames: "#name" -> name.
func names(ns ...string) map[string]string {
	m := make(map[string]string, len(ns))
	for _, n := range ns {
		m["#"+n] = n
	}
	return m
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func numSet(ns ...int64) types.AttributeValue {
	v := make([]string, len(ns))
	for i, n := range ns {
		v[i] = strconv.FormatInt(n, 10)
	}
	return &types.AttributeValueMemberNS{Value: v}
}
func str(s string) types.AttributeValue   { return &types.AttributeValueMemberS{Value: s} }
func boolean(b bool) types.AttributeValue { return &types.AttributeValueMemberBOOL{Value: b} }

// rangeSet is the number set 0..n-1.
func rangeSet(n int64) types.AttributeValue {
	v := make([]string, n)
	for i := range v {
		v[i] = strconv.Itoa(i)
	}
	return &types.AttributeValueMemberNS{Value: v}
}

func getNum(it item, name string) (int64, bool) {
	n, ok := it[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		// Legacy tools may have written a float; take its integer part.
		f, ferr := strconv.ParseFloat(n.Value, 64)
		if ferr != nil {
			return 0, false
		}
		v = int64(f)
	}
	return v, true
}

func getStr(it item, name string) string {
	if s, ok := it[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func getBool(it item, name string) bool {
	b, ok := it[name].(*types.AttributeValueMemberBOOL)
	return ok && b.Value
}

// getNS returns a number set's members, sorted, and whether it is there.
func getNS(it item, name string) ([]int64, bool) {
	ns, ok := it[name].(*types.AttributeValueMemberNS)
	if !ok {
		return nil, false
	}
	out := make([]int64, 0, len(ns.Value))
	for _, s := range ns.Value {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(s, 64)
			if ferr != nil {
				continue
			}
			v = int64(f)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, true
}

func nsLen(it item, name string) int64 {
	if ns, ok := it[name].(*types.AttributeValueMemberNS); ok {
		return int64(len(ns.Value))
	}
	return 0
}

func nsContains(it item, name string, v int64) bool {
	ns, ok := it[name].(*types.AttributeValueMemberNS)
	if !ok {
		return false
	}
	want := strconv.FormatInt(v, 10)
	for _, s := range ns.Value {
		if s == want {
			return true
		}
	}
	return false
}

// jobItem is a parsed job item, wp's or a legacy one.
type jobItem struct {
	id       string
	raw      item
	legacy   bool
	creating string
	lease    int64
	total    int64
	// wp layout
	shardSize, groupSize int64
	shards, extent       int64
	groupsLeft           bool // the groups set is there: parts are pending
	created              int64
	// version is the wp attribute: the layout (0 for a legacy job).
	version int64
	// common
	failed     bool
	errMsg     string
	reduceSent bool
	reduced    bool
	claimExp   int64
	claimToken string
	// given-up parts
	tolerance backends.Tolerance
	tolLimit  int64
	tolFailed bool
	rof       bool
	digest    string
	// progress, expiry, listing
	expires           int64 // unix seconds, 0: never
	ended             int64 // wpEnded, unix ms
	batch, batchBytes int64
	listed            bool // the index keys are on the item
}

// parseJob reads a job item. ok is false for anything that is not one (no
// item, a shard or group item, an item without total).
func parseJob(it item) (*jobItem, bool) {
	if it == nil {
		return nil, false
	}
	total, ok := getNum(it, attrTotal)
	if !ok {
		return nil, false
	}
	j := &jobItem{id: getStr(it, attrID), raw: it, total: total}
	_, isWP := it[attrWP]
	j.legacy = !isWP
	j.creating = getStr(it, attrCreating)
	j.lease, _ = getNum(it, attrLease)
	if !j.legacy {
		j.shardSize, _ = getNum(it, attrShardSize)
		j.groupSize, _ = getNum(it, attrGroupSize)
		j.shards, _ = getNum(it, attrShards)
		j.extent, _ = getNum(it, attrExtent)
		j.created, _ = getNum(it, attrCreated)
		if j.shardSize <= 0 || j.groupSize <= 0 {
			return nil, false
		}
	}
	_, j.groupsLeft = it[attrGroups]
	if e, ok := it[attrError]; ok {
		j.failed = true
		j.errMsg = errorText(e)
	}
	j.version, _ = getNum(it, attrWP)
	j.reduceSent = reduceSentOf(it, j.version)
	j.reduced = getBool(it, attrReduced)
	j.claimExp, _ = getNum(it, attrClaimExp)
	j.claimToken = getStr(it, attrClaimToken)
	j.tolerance, _ = backends.ParseTolerance(getStr(it, attrTolerance))
	j.tolLimit, _ = getNum(it, attrTolLimit)
	j.tolFailed = getBool(it, attrTolFailed)
	j.rof = getBool(it, attrROF)
	j.digest = getStr(it, attrDigest)
	j.expires, _ = getNum(it, attrExpires)
	j.ended, _ = getNum(it, attrEnded)
	j.batch, _ = getNum(it, attrBatch)
	j.batchBytes, _ = getNum(it, attrBatchBytes)
	_, j.listed = it[attrList]
	return j, true
}

// expired says whether the job's expiry has passed at now (unix ms): a job
// is gone from its expiry second on, whatever the table's time to live has
// deleted yet.
func (j *jobItem) expired(nowMS int64) bool {
	return j.expires > 0 && nowMS >= j.expires*1000
}

// errorText renders a legacy error attribute of any type (the Python library
// stores the failing part id, a number).
func errorText(av types.AttributeValue) string {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	}
	if b, err := avToJSON(av); err == nil {
		return string(b)
	}
	return "failed"
}

func (j *jobItem) visible() bool { return j.creating == "" }

// reduceSentOf reads the reduce flag the way the job's writer records it
// (see the package comment): a legacy job's reduce was sent when either
// library says so (the Node helper's reduceSent, the Python library's
// metadata.reduce_message_sent); a wp job's only when wp recorded it. The
// legacy libraries' flags on a wp job were set by an old worker that took
// the job for one of its own, and prove nothing.
func reduceSentOf(it item, version int64) bool {
	switch {
	case version == 0:
		if getBool(it, attrReduceSent) {
			return true
		}
		if m, ok := it[attrMetadata].(*types.AttributeValueMemberM); ok {
			if b, ok := m.Value[pyReduceSentKey].(*types.AttributeValueMemberBOOL); ok && b.Value {
				return true
			}
		}
		return false
	case version == 1:
		// Layout 1 recorded wp's reduce in reduceSent.
		return getBool(it, attrWPReduceSent) || getBool(it, attrReduceSent)
	default:
		return getBool(it, attrWPReduceSent)
	}
}

// legacyFirstPart applies the heuristic of the package comment to a legacy
// item read whole: the recorded wpFirstPart, else part N pending means
// 1-based, part 0 pending means 0-based. known is false when nothing tells.
func legacyFirstPart(j *jobItem) (first int64, known bool) {
	if v, ok := getNum(j.raw, attrFirstPart); ok {
		return v, true
	}
	if nsContains(j.raw, attrParts, j.total) {
		return 1, true
	}
	if nsContains(j.raw, attrParts, 0) {
		return 0, true
	}
	return 0, false
}

// jsonToAV converts JSON metadata to a DynamoDB value (objects become M,
// which the legacy tools read). Numbers keep their text.
func jsonToAV(raw json.RawMessage) (types.AttributeValue, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("metadata is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("metadata holds more than one JSON value")
	}
	return valueToAV(v), nil
}

func valueToAV(v any) types.AttributeValue {
	switch x := v.(type) {
	case nil:
		return &types.AttributeValueMemberNULL{Value: true}
	case bool:
		return boolean(x)
	case json.Number:
		return &types.AttributeValueMemberN{Value: x.String()}
	case string:
		return str(x)
	case []any:
		l := make([]types.AttributeValue, len(x))
		for i, e := range x {
			l[i] = valueToAV(e)
		}
		return &types.AttributeValueMemberL{Value: l}
	case map[string]any:
		m := make(map[string]types.AttributeValue, len(x))
		for k, e := range x {
			m[k] = valueToAV(e)
		}
		return &types.AttributeValueMemberM{Value: m}
	}
	return &types.AttributeValueMemberNULL{Value: true}
}

// avToJSON converts a DynamoDB value back to JSON. Sets (which legacy tools
// could have stored) become arrays, binary becomes base64 strings.
func avToJSON(av types.AttributeValue) (json.RawMessage, error) {
	v, err := avToValue(av)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func avToValue(av types.AttributeValue) (any, error) {
	switch x := av.(type) {
	case *types.AttributeValueMemberNULL:
		return nil, nil
	case *types.AttributeValueMemberBOOL:
		return x.Value, nil
	case *types.AttributeValueMemberN:
		return json.Number(x.Value), nil
	case *types.AttributeValueMemberS:
		return x.Value, nil
	case *types.AttributeValueMemberB:
		return x.Value, nil
	case *types.AttributeValueMemberSS:
		return x.Value, nil
	case *types.AttributeValueMemberNS:
		l := make([]json.Number, len(x.Value))
		for i, s := range x.Value {
			l[i] = json.Number(s)
		}
		return l, nil
	case *types.AttributeValueMemberBS:
		return x.Value, nil
	case *types.AttributeValueMemberL:
		l := make([]any, len(x.Value))
		for i, e := range x.Value {
			v, err := avToValue(e)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		return l, nil
	case *types.AttributeValueMemberM:
		m := make(map[string]any, len(x.Value))
		for k, e := range x.Value {
			v, err := avToValue(e)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("unsupported DynamoDB value %T", av)
}
