package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/dynamodb"
	_ "github.com/wp-tools/wp/backends/redis"
	_ "github.com/wp-tools/wp/backends/sqlite"
)

func (e *env) createTable() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := dynamodb.LoadConfig(ctx)
	if err != nil {
		return err
	}
	return dynamodb.CreateTable(ctx, cfg, e.table)
}

// storeURLs are the three stores wp is measured on.
func (e *env) storeURL(kind, name string) string {
	switch kind {
	case "Redis":
		return e.redis.URL
	case "SQLite":
		return "sqlite://" + e.tmp + "/" + name + ".db"
	case "DynamoDB":
		return "dynamodb://" + e.table
	}
	panic(kind)
}

// capacity adds up the write capacity units dynalite reports for every
// write a client makes (it asks for ReturnConsumedCapacity TOTAL).
type capacity struct {
	mu  sync.Mutex
	wcu float64
}

func (c *capacity) add(cc ...types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range cc {
		if x.CapacityUnits != nil {
			c.wcu += *x.CapacityUnits
		}
	}
}

func (c *capacity) take() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.wcu
	c.wcu = 0
	return w
}

func (c *capacity) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("benchCapacity",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			total := types.ReturnConsumedCapacityTotal
			switch p := in.Parameters.(type) {
			case *ddb.UpdateItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.PutItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.DeleteItemInput:
				p.ReturnConsumedCapacity = total
			case *ddb.BatchWriteItemInput:
				p.ReturnConsumedCapacity = total
			}
			out, md, err := next.HandleInitialize(ctx, in)
			switch r := out.Result.(type) {
			case *ddb.UpdateItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(*r.ConsumedCapacity)
				}
			case *ddb.PutItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(*r.ConsumedCapacity)
				}
			case *ddb.DeleteItemOutput:
				if r.ConsumedCapacity != nil {
					c.add(*r.ConsumedCapacity)
				}
			case *ddb.BatchWriteItemOutput:
				c.add(r.ConsumedCapacity...)
			}
			return out, md, err
		}), middleware.After)
}

// meteredDynamo is wp's DynamoDB store with a client that meters write units.
func meteredDynamo(ctx context.Context, table string) (*backends.Store, *capacity, error) {
	cfg, err := dynamodb.LoadConfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	c := &capacity{}
	cfg.APIOptions = append(cfg.APIOptions, c.middleware)
	return backends.New(dynamodb.New(cfg, table), 0), c, nil
}

// completion run: parts first..first+count-1 of id, from workers
// goroutines; no new completion starts after limit (0: none).
type completed struct {
	n         int64
	elapsed   time.Duration
	finishers int64
}

func completeAll(ctx context.Context, st *backends.Store, id string, first, count int64, workers int, limit time.Duration) (completed, error) {
	var next, done, fin atomic.Int64
	next.Store(first)
	end := first + count
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if limit > 0 && time.Since(start) >= limit {
					return
				}
				p := next.Add(1) - 1
				if p >= end {
					return
				}
				c, err := st.Complete(ctx, id, p)
				if err != nil {
					errs <- fmt.Errorf("complete part %d of %s: %w", p, id, err)
					return
				}
				done.Add(1)
				if c.Finisher {
					fin.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return completed{}, err
	}
	return completed{n: done.Load(), elapsed: el, finishers: fin.Load()}, nil
}

// The SQLite store measured from several processes: this binary re-executed
// as workers.
const sqliteWorkerArg = "__sqlite-worker"

// sqliteWorker: URL JOB FIRST COUNT PROCS INDEX LIMIT. Opens the store,
// prints "ready", waits for its stdin to close, completes its share (parts
// FIRST+INDEX, FIRST+INDEX+PROCS, ...) and prints "N SECONDS FINISHERS".
func sqliteWorker(args []string) int {
	if len(args) != 7 {
		fmt.Fprintln(os.Stderr, "sqlite worker: want URL JOB FIRST COUNT PROCS INDEX LIMIT")
		return 2
	}
	first, _ := strconv.ParseInt(args[2], 10, 64)
	count, _ := strconv.ParseInt(args[3], 10, 64)
	procs, _ := strconv.ParseInt(args[4], 10, 64)
	index, _ := strconv.ParseInt(args[5], 10, 64)
	limit, _ := time.ParseDuration(args[6])
	ctx := context.Background()
	st, err := backends.Open(ctx, args[0], 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	start := time.Now()
	var n, fin int64
	for p := first + index; p < first+count; p += procs {
		if limit > 0 && time.Since(start) >= limit {
			break
		}
		c, err := st.Complete(ctx, args[1], p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		n++
		if c.Finisher {
			fin++
		}
	}
	fmt.Printf("%d %f %d\n", n, time.Since(start).Seconds(), fin)
	return 0
}

// sqliteProcs runs procs worker processes on one job and returns the parts
// they completed over the slowest one's time.
func sqliteProcs(url, job string, first, count int64, procs int, limit time.Duration) (completed, error) {
	self, err := os.Executable()
	if err != nil {
		return completed{}, err
	}
	type worker struct {
		cmd  *exec.Cmd
		in   interface{ Close() error }
		out  *bufio.Scanner
		errb *strings.Builder
	}
	ws := make([]*worker, procs)
	for i := range ws {
		cmd := exec.Command(self, sqliteWorkerArg, url, job, fmt.Sprint(first), fmt.Sprint(count), fmt.Sprint(procs), fmt.Sprint(i), limit.String())
		w := &worker{cmd: cmd, errb: &strings.Builder{}}
		cmd.Stderr = w.errb
		in, err := cmd.StdinPipe()
		if err != nil {
			return completed{}, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return completed{}, err
		}
		w.in, w.out = in, bufio.NewScanner(out)
		if err := cmd.Start(); err != nil {
			return completed{}, err
		}
		ws[i] = w
	}
	for _, w := range ws {
		if !w.out.Scan() || w.out.Text() != "ready" {
			w.cmd.Process.Kill()
			w.cmd.Wait()
			return completed{}, fmt.Errorf("sqlite worker did not start: %s", w.errb)
		}
	}
	for _, w := range ws {
		w.in.Close()
	}
	var res completed
	for _, w := range ws {
		var n, fin int64
		var secs float64
		if !w.out.Scan() {
			w.cmd.Wait()
			return completed{}, fmt.Errorf("sqlite worker failed: %s", w.errb)
		}
		fmt.Sscanf(w.out.Text(), "%d %f %d", &n, &secs, &fin)
		if err := w.cmd.Wait(); err != nil {
			return completed{}, fmt.Errorf("sqlite worker: %v: %s", err, w.errb)
		}
		res.n += n
		res.finishers += fin
		res.elapsed = max(res.elapsed, time.Duration(secs*float64(time.Second)))
	}
	return res, nil
}
