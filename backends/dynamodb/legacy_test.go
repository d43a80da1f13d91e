package dynamodb

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wp-tools/wp/backends"
)

// TestLegacy_NumberingRecorded: a Node job (parts 1..3) read by wp while
// part 3 is pending keeps its numbering after the Node library completes
// part 3, which leaves a set ({1, 2}) that no longer tells.
func TestLegacy_NumberingRecorded(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	putLegacy(t, st, "nj", seq(1, 3), 3, nil)
	if s, err := st.Peek(ctx, "nj"); err != nil || s.FirstPart != 1 || s.EitherNumbering {
		t.Fatalf("Peek = %+v, %v; want FirstPart 1", s, err)
	}
	if got, ok := getNum(rawItem(t, st, "nj"), attrFirstPart); !ok || got != 1 {
		t.Errorf("wpFirstPart after Peek = %d, %v; want 1 recorded", got, ok)
	}
	nodeComplete(t, st, "nj", 3)
	s, err := st.Status(ctx, "nj")
	if err != nil || s.FirstPart != 1 || s.Remaining != 2 {
		t.Errorf("Status after the Node library completed part 3 = %+v, %v; want FirstPart 1, 2 remaining", s, err)
	}
	if _, err := st.Complete(ctx, "nj", 0); !errors.Is(err, backends.ErrPartRange) {
		t.Errorf("Complete(0) of a recorded 1-based job: err = %v, want ErrPartRange", err)
	}
	c, err := st.Complete(ctx, "nj", 3)
	if err != nil || !c.Duplicate || c.Done {
		t.Errorf("Complete(3) after the Node library completed it = %+v, %v; want a duplicate", c, err)
	}

	// A Python job whose numbering wp learns from Complete's write (the
	// set as it was held 0).
	putLegacy(t, st, "pj", seq(0, 2), 3, nil)
	if _, err := st.Complete(ctx, "pj", 1); err != nil {
		t.Fatal(err)
	}
	if got, ok := getNum(rawItem(t, st, "pj"), attrFirstPart); !ok || got != 0 {
		t.Errorf("wpFirstPart after completing part 1 of {0,1,2} = %d, %v; want 0 recorded", got, ok)
	}
}

// TestLegacy_NumberingUnknown: every end of a legacy job was completed
// before wp first saw it. Every id from 0 to N is taken, and none that is
// not pending is recorded twice.
func TestLegacy_NumberingUnknown(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	putLegacy(t, st, "x", []int64{1, 2}, 3, nil) // 1..3 with 3 done, or 0..2 with 0 done
	s, err := st.Status(ctx, "x")
	if err != nil || s.FirstPart != 0 || !s.EitherNumbering || s.Remaining != 2 || !s.HasPart(0) || !s.HasPart(3) || s.HasPart(4) {
		t.Fatalf("Status = %+v, %v; want EitherNumbering (ids 0 to 3), 2 remaining", s, err)
	}
	if _, ok := rawItem(t, st, "x")[attrFirstPart]; ok {
		t.Error("a numbering was recorded though nothing tells it")
	}
	for _, p := range []int64{0, 3} {
		c, err := st.Complete(ctx, "x", p)
		if err != nil || !c.Duplicate || c.Done {
			t.Errorf("Complete(%d) = %+v, %v; want a duplicate (not pending under either numbering)", p, c, err)
		}
	}
	for _, p := range []int64{-1, 4} {
		if _, err := st.Complete(ctx, "x", p); !errors.Is(err, backends.ErrPartRange) {
			t.Errorf("Complete(%d): err = %v, want ErrPartRange", p, err)
		}
	}
	if c, err := st.Complete(ctx, "x", 1); err != nil || c.Duplicate || c.Done {
		t.Errorf("Complete(1) = %+v, %v; want recorded, not done", c, err)
	}
	c, err := st.Complete(ctx, "x", 2)
	if err != nil || !c.Finisher || !c.Done {
		t.Errorf("Complete(2) = %+v, %v; want the finisher", c, err)
	}
	for _, p := range []int64{0, 3} {
		c, err := st.Complete(ctx, "x", p)
		if err != nil || !c.Duplicate || !c.Done || c.ReduceSent {
			t.Errorf("Complete(%d) of the done job = %+v, %v; want Duplicate, Done, reduce not sent", p, c, err)
		}
	}
}

