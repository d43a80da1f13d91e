package main

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// ---------------------------------------------------------------------------
// 2b. Redis Cluster, and replication waits.

// caseCluster measures completions/s of one 100,000-part job with 32
// goroutines on the single redis-server, on a 3-master Redis Cluster, and
// with replication waits (?min_replicas=1) on a primary with one replica
// and on a 3-master cluster with one replica each, all in this run.
func (e *env) caseCluster(ctx context.Context) error {
	const n = 100_000
	label := commas(n)
	s := e.rep.section("cluster", "2b. Redis Cluster and replication waits",
		fmt.Sprintf("Parts completed per second by %d goroutines in one process calling Complete on one %s-part job, as in section 2, on servers this harness starts on loopback: the single redis-server; a Redis Cluster of 3 masters (redis-cli --cluster create, no replicas); and, with `?min_replicas=1&replica_timeout=1s` (each acknowledged write waits for one replica with WAIT), a primary with one replica and a cluster of 3 masters with one replica each. Every node shares this machine's cores. One job's keys share a hash slot, so one job is served by one master: a cluster spreads jobs over masters, not the parts of one job.", completers, label))

	type variant struct {
		name, url string
	}
	single := e.redis.URL
	primary, err := testservers.StartRedis()
	if err != nil {
		return err
	}
	defer primary.Stop()
	host, port, _ := strings.Cut(primary.Addr, ":")
	replica, err := testservers.StartRedis("--replicaof", host, port)
	if err != nil {
		return err
	}
	defer replica.Stop()
	if err := testservers.WaitLinkUp(ctx, replica.Addr); err != nil {
		return err
	}
	c3, err := testservers.StartRedisCluster(3, 0)
	if err != nil {
		return err
	}
	defer c3.Stop()
	c6, err := testservers.StartRedisCluster(3, 1)
	if err != nil {
		return err
	}
	defer c6.Stop()
	const wait = "?min_replicas=1&replica_timeout=1s"
	variants := []variant{
		{"wp Redis, one server, " + label + " parts", single},
		{"wp Redis Cluster, 3 masters, " + label + " parts", c3.URL},
		{"wp Redis, primary + 1 replica, min_replicas=1, " + label + " parts", primary.URL + wait},
		{"wp Redis Cluster, 3 masters + 3 replicas, min_replicas=1, " + label + " parts", c6.URL + wait},
	}
	runs := e.pick(3, 1)
	var base string
	for i, v := range variants {
		r := s.add(&row{name: v.name, unit: "parts/s", higher: true, baseline: base,
			command: fmt.Sprintf("in process: redis store at %s, %d goroutines calling Complete", redactPort(v.url), completers)})
		if i == 0 {
			base = r.name
		}
		st, err := backends.Open(ctx, v.url, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		for k := 0; k < runs; k++ {
			id := fmt.Sprintf("cl-%d-%d", i, k)
			if err := st.CreateJob(ctx, backends.Job{ID: id, Total: n}); err != nil {
				st.Close()
				return err
			}
			c, err := completeAll(ctx, st, id, 0, n, completers, 0)
			if err != nil {
				st.Close()
				return fmt.Errorf("%s: %w", v.name, err)
			}
			if c.finishers != 1 {
				st.Close()
				return fmt.Errorf("%s: %d finishers, want 1", v.name, c.finishers)
			}
			r.samples = append(r.samples, float64(c.n)/c.elapsed.Seconds())
		}
		st.Close()
		log.Printf("  %s: %v", v.name, r.samples)
	}
	return nil
}

// redactPort shows a store URL's shape without its throwaway port numbers.
func redactPort(u string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	host, tail, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i] + ":PORT"
	}
	return scheme + "://" + host + "/" + tail
}
