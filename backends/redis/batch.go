package redis

import (
	"context"
	"errors"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Completions from many goroutines of one process are sent to Redis in
// pipelines: a Complete call hands its part to one of a few batcher
// goroutines, which send every request waiting at that moment as one
// pipeline of EVALSHA calls (one write and one read for the lot) and hand
// each caller its own reply. A lone call goes out at once, alone; batches
// form only while earlier ones are in flight, so batching adds no waiting.
// Each script still runs atomically on its own; a pipeline only shares the
// round trip. The caller's context bounds its wait: a caller whose context
// ends returns at once, and the pipeline it was part of is bounded by the
// read and write timeouts.
const (
	batchers = 4   // pipelines in flight at once
	maxBatch = 128 // completions per pipeline at most
)

// errClosed is what calls on a closed Store return.
var errClosed = errors.New("redis store is closed")

type completeReq struct {
	ctx  context.Context
	keys []string
	part int64
	res  chan completeRes // buffered: the batcher never blocks on it
}

type completeRes struct {
	r   []int64
	err error
}

type batcher struct {
	c      *goredis.Client
	reqs   chan *completeReq
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newBatcher(c *goredis.Client) *batcher {
	b := &batcher{c: c, reqs: make(chan *completeReq), closed: make(chan struct{})}
	for i := 0; i < batchers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

func (b *batcher) close() {
	b.once.Do(func() { close(b.closed) })
	b.wg.Wait()
}

// complete runs completeScript for part through a batch and returns its
// reply.
func (b *batcher) complete(ctx context.Context, keys []string, part int64) ([]int64, error) {
	req := &completeReq{ctx: ctx, keys: keys, part: part, res: make(chan completeRes, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.closed:
		return nil, errClosed
	}
	select {
	case res := <-req.res:
		return res.r, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) loop() {
	defer b.wg.Done()
	batch := make([]*completeReq, 0, maxBatch)
	for {
		select {
		case req := <-b.reqs:
			batch = append(batch[:0], req)
		case <-b.closed:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case req := <-b.reqs:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		b.run(batch)
		clear(batch)
	}
}

// run sends one batch and answers every request in it.
func (b *batcher) run(batch []*completeReq) {
	live := batch[:0:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.res <- completeRes{err: err} // the caller has gone
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	if len(live) == 1 {
		// No pipeline for a single call: this is the common case of one
		// wp process completing one part.
		req := live[0]
		r, err := completeScript.Run(req.ctx, b.c, req.keys, req.part).Int64Slice()
		req.res <- completeRes{r: r, err: err}
		return
	}
	// The pipeline is not tied to any one caller's context: each caller
	// stops waiting when its own context ends, and the client's timeouts
	// bound the pipeline.
	ctx := context.Background()
	pipe := b.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(live))
	for i, req := range live {
		cmds[i] = completeScript.EvalSha(ctx, pipe, req.keys, req.part)
	}
	pipe.Exec(ctx) // errors are read per command below
	for i, req := range live {
		r, err := cmds[i].Int64Slice()
		if err != nil && isNoScript(err) {
			// The server lost its script cache (restart, SCRIPT
			// FLUSH): Run loads it again.
			r, err = completeScript.Run(req.ctx, b.c, req.keys, req.part).Int64Slice()
		}
		req.res <- completeRes{r: r, err: err}
	}
}

func isNoScript(err error) bool {
	return strings.HasPrefix(err.Error(), "NOSCRIPT")
}