// nodeComplete completes a part the way the Node library does: DELETE
// with no condition.
func nodeComplete(t *testing.T, st *Store, id string, part int64) {
	t.Helper()
	if _, err := st.db.UpdateItem(testCtx(t), &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("DELETE #parts :p"),
		ExpressionAttributeNames:  names(attrParts),
		ExpressionAttributeValues: item{":p": numSet(part)},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLegacy_MarkReduceSent: the reduce is recorded the way the job's
// library reads it, and the user's metadata is kept.
func TestLegacy_MarkReduceSent(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	userMeta := &types.AttributeValueMemberM{Value: item{"name": str("tiles")}}
	putLegacy(t, st, "py-meta", nil, 2, item{attrMetadata: userMeta, attrFirstPart: num(0)})
	putLegacy(t, st, "py-none", nil, 2, item{attrFirstPart: num(0)})
	putLegacy(t, st, "py-str", nil, 2, item{attrMetadata: str("not a map")})
	putLegacy(t, st, "node", nil, 2, item{attrMetadata: userMeta, attrFirstPart: num(1)})
	putLegacy(t, st, "unknown", nil, 2, nil)
	for _, id := range []string{"py-meta", "py-none", "py-str", "node", "unknown"} {
		if _, ok, err := st.ClaimReduce(ctx, id, time.Minute); !ok || err != nil {
			t.Fatalf("ClaimReduce(%s) = %v, %v", id, ok, err)
		}
		if err := st.MarkReduceSent(ctx, id); err != nil {
			t.Fatalf("MarkReduceSent(%s): %v", id, err)
		}
		it := rawItem(t, st, id)
		if !getBool(it, attrReduceSent) {
			t.Errorf("%s: reduceSent not set (the Node library reads it)", id)
		}
		if _, ok := it[attrClaimToken]; ok {
			t.Errorf("%s: claim not cleared", id)
		}
		if s, err := st.Status(ctx, id); err != nil || !s.ReduceSent {
			t.Errorf("%s: Status = %+v, %v; want ReduceSent", id, s, err)
		}
		if _, ok, _ := st.ClaimReduce(ctx, id, time.Minute); ok {
			t.Errorf("%s: ClaimReduce after MarkReduceSent succeeded", id)
		}
	}
	meta := func(id string) string {
		b, err := avToJSON(rawItem(t, st, id)[attrMetadata])
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for id, want := range map[string]string{
		"py-meta": `{"name":"tiles","reduce_message_sent":true}`,
		"py-none": `{"reduce_message_sent":true}`,
		"py-str":  `"not a map"`,
		"node":    `{"name":"tiles"}`,
		"unknown": `{"reduce_message_sent":true}`,
	} {
		if got := meta(id); got != want {
			t.Errorf("%s: metadata = %s, want %s", id, got, want)
		}
	}
}

// TestWPJob_LegacyFlagsIgnored: an old worker that took a wp job for its
// own may have set the Node or Python reduce flag; wp still sends the
// reduce once every part is done.
func TestWPJob_LegacyFlagsIgnored(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "j", Total: 2, Metadata: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	setRaw(t, st, "j", "SET #reduceSent = :t, #metadata.#rms = :t", item{":t": boolean(true)})
	for p := int64(0); p < 2; p++ {
		if _, err := st.Complete(ctx, "j", p); err != nil {
			t.Fatal(err)
		}
	}
	s, err := st.Status(ctx, "j")
	if err != nil || s.ReduceSent || s.Remaining != 0 {
		t.Fatalf("Status = %+v, %v; want done, reduce not sent", s, err)
	}
	if _, ok, err := st.ClaimReduce(ctx, "j", time.Minute); !ok || err != nil {
		t.Fatalf("ClaimReduce = %v, %v; want a claim (the legacy flags prove nothing on a wp job)", ok, err)
	}
	if err := st.MarkReduceSent(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	if !getBool(rawItem(t, st, "j"), attrWPReduceSent) {
		t.Error("wpReduceSent not set")
	}
	if _, ok, _ := st.ClaimReduce(ctx, "j", time.Minute); ok {
		t.Error("ClaimReduce after MarkReduceSent succeeded")
	}
}

// TestLayout1 reads and completes a job written by the previous layout
// (wp 1: no parts guard, wp's reduce flag in reduceSent), on the table wp 1
// worked on: watchbot's, without the wp-jobs index (UpgradeTable guards the
// layout 1 jobs of a table it gives the index: TestUpgradeTable).
func TestLayout1(t *testing.T) {
	st, _ := newWatchbotTable(t)
	ctx := testCtx(t)
	for _, id := range []string{"v1", "v1-sent"} {
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 300}); err != nil {
			t.Fatal(err)
		}
		setRaw(t, st, id, "SET #wp = :one REMOVE #parts", item{":one": num(1)})
	}
	setRaw(t, st, "v1-sent", "SET #reduceSent = :t", item{":t": boolean(true)})
	// The first read by wp adds the guard that makes old workers fail.
	if _, err := st.Peek(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got, ok := rawItem(t, st, "v1")[attrParts].(*types.AttributeValueMemberBOOL); !ok || !got.Value {
		t.Errorf("layout 1 job's parts after Peek = %#v, want the guard", rawItem(t, st, "v1")[attrParts])
	}
	if v, _ := getNum(rawItem(t, st, "v1"), attrWP); v != 1 {
		t.Errorf("layout 1 job's wp after Peek = %d, want still 1", v)
	}
	// So do Status (wp info) and List (wp ls).
	if err := st.CreateJob(ctx, backends.Job{ID: "v1-listed", Total: 1}); err != nil {
		t.Fatal(err)
	}
	setRaw(t, st, "v1-listed", "SET #wp = :one REMOVE #parts", item{":one": num(1)})
	if _, err := st.Status(ctx, "v1-sent"); err != nil {
		t.Fatal(err)
	}
	if err := st.List(ctx, backends.ListOptions{}, func(backends.Status) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"v1-sent", "v1-listed"} {
		if _, ok := rawItem(t, st, id)[attrParts].(*types.AttributeValueMemberBOOL); !ok {
			t.Errorf("%s: no guard after Status and List", id)
		}
	}
	for _, id := range []string{"v1", "v1-sent"} {
		fin, err := completeAll(ctx, st, id, 300, 4)
		if err != nil || fin != 1 {
			t.Fatalf("%s: completeAll = %d finishers, %v; want 1", id, fin, err)
		}
	}
	if s, err := st.Status(ctx, "v1-sent"); err != nil || !s.ReduceSent {
		t.Errorf("layout 1 job with reduceSent: Status = %+v, %v; want ReduceSent (layout 1 recorded wp's reduce there)", s, err)
	}
	if _, ok, err := st.ClaimReduce(ctx, "v1-sent", time.Minute); ok || err != nil {
		t.Errorf("ClaimReduce of a layout 1 job whose reduce wp recorded = %v, %v; want false", ok, err)
	}
	// The Python flag proves nothing on a wp job of any layout.
	setRaw(t, st, "v1", "SET #metadata = :m", item{":m": &types.AttributeValueMemberM{Value: item{pyReduceSentKey: boolean(true)}}})
	if _, ok, err := st.ClaimReduce(ctx, "v1", time.Minute); !ok || err != nil {
		t.Fatalf("ClaimReduce of a done layout 1 job = %v, %v; want a claim", ok, err)
	}
	if err := st.MarkReduceSent(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if s, err := st.Status(ctx, "v1"); err != nil || !s.ReduceSent {
		t.Errorf("Status after MarkReduceSent = %+v, %v", s, err)
	}
}

// setRaw runs an unconditional UpdateItem on the job item, as another tool
// would.
func setRaw(t *testing.T, st *Store, id, update string, vals item) {
	t.Helper()
	nm := map[string]string{}
	for _, n := range []string{attrReduceSent, attrMetadata, attrWP, attrParts, attrCreated, attrList, attrListed, attrExpires} {
		if contains(update, "#"+n) {
			nm["#"+n] = n
		}
	}
	if contains(update, "#rms") {
		nm["#rms"] = pyReduceSentKey
	}
	in := &ddb.UpdateItemInput{TableName: aws.String(st.table), Key: key(id), UpdateExpression: aws.String(update), ExpressionAttributeNames: nm}
	if len(vals) > 0 {
		in.ExpressionAttributeValues = vals
	}
	if _, err := st.db.UpdateItem(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub && (i+len(sub) == len(s) || !isNameChar(s[i+len(sub)])) {
			return true
		}
	}
	return false
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
