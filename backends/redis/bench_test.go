package redis

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
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

// BenchmarkCompleteParts32 measures parts completed per second when 32
// goroutines complete batches of 16 consecutive parts (one map message
// each), each batch one CompleteParts.
//
//	go test ./backends/redis -run XXX -bench CompleteParts32 -benchtime 200000x -count 5
func BenchmarkCompleteParts32(b *testing.B) {
	const workers, batch = 32, 16
	st := openShared(b)
	ctx := context.Background()
	total := int64(b.N)
	if err := st.CreateJob(ctx, backends.Job{ID: "bench-parts", Total: total}); err != nil {
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
			parts := make([]int64, 0, batch)
			for {
				from := next.Add(batch) - batch
				if from >= total {
					return
				}
				parts = parts[:0]
				for p := from; p < min(from+batch, total); p++ {
					parts = append(parts, p)
				}
				c, err := st.CompleteParts(ctx, "bench-parts", parts)
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "parts/s")
}

// BenchmarkOpen measures what a wp run process pays for its store before
// and for its first read: Open (connect, then INFO replication and INFO
// cluster in one pipeline; on a cluster also the slot map), one Peek, and
// Close. PingOnly is the Open of before cluster detection (connect and
// PING), for comparison.
//
//	go test ./backends/redis -run XXX -bench Open -count 5
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	peek := func(b *testing.B, st *backends.Store) {
		if _, err := st.Peek(ctx, "no-such-job"); !errors.Is(err, backends.ErrNotFound) {
			b.Fatalf("Peek: %v, want ErrNotFound", err)
		}
		st.Close()
	}
	b.Run("Standalone", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			st, err := backends.Open(ctx, shared.URL, 0)
			if err != nil {
				b.Fatal(err)
			}
			peek(b, st)
		}
	})
	b.Run("StandalonePingOnly", func(b *testing.B) {
		u, _ := backends.ParseURL(shared.URL)
		o, err := parseOptions(u)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			c := goredis.NewClient(o.node)
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			d := &Store{c: c}
			d.batch = newBatcher(d)
			peek(b, backends.New(d, 0))
		}
	})
	b.Run("Cluster3", func(b *testing.B) {
		u := sharedCluster(b).URL
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			st, err := backends.Open(ctx, u, 0)
			if err != nil {
				b.Fatal(err)
			}
			peek(b, st)
		}
	})
}

// BenchmarkWaitLatency measures one Complete at a time (the latency a lone
// wp run pays) on a primary with one replica, without and with a
// replication wait (?min_replicas=1), and on a 3-master cluster.
//
//	go test ./backends/redis -run XXX -bench WaitLatency -benchtime 5000x -count 5
func BenchmarkWaitLatency(b *testing.B) {
	ctx := context.Background()
	primary := testservers.StartRedisT(b)
	host, port, _ := strings.Cut(primary.Addr, ":")
	replica := testservers.StartRedisT(b, "--replicaof", host, port)
	if err := testservers.WaitLinkUp(ctx, replica.Addr); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct{ name, url string }{
		{"Primary", primary.URL},
		{"PrimaryWait", primary.URL + "?min_replicas=1&replica_timeout=1s"},
		{"Cluster3", sharedCluster(b).URL},
	} {
		b.Run(v.name, func(b *testing.B) {
			st := openURL(b, v.url)
			if err := st.CreateJob(ctx, backends.Job{ID: "one", Total: int64(b.N)}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.Complete(ctx, "one", int64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
