package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Replication waits. Redis replicates asynchronously: a master acknowledges
// a write before any replica has it, and a failover can lose it. With
// ?min_replicas=N, every write (create, complete, give up, fail, reduce
// claim, reduce sent, and the rest: runWrite) is followed by WAIT N
// timeout on the same connection to the same master, in the same pipeline
// as the write (WAIT
// cannot run inside a script, and it counts the replicas that acknowledged
// the connection's last write). If fewer than N replicas acknowledged
// within replica_timeout, the call returns an error wrapping
// ErrReplication: the write stands on the master but may be lost, so the
// caller must treat it as not done (wp run exits 75 and the message is
// retried, and the retry is a harmless duplicate).
//
// A duplicate completion writes nothing by itself, so its connection's
// last write could be an older one; with min_replicas the complete script
// then writes the job's remaining count again (the same value), so WAIT
// covers the state the duplicate reported, including a first completion
// made by another connection that has not reached the replicas yet. (The
// replication stream is ordered: a replica that acknowledged an offset has
// every write before it.) The same holds for a completion refused because
// the job failed, a reduce claim refused because the reduce was sent or
// claimed, and Peek of a job wp run would skip or find done (peek.go).
// Every other write (GiveUp, Retry, ReleaseReduce, MarkReduced, Delete)
// goes through runWrite and waits too; a duplicate GiveUp is covered as a
// duplicate completion is.

// touch is the scripts' touch argument: "1" makes a script that would
// write nothing write a field again with its own value, so that WAIT covers
// the state it reports.
func (s *Store) touch() string {
	if s.minReplicas > 0 {
		return "1"
	}
	return "0"
}

// ErrReplication: a write reached the master but fewer replicas than
// min_replicas acknowledged it in time.
var ErrReplication = errors.New("write not acknowledged by enough replicas")

// maxRedirects is how many times a waited write is sent again after the
// cluster said the slot moved or is down, or the master could not be
// dialled (the write was then certainly not made).
const maxRedirects = 4

// writeResult is a script reply and what WAIT said about it.
type writeResult struct {
	cmd *goredis.Cmd
	// waitErr wraps ErrReplication when the replicas fell short; nil
	// without min_replicas.
	waitErr error
}

// write runs a script that writes, waiting for replicas when the URL asks
// for it. An error of the script itself is in res.cmd.Err().
func (s *Store) write(ctx context.Context, sc *goredis.Script, keys []string, args ...any) writeResult {
	if s.minReplicas == 0 {
		return writeResult{cmd: sc.Run(ctx, s.c, keys, args...)}
	}
	var res writeResult
	for attempt := 0; ; attempt++ {
		node, err := s.master(ctx, keys[0])
		if err != nil {
			cmd := goredis.NewCmd(ctx)
			cmd.SetErr(err)
			return writeResult{cmd: cmd}
		}
		res = s.evalWait(ctx, node, sc, keys, args)
		err = res.cmd.Err()
		if err == nil || s.cluster == nil || attempt+1 >= maxRedirects || !isRedirect(err) {
			return res
		}
		// The slot map is stale (a failover, a resharding): have the
		// cluster client reread it, and try again.
		s.cluster.ReloadState(ctx)
		if err := sleep(ctx, time.Duration(100<<attempt)*time.Millisecond); err != nil {
			return res
		}
	}
}

// master is the client of the node that holds key: the one server, or the
// key's master on a cluster.
func (s *Store) master(ctx context.Context, key string) (*goredis.Client, error) {
	if s.cluster == nil {
		return s.c.(*goredis.Client), nil
	}
	return s.cluster.MasterForKey(ctx, key)
}

// evalWait sends the script and WAIT as one pipeline on one connection of
// node, loading the script if the server does not have it.
func (s *Store) evalWait(ctx context.Context, node *goredis.Client, sc *goredis.Script, keys []string, args []any) writeResult {
	pipe := node.Pipeline()
	cmd := sc.EvalSha(ctx, pipe, keys, args...)
	w := s.waitIn(ctx, pipe)
	pipe.Exec(ctx) // errors are read per command
	if err := cmd.Err(); err != nil && isNoScript(err) {
		pipe = node.Pipeline()
		cmd = sc.Eval(ctx, pipe, keys, args...)
		w = s.waitIn(ctx, pipe)
		pipe.Exec(ctx)
	}
	return writeResult{cmd: cmd, waitErr: s.checkWait(node, w)}
}

// waitIn queues WAIT min_replicas replica_timeout on pipe. (Pipeliner has
// no Wait method; the pipeline's reply is read within read_timeout, which
// parseOptions keeps above replica_timeout.)
func (s *Store) waitIn(ctx context.Context, pipe goredis.Pipeliner) *goredis.Cmd {
	return pipe.Do(ctx, "wait", s.minReplicas, s.replicaTimeout.Milliseconds())
}

// checkWait turns WAIT's reply into nil or an error wrapping
// ErrReplication.
func (s *Store) checkWait(node *goredis.Client, w *goredis.Cmd) error {
	n, err := w.Int64()
	if err != nil {
		return fmt.Errorf("%w: WAIT on %s: %v", ErrReplication, node.Options().Addr, err)
	}
	if n < int64(s.minReplicas) {
		return fmt.Errorf("%w: %d of %d replicas of %s acknowledged the write within %v (min_replicas=%d); a failover could lose it", ErrReplication, n, s.minReplicas, node.Options().Addr, s.replicaTimeout, s.minReplicas)
	}
	return nil
}

// isRedirect reports errors after which a cluster write was not made and
// may go to another node: the slot moved or is down, the node is now a
// replica, or it could not be dialled.
func isRedirect(err error) bool {
	msg := err.Error()
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return isDialError(err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
