package dynamodb

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/wp-tools/wp/backends"
)

// capacity adds up the capacity units DynamoDB (here dynalite) reports for
// every request a client makes: it asks for ReturnConsumedCapacity TOTAL on
// each write and read.
type capacity struct {
	mu       sync.Mutex
	wcu, rcu float64
}

func (c *capacity) add(w bool, cc ...types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range cc {
		if x.CapacityUnits == nil {
			continue
		}
		if w {
			c.wcu += *x.CapacityUnits
		} else {
			c.rcu += *x.CapacityUnits
		}
	}
}

func (c *capacity) get() (wcu, rcu float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wcu, c.rcu
}

func (c *capacity) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wcu, c.rcu = 0, 0
}

func (c *capacity) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("wpMeasureCapacity",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			total := types.ReturnConsumedCapacityTotal
			switch p := in.Parameters.(type) {
			case *ddb.UpdateItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.PutItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.GetItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.BatchGetItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.BatchWriteItemInput:
				p.ReturnConsumedCapacity = total
			}
			out, md, err := next.HandleInitialize(ctx, in)
			switch r := out.Result.(type) {
			case *ddb.UpdateItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(true, *r.ConsumedCapacity)
				}
			case *ddb.PutItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(true, *r.ConsumedCapacity)
				}
			case *ddb.GetItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(false, *r.ConsumedCapacity)
				}
			case *ddb.BatchGetItemOutput:
				c.add(false, r.ConsumedCapacity...)
			case *ddb.BatchWriteItemOutput:
				c.add(true, r.ConsumedCapacity...)
			}
			return out, md, err
		}), middleware.After)
}

// measured returns st with a client that meters consumed capacity.
func measured(t testing.TB, st *Store) (*Store, *capacity) {
	t.Helper()
	cfg, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &capacity{}
	m := *st
	m.db = ddb.NewFromConfig(cfg, func(o *ddb.Options) { o.APIOptions = append(o.APIOptions, c.middleware) })
	return &m, c
}

// completeAll completes parts 0..total-1 of id from workers goroutines.
func completeAll(ctx context.Context, st backends.Driver, id string, total int64, workers int) (finishers int64, err error) {
	var next, fin atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := next.Add(1) - 1
				if p >= total {
					return
				}
				c, err := st.Complete(ctx, id, p)
				if err != nil {
					errs <- fmt.Errorf("Complete(%d): %w", p, err)
					return
				}
				if c.Finisher {
					fin.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return fin.Load(), <-errs
}

// TestConsumedCapacity_Complete meters every request Complete makes (the
// job read, the shard write, the group and job writes when a shard or group
// empties) over whole jobs and checks the average write cost per part.
func TestConsumedCapacity_Complete(t *testing.T) {
	base, _ := newTable(t)
	st, meter := measured(t, base)
	ctx := testCtx(t)
	for _, total := range []int64{1000, 5000} {
		id := fmt.Sprintf("wcu-%d", total)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Metadata: []byte(`{"name":"some metadata"}`)}); err != nil {
			t.Fatal(err)
		}
		meter.reset()
		fin, err := completeAll(ctx, st, id, total, 8)
		if err != nil {
			t.Fatal(err)
		}
		if fin != 1 {
			t.Errorf("%d finishers, want 1", fin)
		}
		wcu, rcu := meter.get()
		t.Logf("%d parts: %.4f WCU and %.4f RCU per completion", total, wcu/float64(total), rcu/float64(total))
		if per := wcu / float64(total); per > 1.2 {
			t.Errorf("%d parts: %.3f WCU per completion, want at most 1.2", total, per)
		}
	}
}

// BenchmarkComplete: 32 concurrent completers finish a whole job; reports
// completions per second and write units per completion.
func BenchmarkComplete(b *testing.B) {
	for _, total := range []int64{1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("parts=%d", total), func(b *testing.B) {
			base, _ := newTable(b)
			st, meter := measured(b, base)
			ctx := testCtx(b)
			var elapsed time.Duration
			var wcu float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				id := fmt.Sprintf("bench-%d", i)
				if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total}); err != nil {
					b.Fatal(err)
				}
				meter.reset()
				b.StartTimer()
				start := time.Now()
				fin, err := completeAll(ctx, st, id, total, 32)
				elapsed += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if fin != 1 {
					b.Fatalf("%d finishers, want 1", fin)
				}
				w, _ := meter.get()
				wcu += w
			}
			n := float64(total) * float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "completions/s")
			b.ReportMetric(wcu/n, "WCU/completion")
		})
	}
}

// BenchmarkCreateJob: creating a 100,000-part job (391 shard items, 2 group
// items, 16 BatchWriteItem calls in flight).
func BenchmarkCreateJob(b *testing.B) {
	st, _ := newTable(b)
	ctx := testCtx(b)
	const total = 100_000
	for i := 0; i < b.N; i++ {
		if err := st.CreateJob(ctx, backends.Job{ID: fmt.Sprintf("create-%d", i), Total: total}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "parts/s")
}
