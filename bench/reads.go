package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// ---------------------------------------------------------------------------
// 7. Reads: what wp ls and wp info cost on a table holding months of jobs.

func (e *env) caseReads(ctx context.Context) error {
	s := e.rep.section("reads", "7. Reads of `wp ls` and `wp info` (DynamoDB), and `wp ls` on 10,000 jobs",
		"Read units counted by a proxy in front of dynalite (it asks for ReturnConsumedCapacity on every read), on a table made by `wp table create` holding 200 finished 20-part jobs and one running job of 200,000 parts, and, separately, the units of one look at a 1,000,000-part job (what one `wp info --watch` refresh reads). With -old, the same commands of an older wp binary run side by side. Then the wall time of `wp ls --limit all` on a store holding 10,000 jobs, per store.")
	dyn, err := testservers.StartDynalite()
	if err != nil {
		return err
	}
	defer dyn.Stop()
	proxy, err := testservers.StartDynamoProxy(dyn.URL, testservers.ProxyOptions{})
	if err != nil {
		return err
	}
	defer proxy.Stop()
	const table = "wp-reads"
	through := []string{"AWS_ENDPOINT_URL_DYNAMODB=" + proxy.URL, "WP_PROGRESS=dynamodb://" + table}
	if _, err := (proc{args: []string{e.wp, "table", "create", table}, env: through}).run(); err != nil {
		return err
	}
	st, err := openThrough(ctx, proxy.URL, table)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("done-%03d", i)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 20}); err != nil {
			return err
		}
		parts := make([]int64, 20)
		for p := range parts {
			parts[p] = int64(p)
		}
		if _, err := st.CompleteParts(ctx, id, parts); err != nil {
			return err
		}
		if err := st.MarkReduceSent(ctx, id); err != nil {
			return err
		}
	}
	const bigParts = 200_000
	if err := st.CreateJob(ctx, backends.Job{ID: "big", Total: bigParts}); err != nil {
		return err
	}
	for p := int64(0); p < 5000; p += 256 { // some progress, so that not every shard is whole
		if _, err := st.Complete(ctx, "big", p); err != nil {
			return err
		}
	}
	type look struct {
		name, args, goal string
		limit            float64
	}
	looks := []look{
		{"wp ls --limit 20", "ls --limit 20", "≤ 30 read units (issue 20)", 30},
		{"wp ls --limit all (201 jobs)", "ls --limit all", "≤ 250 read units (issue 20)", 250},
		{"wp info BIG (200,000 parts)", "info big", "≤ 400 read units, half of today's (issue 20)", 400},
	}
	for _, l := range looks {
		r := s.add(&row{name: l.name + ": read units", unit: "units", command: "$WP " + l.args + " (through the proxy)"})
		limit := l.limit
		r.target = &target{text: l.goal, met: func(r *row, s *section) (bool, bool) { return r.median() <= limit, true }}
		proxy.Reset()
		if _, err := (proc{args: append([]string{e.wp}, strings.Fields(l.args)...), env: through}).run(); err != nil {
			return err
		}
		r.samples = append(r.samples, proxy.Stats().ReadUnits)
		if e.oldWP != "" {
			o := s.add(&row{name: l.name + ": read units, the older wp", unit: "units", command: e.oldWP + " " + oldArgs(l.args)})
			r.baseline = o.name
			proxy.Reset()
			if _, err := (proc{args: append([]string{e.oldWP}, strings.Fields(oldArgs(l.args))...), env: through}).run(); err != nil {
				return err
			}
			o.samples = append(o.samples, proxy.Stats().ReadUnits)
		}
	}

	// One look at a 1,000,000-part job.
	const million = 1_000_000
	if err := st.CreateJob(ctx, backends.Job{ID: "million", Total: million}); err != nil {
		return err
	}
	for _, stale := range []bool{false, true} {
		name := "one Status of a 1,000,000-part job: read units (strongly consistent)"
		c := ctx
		if stale {
			name = "one Status of a 1,000,000-part job: read units (eventually consistent, as wp info reads)"
			c = backends.AllowStale(ctx)
		}
		r := s.add(&row{name: name, unit: "units", command: "Status in process, through the proxy"})
		proxy.Reset()
		got, err := st.Status(c, "million")
		if err != nil {
			return err
		}
		r.samples = append(r.samples, proxy.Stats().ReadUnits)
		if stale {
			every := time.Duration(got.ReadUnits / 10 * float64(time.Second)).Round(time.Second)
			r.extra = fmt.Sprintf("the store says %.0f units; `wp info --watch` then refreshes every %s to stay under its default 10 units a second", got.ReadUnits, every)
		}
	}

	// wp ls on 10,000 jobs, per store.
	nJobs := e.pick(10_000, 2_000)
	for _, kind := range storeKinds {
		url := e.storeURL(kind, "reads-ls")
		if kind == "DynamoDB" {
			url = "dynamodb://" + table + "-ls"
			if _, err := (proc{args: []string{e.wp, "table", "create", table + "-ls"}, env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + dyn.URL}}).run(); err != nil {
				return err
			}
		}
		env := []string{"WP_PROGRESS=" + url}
		if kind == "DynamoDB" {
			env = append(env, "AWS_ENDPOINT_URL_DYNAMODB="+dyn.URL)
		}
		if kind == "Redis" {
			url = e.redis.URL // a flushed db: only these jobs
		}
		if err := createJobs(ctx, url, kind, dyn.URL, nJobs); err != nil {
			return err
		}
		r := s.add(&row{name: fmt.Sprintf("wp ls --limit all, %d jobs (%s)", nJobs, kind), unit: "s", command: "$WP ls --limit all"})
		for i := 0; i < e.pick(3, 1); i++ {
			res, err := (proc{args: []string{e.wp, "ls", "--limit", "all"}, env: env}).run()
			if err != nil {
				return err
			}
			r.samples = append(r.samples, res.wall.Seconds())
			if got := strings.Count(string(res.stdout), "\n"); got < nJobs {
				return fmt.Errorf("wp ls on %s listed %d jobs, want at least %d", kind, got, nJobs)
			}
		}
		lim := s.add(&row{name: fmt.Sprintf("wp ls --limit 20, %d jobs (%s)", nJobs, kind), unit: "s", command: "$WP ls --limit 20"})
		for i := 0; i < e.pick(5, 2); i++ {
			res, err := (proc{args: []string{e.wp, "ls", "--limit", "20"}, env: env}).run()
			if err != nil {
				return err
			}
			lim.samples = append(lim.samples, res.wall.Seconds())
		}
	}
	return nil
}

// oldArgs is args for a wp from before --limit: it lists every job.
func oldArgs(args string) string {
	return strings.TrimSpace(strings.NewReplacer("--limit 20", "", "--limit all", "").Replace(args))
}

// createJobs creates n small jobs in the store at url.
func createJobs(ctx context.Context, url, kind, dynamoURL string, n int) error {
	var st *backends.Store
	var err error
	if kind == "DynamoDB" {
		st, err = openThrough(ctx, dynamoURL, strings.TrimPrefix(url, "dynamodb://"))
	} else {
		st, err = backends.Open(ctx, url, time.Minute)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	for i := 0; i < n; i++ {
		if err := st.CreateJob(ctx, backends.Job{ID: fmt.Sprintf("ls-%05d", i), Total: 3}); err != nil {
			return err
		}
	}
	return nil
}
