package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
	"github.com/wp-tools/wp/internal/testservers"
)

// One dynalite for the whole package; every test gets its own table.
var (
	dynalite    *testservers.Server
	dynaliteErr error
	tableSeq    atomic.Int64
)

func TestMain(m *testing.M) {
	dynalite, dynaliteErr = testservers.StartDynalite()
	if dynaliteErr == nil {
		// The SDK's standard chain picks these up: Open needs no test
		// hooks.
		os.Setenv("AWS_REGION", "us-east-1")
		os.Setenv("AWS_ACCESS_KEY_ID", "fake")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
		os.Setenv("AWS_ENDPOINT_URL_DYNAMODB", dynalite.URL)
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		os.Unsetenv("AWS_PROFILE")
	}
	code := m.Run()
	if d := dynalite.Died(); d != "" {
		fmt.Fprintln(os.Stderr, d)
		code = 1
	}
	dynalite.Stop()
	testservers.CleanupWP()
	os.Exit(code)
}

func needDynalite(t testing.TB) {
	t.Helper()
	if dynaliteErr != nil {
		t.Fatalf("start dynalite: %v", dynaliteErr)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newTable creates a fresh table and returns a store opened through the
// registry, as wp opens it.
func newTable(t testing.TB) (*Store, string) {
	t.Helper()
	needDynalite(t)
	ctx := testCtx(t)
	name := fmt.Sprintf("wp-test-%d-%d", os.Getpid(), tableSeq.Add(1))
	cfg, err := LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateTable(ctx, cfg, name); err != nil {
		if d := dynalite.Died(); d != "" {
			t.Fatal(d)
		}
		t.Fatal(err)
	}
	st, err := backends.Open(ctx, "dynamodb://"+name, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		ddb.NewFromConfig(cfg).DeleteTable(context.Background(), &ddb.DeleteTableInput{TableName: aws.String(name)})
	})
	return st.Driver().(*Store), name
}

// newWatchbotTable creates a table as watchbot's reduce mode does (hash key
// id only, provisioned at 30 read and 30 write units, no index, no time to
// live), the table the libraries and older wp versions worked on, and
// returns a store on it.
func newWatchbotTable(t testing.TB) (*Store, string) {
	t.Helper()
	needDynalite(t)
	ctx := testCtx(t)
	name := fmt.Sprintf("wp-watchbot-%d-%d", os.Getpid(), tableSeq.Add(1))
	cfg, err := LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := ddb.NewFromConfig(cfg)
	if _, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:             aws.String(name),
		AttributeDefinitions:  []types.AttributeDefinition{{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(30), WriteCapacityUnits: aws.Int64(30)},
	}); err != nil {
		t.Fatal(err)
	}
	w := ddb.NewTableExistsWaiter(db, func(o *ddb.TableExistsWaiterOptions) { o.MinDelay = 20 * time.Millisecond })
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := backends.Open(ctx, "dynamodb://"+name, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		db.DeleteTable(context.Background(), &ddb.DeleteTableInput{TableName: aws.String(name)})
	})
	return st.Driver().(*Store), name
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store {
		st, _ := newTable(t)
		return backends.New(st, time.Minute)
	})
}

func TestCreateTable_Exists(t *testing.T) {
	_, name := newTable(t)
	ctx := testCtx(t)
	cfg, err := LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = CreateTable(ctx, cfg, name)
	if err == nil {
		t.Fatal("CreateTable of an existing table succeeded, want an error")
	}
	t.Logf("error: %v", err)
}

