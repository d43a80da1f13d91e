package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// BenchmarkComplete32 measures part completions per second with 32
// goroutines (32 workers of one job) against the loopback redis-server.
//
//	go test ./backends/redis -run XXX -bench Complete -benchtime 200000x -count 5
func BenchmarkComplete32(b *testing.B) {
	const workers = 32
	st := openShared(b)
	ctx := context.Background()
	if err := st.CreateJob(ctx, backends.Job{ID: "bench", Total: int64(b.N)}); err != nil {
		b.Fatal(err)
	}
	var next, finishers atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	b.ResetTimer()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := next.Add(1) - 1
				if p >= int64(b.N) {
					return
				}
				c, err := st.Complete(ctx, "bench", p)
				if err != nil {
					errs <- err
					return
				}
				if c.Finisher {
					finishers.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if got := finishers.Load(); got != 1 {
		b.Fatalf("%d finishers, want 1", got)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "completions/s")
}
