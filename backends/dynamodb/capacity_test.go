package dynamodb

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// TestConsumedCapacity_GiveUp: a give-up costs a few write units; the
// completions of a job that has given-up parts still cost about one.
func TestConsumedCapacity_GiveUp(t *testing.T) {
	base, _ := newTable(t)
	st, meter := measured(t, base)
	ctx := testCtx(t)
	const total = 1000
	const id = "wcu-gu"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Metadata: []byte(`{"name":"some metadata"}`), Tolerance: backends.Tolerance{Parts: 100}}); err != nil {
		t.Fatal(err)
	}
	meter.reset()
	const n = 50
	for p := int64(0); p < n; p++ {
		if _, err := st.GiveUp(ctx, id, p*20, backends.GiveUpInfo{ExitCode: 1, Stderr: string(make([]byte, 400))}); err != nil {
			t.Fatal(err)
		}
	}
	wcu, _ := meter.get()
	t.Logf("give-up: %.2f WCU each", wcu/n)
	if per := wcu / n; per > 6 {
		t.Errorf("a give-up costs %.2f WCU, want a few", per)
	}
	meter.reset()
	done := 0
	for p := int64(0); p < total; p++ {
		if p%20 == 0 {
			continue
		}
		if _, err := st.Complete(ctx, id, p); err != nil {
			t.Fatal(err)
		}
		done++
	}
	wcu, _ = meter.get()
	t.Logf("%d completions of a job with %d given-up parts: %.4f WCU each", done, n, wcu/float64(done))
	if per := wcu / float64(done); per > 1.2 {
		t.Errorf("a completion costs %.3f WCU with given-up parts in the job, want about 1", per)
	}
}

// TestConsumedCapacity_MillionParts measures the write units per completion
// of a 1,000,000-part job with given-up parts, completing 20,000 parts from
// its middle as the bench harness's capped runs do. It takes a minute or
// two on dynalite, so it runs only with WP_DYNAMODB_MILLION=1.
func TestConsumedCapacity_MillionParts(t *testing.T) {
	if os.Getenv("WP_DYNAMODB_MILLION") == "" {
		t.Skip("set WP_DYNAMODB_MILLION=1 to run")
	}
	base, _ := newTable(t)
	st, meter := measured(t, base)
	ctx := testCtx(t)
	const total, n = 1_000_000, 20_000
	const id = "wcu-million"
	if err := st.CreateJob(ctx, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 100}}); err != nil {
		t.Fatal(err)
	}
	const from = total/2 - n/2
	for p := int64(from - 100); p < from; p += 10 {
		if _, err := st.GiveUp(ctx, id, p, backends.GiveUpInfo{ExitCode: 1}); err != nil {
			t.Fatal(err)
		}
	}
	meter.reset()
	var next atomic.Int64
	next.Store(from)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	start := time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := next.Add(1) - 1
				if p >= from+n {
					return
				}
				if _, err := st.Complete(ctx, id, p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wcu, _ := meter.get()
	t.Logf("1,000,000 parts (10 given up): %d completions in %v, %.4f WCU each", n, time.Since(start).Round(time.Millisecond), wcu/n)
	if per := wcu / n; per > 1.2 {
		t.Errorf("%.3f WCU per completion at 1,000,000 parts, want about 1", per)
	}
}
