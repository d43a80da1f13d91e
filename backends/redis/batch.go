package redis

import (
	"context"
	"errors"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Completions from many goroutines of one process are sent to Redis in
// pipelines: a Complete or CompleteParts call hands its parts to one of a few batcher
// goroutines, which send every request waiting at that moment as one
// pipeline of EVALSHA calls (one write and one read for the lot) and hand
// each caller its own reply. A lone call goes out at once, alone; batches
// form only while earlier ones are in flight, so batching adds no waiting.
// Each script still runs atomically on its own; a pipeline only shares the
// round trip. The caller's context bounds its wait: a caller whose context
// ends returns at once, and the pipeline it was part of is bounded by the
// read and write timeouts.
//
// On a cluster, go-redis's cluster pipeline splits a batch by node (the
// keys of one job share a slot). With min_replicas, each batch is split by
// master here, and each master's share is one pipeline on one connection
// ending in one WAIT, which covers every write before it (wait.go).
const (
	batchers = 4   // pipelines in flight at once
	maxBatch = 128 // completions per pipeline at most
)

// errClosed is what calls on a closed Store return.
var errClosed = errors.New("redis store is closed")

type completeReq struct {
	ctx   context.Context
	keys  []string
	parts []any            // completeScript's parts: one, or a batch (CompleteParts)
	res   chan completeRes // buffered: the batcher never blocks on it
}

// args are completeScript's ARGV for req: touch, then the parts.
func (req *completeReq) args(touch string) []any {
	return append([]any{touch}, req.parts...)
}

type completeRes struct {
	r       []int64
	waitErr error // the replicas fell short (wait.go)
	err     error
}

type batcher struct {
	s      *Store
	reqs   chan *completeReq
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newBatcher(s *Store) *batcher {
	b := &batcher{s: s, reqs: make(chan *completeReq), closed: make(chan struct{})}
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

// complete runs completeScript for parts through a batch and returns its
// reply, or an error wrapping ErrReplication when the replicas fell short
// (wait.go).
func (b *batcher) complete(ctx context.Context, keys []string, parts []any) ([]int64, error) {
	req := &completeReq{ctx: ctx, keys: keys, parts: parts, res: make(chan completeRes, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.closed:
		return nil, errClosed
	}
	select {
	case res := <-req.res:
		if res.err == nil && res.waitErr != nil {
			return nil, res.waitErr
		}
		return res.r, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// one completes a single request on its own (Run, or a waited write).
func (b *batcher) one(req *completeReq) {
	res := b.s.write(req.ctx, completeScript, req.keys, req.args(b.s.touch())...)
	r, err := res.cmd.Int64Slice()
	req.res <- completeRes{r: r, waitErr: res.waitErr, err: err}
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
		b.one(live[0])
		return
	}
	if b.s.minReplicas > 0 {
		b.runWaited(live)
		return
	}
	// The pipeline is not tied to any one caller's context: each caller
	// stops waiting when its own context ends, and the client's timeouts
	// bound the pipeline.
	ctx := context.Background()
	pipe := b.s.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(live))
	for i, req := range live {
		cmds[i] = completeScript.EvalSha(ctx, pipe, req.keys, req.args(b.s.touch())...)
	}
	pipe.Exec(ctx) // errors are read per command below
	for i, req := range live {
		r, err := cmds[i].Int64Slice()
		if err != nil && isNoScript(err) {
			// The server lost its script cache (restart, SCRIPT
			// FLUSH): Run loads it again.
			b.one(req)
			continue
		}
		req.res <- completeRes{r: r, err: err}
	}
}

// runWaited sends a batch with replication waits: one pipeline per master,
// each ending in WAIT, the masters in parallel. A request whose script
// failed (no script loaded, the slot moved) is sent again on its own.
func (b *batcher) runWaited(live []*completeReq) {
	ctx := context.Background()
	groups := map[*goredis.Client][]*completeReq{}
	for _, req := range live {
		node, err := b.s.master(ctx, req.keys[0])
		if err != nil {
			req.res <- completeRes{err: err}
			continue
		}
		groups[node] = append(groups[node], req)
	}
	var wg sync.WaitGroup
	for node, reqs := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pipe := node.Pipeline()
			cmds := make([]*goredis.Cmd, len(reqs))
			for i, req := range reqs {
				cmds[i] = completeScript.EvalSha(ctx, pipe, req.keys, req.args("1")...)
			}
			w := b.s.waitIn(ctx, pipe)
			pipe.Exec(ctx) // errors are read per command below
			waitErr := b.s.checkWait(node, w)
			var again sync.WaitGroup
			for i, req := range reqs {
				r, err := cmds[i].Int64Slice()
				if err != nil && (isNoScript(err) || isRedirect(err)) {
					// Alone, and side by side: after a failover
					// each may wait for the new slot map.
					again.Add(1)
					go func() {
						defer again.Done()
						b.one(req)
					}()
					continue
				}
				req.res <- completeRes{r: r, waitErr: waitErr, err: err}
			}
			again.Wait()
		}()
	}
	wg.Wait()
}

func isNoScript(err error) bool {
	return strings.HasPrefix(err.Error(), "NOSCRIPT")
}
