package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// ---------------------------------------------------------------------------
// 6. Batches: what a part costs when several share a message.

// openThrough opens the DynamoDB store of table through the proxy at url
// (the SDK reads its endpoint when the store is opened).
func openThrough(ctx context.Context, proxyURL, table string) (*backends.Store, error) {
	old := os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	os.Setenv("AWS_ENDPOINT_URL_DYNAMODB", proxyURL)
	defer os.Setenv("AWS_ENDPOINT_URL_DYNAMODB", old)
	return backends.Open(ctx, "dynamodb://"+table, time.Minute)
}

// completeAll completes every part of job id in batches of k (k 1: one
// Complete a part), aligned to the store's shards, from workers
// goroutines; a throttled call is tried again with backoff, as wp run
// does. It returns the wall time.
func completeBatches(ctx context.Context, st *backends.Store, id string, total int64, k, workers int) (time.Duration, error) {
	shard := max(st.ShardSize(), 1)
	var batches [][]int64
	for s := int64(0); s < total; s += shard {
		end := min(s+shard, total)
		for from := s; from < end; from += int64(k) {
			var b []int64
			for p := from; p < min(from+int64(k), end); p++ {
				b = append(b, p)
			}
			batches = append(batches, b)
		}
	}
	work := make(chan []int64, len(batches))
	for _, b := range batches {
		work <- b
	}
	close(work)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				delay := 20 * time.Millisecond
				for {
					var err error
					if k == 1 {
						_, err = st.Complete(ctx, id, b[0])
					} else {
						_, err = st.CompleteParts(ctx, id, b)
					}
					if errors.Is(err, backends.ErrThrottled) {
						time.Sleep(time.Duration(rand.Int64N(int64(delay))) + time.Millisecond)
						delay = min(2*delay, 2*time.Second)
						continue
					}
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (e *env) caseBatch(ctx context.Context) error {
	s := e.rep.section("batch", "6. Batches (`wp create --batch K`)",
		"What a part costs when K consecutive parts share a map message. DynamoDB write units per completed part, counted by a proxy in front of dynalite that asks for ReturnConsumedCapacity on every request (a batch inside one shard item is one UpdateItem). Parts per second through a table held to 30 write units a second with no burst (the same proxy refusing writes past them, as DynamoDB does; 32 goroutines, each retrying a throttled write with backoff as wp run does). `wp create` on Redis with the local SNS endpoint: messages published and wall time. A whole job under the watchbot simulation (every message handed to a `wp run -- true` process, 4 at a time, Redis): processes started per 1,000 parts (wp's and the command's) and wall time.")
	proxy, err := testservers.StartDynamoProxy(e.dyn.URL, testservers.ProxyOptions{})
	if err != nil {
		return err
	}
	defer proxy.Stop()
	st, err := openThrough(ctx, proxy.URL, e.table)
	if err != nil {
		return err
	}
	defer st.Close()

	// Write units per part.
	n := int64(e.pick(4096, 1024))
	wcu := map[int]*row{}
	for _, k := range []int{1, 16, 64} {
		r := s.add(&row{name: fmt.Sprintf("DynamoDB write units per part, K=%d", k), unit: "units",
			command: fmt.Sprintf("%d parts completed in batches of %d, in process, through the metering proxy", n, k)})
		if k > 1 {
			r.baseline = wcu[1].name
			kk := float64(k)
			r.target = &target{text: fmt.Sprintf("about 1/%d of K=1's (issue 19)", k), met: func(r *row, s *section) (bool, bool) {
				return r.median() <= 1.25*s.find("DynamoDB write units per part, K=1").median()/kk, true
			}}
		}
		wcu[k] = r
		id := fmt.Sprintf("batch-wcu-%d", k)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: n, Batch: map[bool]int{true: k, false: 0}[k > 1]}); err != nil {
			return err
		}
		proxy.Reset()
		if _, err := completeBatches(ctx, st, id, n, k, 32); err != nil {
			return err
		}
		r.samples = append(r.samples, proxy.Stats().WriteUnits/float64(n))
	}

	// Through a throttled table.
	proxy.SetLimits(testservers.ProxyOptions{WriteUnitsPerSecond: 30, WriteBurst: 1})
	rate := map[int]*row{}
	for _, k := range []int{1, 16} {
		parts := int64(e.pick(300, 150)) * int64(k)
		r := s.add(&row{name: fmt.Sprintf("parts/s through a 30-write-unit table, K=%d", k), unit: "parts/s", higher: true,
			command: fmt.Sprintf("%d parts, batches of %d, 32 goroutines, proxy at 30 write units/s", parts, k)})
		if k == 16 {
			r.baseline = rate[1].name
			r.target = &target{text: "≥ 16× K=1's (issue 19)", met: func(r *row, s *section) (bool, bool) {
				return r.median() >= 16*s.find("parts/s through a 30-write-unit table, K=1").median(), true
			}}
		}
		rate[k] = r
		id := fmt.Sprintf("batch-thr-%d", k)
		proxy.SetLimits(testservers.ProxyOptions{})
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: parts, Batch: k}); err != nil {
			return err
		}
		proxy.SetLimits(testservers.ProxyOptions{WriteUnitsPerSecond: 30, WriteBurst: 1})
		proxy.Reset()
		took, err := completeBatches(ctx, st, id, parts, k, 32)
		if err != nil {
			return err
		}
		r.samples = append(r.samples, float64(parts)/took.Seconds())
		r.extra = fmt.Sprintf("%d writes throttled", proxy.Stats().Throttled)
	}
	proxy.SetLimits(testservers.ProxyOptions{})

	// wp create.
	big := int64(e.pick(1_000_000, 100_000))
	file, err := e.partsFile(big)
	if err != nil {
		return err
	}
	url := e.storeURL("Redis", "batch")
	created := map[int]*row{}
	for _, k := range []int{1, 16} {
		r := s.add(&row{name: fmt.Sprintf("wp create of %d parts, K=%d (Redis + SNS)", big, k), unit: "s",
			command: fmt.Sprintf("WP_PROGRESS=%s $WP create --jobid ID --batch %d < parts-%d.ndjson", redactTmp(url, e.tmp), k, big)})
		if k == 16 {
			r.baseline = created[1].name
		}
		created[k] = r
		e.sns.Reset()
		res, err := proc{args: []string{e.wp, "create", "--jobid", fmt.Sprintf("batch-create-%d", k), "--batch", fmt.Sprint(k)}, env: []string{"WP_PROGRESS=" + url}, stdin: file, rss: true}.run()
		if err != nil {
			return err
		}
		r.samples = append(r.samples, res.wall.Seconds())
		r.rss = append(r.rss, float64(res.maxRSS)/mib)
		r.extra = fmt.Sprintf("%d messages published", e.sns.Count("map"))
	}

	// A whole job under the watchbot simulation.
	const jobParts = 1000
	jfile, err := e.partsFile(jobParts)
	if err != nil {
		return err
	}
	whole := map[int]*row{}
	for _, k := range []int{1, 16} {
		r := s.add(&row{name: fmt.Sprintf("a %d-part job under the watchbot simulation, K=%d", jobParts, k), unit: "s",
			command: fmt.Sprintf("wp create --batch %d, then each message to `wp run -- true`, 4 at a time (Redis)", k)})
		if k == 16 {
			r.baseline = whole[1].name
		}
		whole[k] = r
		id := fmt.Sprintf("batch-whole-%d", k)
		e.sns.Reset()
		if _, err := (proc{args: []string{e.wp, "create", "--jobid", id, "--batch", fmt.Sprint(k)}, env: []string{"WP_PROGRESS=" + url}, stdin: jfile}).run(); err != nil {
			return err
		}
		var bodies []string
		for _, m := range e.sns.Messages() {
			if m.Subject == "map" {
				bodies = append(bodies, m.Body)
			}
		}
		var count atomic.Int64 // command processes, counted by the command itself
		marker := e.tmp + fmt.Sprintf("/batch-whole-%d.count", k)
		os.Remove(marker)
		work := make(chan string, len(bodies))
		for _, b := range bodies {
			work <- b
		}
		close(work)
		var wg sync.WaitGroup
		var firstErr atomic.Value
		start := time.Now()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range work {
					if _, err := (proc{args: []string{e.wp, "run", "--", "sh", "-c", "echo >> " + marker}, env: []string{"WP_PROGRESS=" + url, "Subject=map", "Message=" + b, "ApproximateReceiveCount=1"}}).run(); err != nil {
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return err
		}
		r.samples = append(r.samples, time.Since(start).Seconds())
		b, _ := os.ReadFile(marker)
		count.Store(int64(strings.Count(string(b), "\n")))
		procs := float64(len(bodies)) + float64(count.Load())
		r.extra = fmt.Sprintf("%d messages; %.0f processes per 1,000 parts (%d wp run, %d commands)", len(bodies), procs*1000/jobParts, len(bodies), count.Load())
	}
	return nil
}