func TestTableFromARN(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "arn:aws:dynamodb:us-east-1:123456789012:table/my-stack-ProgressTable-1ABC", want: "my-stack-ProgressTable-1ABC"},
		{in: "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/t.1_x", want: "t.1_x"},
		{in: "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2020-01-01T00:00:00.000", want: "t"},
		{in: "progress", want: "progress"},
		{in: "  progress\n", want: "progress"},
		{in: "", bad: true},
		{in: "arn:aws:s3:::bucket/key", bad: true},
		{in: "arn:aws:dynamodb:us-east-1:123456789012:table/", bad: true},
		{in: "arn:aws:dynamodb:us-east-1:123456789012", bad: true},
		{in: "some/path", bad: true},
	}
	for _, tc := range tests {
		got, err := TableFromARN(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("TableFromARN(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("TableFromARN(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestOpen_URL(t *testing.T) {
	needDynalite(t)
	ctx := testCtx(t)
	for _, bad := range []string{"dynamodb://", "dynamodb://t/extra", "dynamodb://user@t"} {
		if st, err := backends.Open(ctx, bad, 0); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded, want an error", bad)
		}
	}
	st, err := backends.Open(ctx, "dynamodb://no-such-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Status(ctx, "x")
	if err == nil || errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Status on a missing table: err = %v, want a table error", err)
	}
	t.Logf("missing table: %v", err)
}

// TestUnreachable checks that a dead endpoint fails a call in bounded time
// rather than hanging (no timing assertion: the test would hang otherwise).
func TestUnreachable(t *testing.T) {
	port, err := testservers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", fmt.Sprintf("http://127.0.0.1:%d", port))
	st, err := backends.Open(testCtx(t), "dynamodb://t", 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = st.Status(testCtx(t), "job")
	if err == nil {
		t.Fatal("Status against a closed port succeeded")
	}
	t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// putLegacy writes a job item exactly as the predecessors do: parts NS,
// total N, metadata M.
func putLegacy(t *testing.T, st *Store, id string, parts []int64, total int64, extra item) {
	t.Helper()
	it := item{attrID: str(id), attrTotal: num(total)}
	if len(parts) > 0 { // as the libraries leave it: no parts once every part is done
		it[attrParts] = numSet(parts...)
	}
	for k, v := range extra {
		it[k] = v
	}
	if _, err := st.db.PutItem(testCtx(t), &ddb.PutItemInput{TableName: aws.String(st.table), Item: it}); err != nil {
		t.Fatal(err)
	}
}

func rawItem(t *testing.T, st *Store, id string) item {
	t.Helper()
	it, err := st.getItem(testCtx(t), id, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func pendingOf(t *testing.T, st *Store, id string) []int64 {
	t.Helper()
	got := []int64{}
	if err := st.Pending(testCtx(t), id, func(p int64) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestLegacy(t *testing.T) {
	tests := []struct {
		name  string
		first int64 // 1: the Node library, 0: watchbot-progress-py
	}{
		{"node", 1},
		{"python", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newTable(t)
			ctx := testCtx(t)
			const total = 300
			id := "legacy-" + tc.name
			meta := &types.AttributeValueMemberM{Value: item{"name": str("tiles"), "zoom": num(12)}}
			putLegacy(t, st, id, seq(tc.first, tc.first+total-1), total, item{attrMetadata: meta})

			s, err := st.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Total != total || s.Remaining != total || s.FirstPart != tc.first || s.Failed || s.ReduceSent || !s.CreatedAt.IsZero() {
				t.Errorf("Status = %+v, want total=remaining=%d FirstPart=%d", s, total, tc.first)
			}
			if got, want := string(s.Metadata), `{"name":"tiles","zoom":12}`; got != want {
				t.Errorf("Metadata = %s, want %s", got, want)
			}
			if got, want := pendingOf(t, st, id), seq(tc.first, tc.first+total-1); !reflect.DeepEqual(got, want) {
				t.Errorf("Pending = %v..., want %d ids from %d", got[:3], total, tc.first)
			}
			// Out of range for this base.
			bad := tc.first - 1
			if tc.first == 0 {
				bad = total
			}
			if _, err := st.Complete(ctx, id, bad); !errors.Is(err, backends.ErrPartRange) {
				t.Errorf("Complete(%d): err = %v, want ErrPartRange", bad, err)
			}
			// List shows it among wp jobs.
			if err := st.CreateJob(ctx, backends.Job{ID: "wp-job", Total: 3}); err != nil {
				t.Fatal(err)
			}
			found := map[string]backends.Status{}
			if err := st.List(ctx, backends.ListOptions{}, func(s backends.Status) error { found[s.ID] = s; return nil }); err != nil {
				t.Fatal(err)
			}
			if len(found) != 2 || found[id].Remaining != total || found[id].FirstPart != tc.first || found["wp-job"].Remaining != 3 {
				t.Errorf("List = %+v, want the legacy job and wp-job", found)
			}

			// Complete every part from 32 goroutines, each part twice.
			var finishers, dups atomic.Int64
			work := make(chan int64, 2*total)
			for p := tc.first; p < tc.first+total; p++ {
				work <- p
				work <- p
			}
			close(work)
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for w := 0; w < 32; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for p := range work {
						c, err := st.Complete(ctx, id, p)
						if err != nil {
							errs <- err
							return
						}
						if c.Finisher {
							finishers.Add(1)
						}
						if c.Duplicate {
							dups.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if finishers.Load() != 1 || dups.Load() != total {
				t.Errorf("finishers = %d, duplicates = %d; want 1 and %d", finishers.Load(), dups.Load(), total)
			}
			it := rawItem(t, st, id)
			if _, ok := it[attrParts]; ok {
				t.Errorf("parts still on the item after all completions: %v", it[attrParts])
			}
			if _, ok := it[attrWP]; ok {
				t.Error("Complete added the wp marker to a legacy item")
			}
			s, err = st.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Remaining != 0 || s.State() != backends.StateComplete || s.FirstPart != tc.first {
				t.Errorf("after all completions Status = %+v, want complete with FirstPart %d (recorded by Complete)", s, tc.first)
			}
			c, err := st.Complete(ctx, id, tc.first)
			if err != nil || !c.Duplicate || !c.Done || c.Finisher {
				t.Errorf("duplicate after done = %+v, %v", c, err)
			}

			tok, ok, err := st.ClaimReduce(ctx, id, time.Minute)
			if err != nil || !ok {
				t.Fatalf("ClaimReduce = %q, %v, %v", tok, ok, err)
			}
			if err := st.MarkReduceSent(ctx, id); err != nil {
				t.Fatal(err)
			}
			if !getBool(rawItem(t, st, id), attrReduceSent) {
				t.Error("MarkReduceSent did not set reduceSent BOOL true, which the Node library reads")
			}
			if _, ok, _ := st.ClaimReduce(ctx, id, time.Minute); ok {
				t.Error("ClaimReduce succeeded after MarkReduceSent")
			}
			if err := st.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			if rawItem(t, st, id) != nil {
				t.Error("legacy item still there after Delete")
			}
		})
	}
}

func TestLegacy_FailedAndPythonReduceFlag(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	// The Python library fails a job with the part id as the reason.
	putLegacy(t, st, "py-failed", seq(0, 4), 5, item{attrError: num(3)})
	if _, err := st.Complete(ctx, "py-failed", 1); !errors.Is(err, backends.ErrJobFailed) {
		t.Errorf("Complete of a failed legacy job: err = %v, want ErrJobFailed", err)
	}
	s, err := st.Status(ctx, "py-failed")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Failed || s.Error != "3" || s.Remaining != 5 {
		t.Errorf("Status = %+v, want failed with reason 3 and 5 remaining", s)
	}
	// A finished job whose reduce the Python library sent: metadata was
	// replaced by {"reduce_message_sent": true} and parts are gone.
	it := item{attrID: str("py-sent"), attrTotal: num(2),
		attrMetadata: &types.AttributeValueMemberM{Value: item{pyReduceSentKey: boolean(true)}}}
	if _, err := st.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(st.table), Item: it}); err != nil {
		t.Fatal(err)
	}
	s, err = st.Status(ctx, "py-sent")
	if err != nil {
		t.Fatal(err)
	}
	if !s.ReduceSent || s.Remaining != 0 {
		t.Errorf("Status = %+v, want ReduceSent and none remaining", s)
	}
	if _, ok, err := st.ClaimReduce(ctx, "py-sent", time.Minute); ok || err != nil {
		t.Errorf("ClaimReduce of a job the Python library reduced = %v, %v; want false, nil", ok, err)
	}
}

// TestRepair simulates a finisher that died after emptying its shard and
// before telling the group: a later completion of a part of that shard,
// once the shard has been empty for repairAfter, finishes the job (Done,
// not Finisher), and the reduce can then be claimed.
func TestRepair(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "job", Total: 300}); err != nil {
		t.Fatal(err)
	}
	for p := int64(0); p < 299; p++ {
		if _, err := st.Complete(ctx, "job", p); err != nil {
			t.Fatal(err)
		}
	}
	// The dying finisher: only the shard write happens.
	if _, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key(shardKey("job", 1)),
		UpdateExpression:          aws.String("DELETE #parts :p SET #t = :now"),
		ExpressionAttributeNames:  names(attrParts, attrT),
		ExpressionAttributeValues: item{":p": numSet(299 - 256), ":now": num(st.nowMS())},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := st.Complete(ctx, "job", 299)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Duplicate || c.Done || c.Finisher {
		t.Errorf("redelivery right after the crash = %+v, want Duplicate, not Done (the finisher may still be at work)", c)
	}
	// Time passes.
	st.now = func() time.Time { return time.Now().Add(st.repairAfter + time.Second) }
	c, err = st.Complete(ctx, "job", 299)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Duplicate || !c.Done || c.Finisher {
		t.Errorf("redelivery after repairAfter = %+v, want Duplicate Done, not Finisher", c)
	}
	if _, ok, err := st.ClaimReduce(ctx, "job", time.Minute); !ok || err != nil {
		t.Errorf("ClaimReduce after repair = %v, %v; want a claim", ok, err)
	}
}

// TestCreate_Interrupted: a CreateJob that stops part way leaves nothing
// visible; a retry takes over (at once when the first gave its lease up,
// after the lease when it died) and cleans the larger leftovers.
func TestCreate_Interrupted(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	// A dead writer of a 100,000-part attempt: creating item with a lease
	// that has run out, and a few of its shard items.
	dead := item{
		attrID: str("job"), attrWP: num(1), attrTotal: num(100000), attrShardSize: num(shardSize), attrGroupSize: num(groupSize),
		attrShards: num(391), attrExtent: num(391), attrGroups: numSet(0, 1),
		attrCreating: str("dead-token"), attrLease: num(st.nowMS() + 60_000),
	}
	if _, err := st.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(st.table), Item: dead}); err != nil {
		t.Fatal(err)
	}
	if err := st.batchWrite(ctx, []types.WriteRequest{
		{PutRequest: &types.PutRequest{Item: item{attrID: str(shardKey("job", 390)), attrParts: numSet(1, 2)}}},
		{PutRequest: &types.PutRequest{Item: item{attrID: str(groupKey("job", 1)), attrLeft: numSet(0)}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Status(ctx, "job"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Status of a half-written job: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Complete(ctx, "job", 0); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Complete of a half-written job: err = %v, want ErrNotFound", err)
	}
	n := 0
	st.List(ctx, backends.ListOptions{}, func(backends.Status) error { n++; return nil })
	if n != 0 {
		t.Errorf("List shows %d jobs, want none (the job is half written)", n)
	}
	// Lease live: refused.
	if err := st.CreateJob(ctx, backends.Job{ID: "job", Total: 10}); !errors.Is(err, backends.ErrExists) {
		t.Fatalf("CreateJob while another writer's lease is live: err = %v, want ErrExists", err)
	}
	// Lease run out: taken over.
	st.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if err := st.CreateJob(ctx, backends.Job{ID: "job", Total: 10}); err != nil {
		t.Fatalf("CreateJob after the dead writer's lease ran out: %v", err)
	}
	st.now = time.Now
	s, err := st.Status(ctx, "job")
	if err != nil || s.Total != 10 || s.Remaining != 10 {
		t.Errorf("Status = %+v, %v; want 10 parts", s, err)
	}
	for _, k := range []string{shardKey("job", 390), groupKey("job", 1)} {
		if rawItem(t, st, k) != nil {
			t.Errorf("leftover %s of the abandoned attempt still there", k)
		}
	}

	// An interrupted CreateJob gives its lease up: the retry succeeds at
	// once.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Cancel once the job item exists, while shards are being written.
		for cctx.Err() == nil {
			if it, err := st.getItem(ctx, "job2", "", nil); err == nil && it != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err = st.CreateJob(cctx, backends.Job{ID: "job2", Total: 200_000})
	if err == nil {
		t.Log("the CreateJob finished before the cancel landed; the second one must then say ErrExists")
	}
	err2 := st.CreateJob(ctx, backends.Job{ID: "job2", Total: 5})
	if err != nil && errors.Is(err2, backends.ErrExists) {
		// The cancel may land while the last write, the one that makes the
		// job visible, is in flight: it is applied but its answer is lost.
		// The job is then whole, and ErrExists is the right answer.
		if s, serr := st.Status(ctx, "job2"); serr == nil && s.Total == 200_000 && s.Remaining == 200_000 {
			t.Log("the cancel lost only the answer of the final write; the job is whole")
			err = nil
		}
	}
	switch {
	case err != nil && err2 != nil:
		t.Fatalf("retry after an interrupted CreateJob: %v (first attempt: %v)", err2, err)
	case err == nil && !errors.Is(err2, backends.ErrExists):
		t.Fatalf("second CreateJob of a created job: %v, want ErrExists", err2)
	}
	if err != nil {
		if s, err := st.Status(ctx, "job2"); err != nil || s.Total != 5 || s.Remaining != 5 {
			t.Errorf("after the retry Status = %+v, %v; want 5 parts", s, err)
		}
		if got := pendingOf(t, st, "job2"); !reflect.DeepEqual(got, seq(0, 4)) {
			t.Errorf("Pending = %v, want 0..4", got)
		}
		if err := st.Delete(ctx, "job2"); err != nil {
			t.Fatal(err)
		}
		// Delete removed the first attempt's leftovers too (extent).
		if it := rawItem(t, st, shardKey("job2", 0)); it != nil {
			t.Errorf("shard 0 still there after Delete")
		}
	}
}

// TestLayout checks the items of a wp job: sizes under 1 KB, the marker,
// and that the job item holds no part ids.
func TestLayout(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	id := "j-"
	for len(id) < 128 {
		id += "x"
	}
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 70_000}); err != nil {
		t.Fatal(err)
	}
	job := rawItem(t, st, id)
	if _, ok := job[attrWP]; !ok {
		t.Error("job item has no wp marker")
	}
	if got, ok := job[attrParts].(*types.AttributeValueMemberBOOL); !ok || !got.Value {
		t.Errorf("job item's parts = %#v, want the guard BOOL true (a parts set would make the legacy tools take the job for theirs)", job[attrParts])
	}
	if got, want := nsLen(job, attrGroups), int64(2); got != want {
		t.Errorf("groups = %d, want %d", got, want)
	}
	sh := rawItem(t, st, shardKey(id, 5))
	if got := nsLen(sh, attrParts); got != shardSize {
		t.Errorf("shard holds %d parts, want %d", got, shardSize)
	}
	if n := itemSize(sh) + 9; n > 1024 { // + the t attribute a completion adds
		t.Errorf("a full shard item with a 128-character job id is %d bytes, want under 1024", n)
	}
	if n := itemSize(rawItem(t, st, groupKey(id, 0))) + 9; n > 1024 {
		t.Errorf("a full group item is %d bytes, want under 1024", n)
	}
}

// TestConsumedCapacity asks dynalite for the write units each completion
// consumes (ReturnConsumedCapacity TOTAL), at three job sizes.
func TestConsumedCapacity(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	for _, total := range []int64{1000, 100_000} {
		id := fmt.Sprintf("wcu-%d", total)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total}); err != nil {
			t.Fatal(err)
		}
		var sum float64
		const n = 300
		for p := int64(0); p < n; p++ {
			out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
				TableName:                 aws.String(st.table),
				Key:                       key(shardKey(id, p/shardSize)),
				UpdateExpression:          aws.String("DELETE #parts :p SET #t = :now"),
				ConditionExpression:       aws.String("contains(#parts, :pv)"),
				ExpressionAttributeNames:  names(attrParts, attrT),
				ExpressionAttributeValues: item{":p": numSet(p % shardSize), ":pv": num(p % shardSize), ":now": num(st.nowMS())},
				ReturnValues:              types.ReturnValueUpdatedNew,
				ReturnConsumedCapacity:    types.ReturnConsumedCapacityTotal,
			})
			if err != nil {
				t.Fatal(err)
			}
			if out.ConsumedCapacity == nil || out.ConsumedCapacity.CapacityUnits == nil {
				t.Fatal("dynalite did not report consumed capacity")
			}
			sum += *out.ConsumedCapacity.CapacityUnits
		}
		per := sum / n
		t.Logf("%d parts: %.3f WCU per shard write", total, per)
		if per > 1.0 {
			t.Errorf("%d parts: a shard write costs %.3f WCU, want 1", total, per)
		}
	}
	// The legacy layout at 10,000 parts, for comparison.
	putLegacy(t, st, "legacy", seq(1, 10000), 10000, nil)
	out, err := st.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(st.table),
		Key:                       key("legacy"),
		UpdateExpression:          aws.String("DELETE #parts :p"),
		ExpressionAttributeNames:  names(attrParts),
		ExpressionAttributeValues: item{":p": numSet(5)},
		ReturnConsumedCapacity:    types.ReturnConsumedCapacityTotal,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("legacy layout, 10,000 parts: %.0f WCU per completion", *out.ConsumedCapacity.CapacityUnits)
}

// TestFail_ManyShards: Fail marks every pending shard, so completions in any
// shard of a failed job record nothing.
func TestFail_ManyShards(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "job", Total: 1000}); err != nil {
		t.Fatal(err)
	}
	// Empty shard 0 entirely: it must not need a mark.
	for p := int64(0); p < 256; p++ {
		if _, err := st.Complete(ctx, "job", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Fail(ctx, "job", "boom"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int64{0, 300, 600, 999} {
		if _, err := st.Complete(ctx, "job", p); !errors.Is(err, backends.ErrJobFailed) {
			t.Errorf("Complete(%d) of a failed job: err = %v, want ErrJobFailed", p, err)
		}
	}
	s, err := st.Status(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Remaining, int64(1000-256); got != want || !s.Failed {
		t.Errorf("Status = %+v, want failed with %d remaining", s, want)
	}
	if !getBool(rawItem(t, st, "job"), attrFailMarked) {
		t.Error("failMarked not set after Fail")
	}
}

// TestCreate_ClaimAnswerLost: the PutItem that claims the job id lands, but
// its answer is lost (a dropped connection, a cancelled context). CreateJob
// reports the error and gives up the lease it may hold, so a retry succeeds
// at once instead of waiting for the lease to run out.
func TestCreate_ClaimAnswerLost(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	cfg, err := LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Bool
	errLost := errors.New("connection reset after the request was sent")
	lossy := *st
	lossy.db = ddb.NewFromConfig(cfg, func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("loseFirstPutAnswer",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleInitialize(ctx, in)
					if _, ok := in.Parameters.(*ddb.PutItemInput); ok && err == nil && dropped.CompareAndSwap(false, true) {
						return middleware.InitializeOutput{}, md, errLost
					}
					return out, md, err
				}), middleware.After)
		})
	})
	err = lossy.CreateJob(ctx, backends.Job{ID: "lost", Total: 3})
	if !errors.Is(err, errLost) {
		t.Fatalf("CreateJob whose claim answer was lost: err = %v, want the lost-answer error", err)
	}
	if it := rawItem(t, st, "lost"); it == nil {
		t.Fatal("the claim did not land; the test's premise is broken")
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "lost", Total: 4}); err != nil {
		t.Fatalf("retry right after a claim whose answer was lost: %v (want it to take the released lease over)", err)
	}
	if s, err := st.Status(ctx, "lost"); err != nil || s.Total != 4 || s.Remaining != 4 {
		t.Errorf("Status = %+v, %v; want 4 parts pending", s, err)
	}
}
