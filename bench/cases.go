package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wp-tools/wp/backends"
)

const completers = 32 // concurrent completers in the throughput cases

var storeKinds = []string{"Redis", "SQLite", "DynamoDB"}

// pick returns full or quick.
func (e *env) pick(full, quick int) int {
	if e.quick {
		return quick
	}
	return full
}

// capTime bounds one run of a capped throughput case.
func (e *env) capTime() time.Duration {
	if e.quick {
		return 4 * time.Second
	}
	return 8 * time.Second
}

func (e *env) bench(name string) string { return filepath.Join(e.root, "bench", name) }

func (e *env) nodeJSON(v any, args ...string) (procResult, error) {
	r, err := proc{args: append([]string{e.node}, args...), dir: filepath.Join(e.root, "bench"), rss: true}.run()
	if err != nil {
		return r, err
	}
	if v != nil {
		if err := json.Unmarshal(lastLine(r.stdout), v); err != nil {
			return r, fmt.Errorf("%s: output %q: %w", strings.Join(args, " "), r.stdout, err)
		}
	}
	return r, nil
}

func lastLine(b []byte) []byte {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return []byte(s)
}

func createJob(ctx context.Context, url, id string, total int64) error {
	st, err := backends.Open(ctx, url, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.CreateJob(ctx, backends.Job{ID: id, Total: total, Metadata: json.RawMessage(`{"bench":true}`)})
}

// ---------------------------------------------------------------------------
// 1. Per-part overhead of a worker process.

func (e *env) caseOverhead(ctx context.Context) error {
	s := e.rep.section("overhead", "1. Per-part overhead of a worker process",
		"One process per part, as watchbot runs a worker: wall time from fork to exit of `wp run -- true` completing one part of a job in each store (SNS endpoint reachable; no part is the last, so no reduce is sent), of bare `true`, and of a Node process completing one part with the watchbot-progress library on the same dynalite (the library called the way its CLI would call it: the published CLI does not start). The variants are interleaved, one process of each in turn, so load on the machine hits them alike. Samples are processes.")
	nWP := e.pick(40, 15)
	nNode := e.pick(10, 4)
	truePath, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	type variant struct {
		r   *row
		n   int
		cmd func(i int) proc
	}
	node := s.add(&row{name: "Node watchbot-progress library, one process per part (DynamoDB)", unit: "ms",
		command: "ProgressTable=arn:...:table/wp-bench DynamoDbEndpoint=$DYNALITE node bench/wbp.js complete-part JOB PART"})
	bare := s.add(&row{name: "bare `true`", unit: "ms", baseline: node.name, command: truePath})
	vs := []variant{{r: bare, n: nWP, cmd: func(int) proc { return proc{args: []string{truePath}} }}}
	for _, kind := range storeKinds {
		url := e.storeURL(kind, "overhead")
		id := "overhead-" + strings.ToLower(kind)
		if err := createJob(ctx, url, id, int64(nWP)+20); err != nil {
			return fmt.Errorf("create %s job: %w", kind, err)
		}
		r := s.add(&row{name: "`wp run -- true` (" + kind + ")", unit: "ms", baseline: node.name,
			command: fmt.Sprintf("WP_PROGRESS=%s Subject=map Message='{\"jobid\":\"%s\",\"partid\":N}' $WP run -- true", redactTmp(url, e.tmp), id)})
		if kind == "Redis" {
			r.target = below(15, "median < 15 ms (issue 2)")
		}
		vs = append(vs, variant{r: r, n: nWP, cmd: func(i int) proc {
			return proc{args: []string{e.wp, "run", "--", truePath}, env: []string{
				"WP_PROGRESS=" + url, "Subject=map",
				fmt.Sprintf(`Message={"jobid":%q,"partid":%d}`, id, i),
				"MessageId=bench", "ApproximateReceiveCount=1",
			}}
		}})
	}
	const nodeJob = "overhead-node"
	if _, err := e.nodeJSON(nil, "wbp.js", "set-total", nodeJob, fmt.Sprint(nNode+20)); err != nil {
		return err
	}
	vs = append(vs, variant{r: node, n: nNode, cmd: func(i int) proc {
		return proc{args: []string{e.node, "wbp.js", "complete-part", nodeJob, fmt.Sprint(i + 1)}, dir: filepath.Join(e.root, "bench")}
	}})
	for i := 0; i < nWP; i++ {
		for _, v := range vs {
			if i >= v.n {
				continue
			}
			res, err := v.cmd(i).run()
			if err != nil {
				return err
			}
			v.r.samples = append(v.r.samples, float64(res.wall)/float64(time.Millisecond))
		}
	}
	// Peak RSS: a few more processes of each, through GNU time (not timed).
	for i := 0; i < 3; i++ {
		for _, v := range vs {
			p := v.cmd(v.n + i)
			p.rss = true
			res, err := p.run()
			if err != nil {
				return err
			}
			v.r.rss = append(v.r.rss, float64(res.maxRSS)/mib)
		}
	}
	for _, r := range s.rows {
		if r != bare && len(bare.samples) > 0 {
			r.extra = fmt.Sprintf("%+.1f ms over bare `true`", r.median()-bare.median())
		}
	}
	return nil
}

func redactTmp(s, tmp string) string { return strings.ReplaceAll(s, tmp, "$TMP") }

// ---------------------------------------------------------------------------
// 2. Completion throughput as the job grows.

type bullRun struct {
	create, complete float64 // seconds
	rssCreate        float64 // MiB
}

func (e *env) caseThroughput(ctx context.Context) error {
	capT := e.capTime()
	s := e.rep.section("throughput", "2. Completion throughput as the job grows",
		fmt.Sprintf("Parts completed per second by %d concurrent completers in one process (wp: goroutines calling the store; Node library: promises in one Node process; BullMQ: one Worker with concurrency %d), not counting process start-up or job creation. Runs marked *capped* stop starting completions after %s: wp's capped runs complete parts from the middle of a fresh job (its cost per completion does not depend on how many parts are pending); the Node library's capped runs start from a job whose first half is already complete (written with the library's own item layout), because its cost grows with the pending set and the middle is its average. WCU/part is the write capacity dynalite reports per completed part, summed over every write the completions made.", completers, completers, capT))

	sizes := []int64{1_000, 10_000, 100_000, 1_000_000}
	wpRuns := map[int64]int{1_000: e.pick(5, 3), 10_000: e.pick(3, 3), 100_000: e.pick(2, 1), 1_000_000: e.pick(1, 0)}
	bullRuns := map[int64]int{1_000: e.pick(3, 2), 10_000: e.pick(3, 1), 100_000: e.pick(1, 0), 1_000_000: 0}
	nodeRuns := map[int64]int{1_000: e.pick(3, 1), 10_000: e.pick(2, 1), 100_000: e.pick(2, 1), 1_000_000: 0}

	dyn, meter, err := meteredDynamo(ctx, e.table)
	if err != nil {
		return err
	}
	redisSt, err := backends.Open(ctx, e.redis.URL, 0)
	if err != nil {
		return err
	}
	defer redisSt.Close()

	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	dynPID := serverPID("--createTableMs", port(e.dyn.Addr))
	redisPID := serverPID("redis-server", ":"+port(e.redis.Addr))
	cpuNote := func(m *cpuMeter, server string, self bool) string {
		sv, me := m.shares()
		if m.pid == 0 {
			return ""
		}
		if self {
			return fmt.Sprintf("%s %.0f%%, wp (client) %.0f%% of a core", server, sv, me)
		}
		return fmt.Sprintf("%s %.0f%% of a core", server, sv)
	}
	var nodeRefused string
	for _, n := range sizes {
		label := commas(n)
		// DynamoDB: wp against the Node library.
		nodeRow := s.add(&row{name: "Node library, " + label + " parts", unit: "parts/s", higher: true,
			command: fmt.Sprintf("node bench/wbp.js complete-many JOB FIRST COUNT %d SECONDS", completers)})
		wpDyn := s.add(&row{name: "wp DynamoDB, " + label + " parts", unit: "parts/s", higher: true, baseline: nodeRow.name,
			command: fmt.Sprintf("in process: dynamodb store, %d goroutines calling Complete (bench/stores.go completeAll)", completers)})
		if n == 10_000 {
			wpDyn.target = fasterThan(nodeRow.name, 3, "at least 3× the Node library at 10,000 parts (issue 4)")
		}
		runs := wpRuns[n]
		capped := n >= 100_000
		var wcu, parts float64
		dynMeter := &cpuMeter{pid: dynPID}
		for r := 0; r < runs; r++ {
			id := fmt.Sprintf("tp-ddb-%d-%d", n, r)
			if err := dyn.CreateJob(ctx, backends.Job{ID: id, Total: n}); err != nil {
				return err
			}
			meter.take()
			first, count, limit := int64(0), n, time.Duration(0)
			if capped {
				first, count, limit = n/2, n-n/2, capT
			}
			dynMeter.start()
			c, err := completeAll(ctx, dyn, id, first, count, completers, limit)
			dynMeter.stop()
			if err != nil {
				return err
			}
			if !capped && c.finishers != 1 {
				return fmt.Errorf("wp DynamoDB %d parts: %d finishers, want 1", n, c.finishers)
			}
			wcu += meter.take()
			parts += float64(c.n)
			wpDyn.samples = append(wpDyn.samples, float64(c.n)/c.elapsed.Seconds())
		}
		if runs == 0 {
			wpDyn.notRun = "only in the full run"
		} else {
			wpDyn.extra = fmt.Sprintf("%.3f WCU/part; CPU: %s", wcu/parts, cpuNote(dynMeter, "dynalite", true))
			if capped {
				wpDyn.note = fmt.Sprintf("capped at %s a run", capT)
			}
		}
		log.Printf("  wp DynamoDB %d: %v", n, wpDyn.samples)

		// The Node library.
		switch {
		case n >= 1_000_000:
			// Show, do not assume, that its single item cannot hold the job.
			_, err := e.nodeJSON(nil, "wbp.js", "set-total", "tp-node-1m", fmt.Sprint(n))
			if err != nil {
				nodeRefused = err.Error()
				if i := strings.LastIndex(nodeRefused, "wbp.js: "); i >= 0 {
					nodeRefused = nodeRefused[i+len("wbp.js: "):]
				}
				nodeRow.notRun = "its setTotal of " + label + " parts failed in this run: " + shorten(nodeRefused, 160)
			} else {
				nodeRow.notRun = "setTotal succeeded but the run is beyond the time budget"
			}
		case nodeRuns[n] == 0:
			nodeRow.notRun = "only in the full run"
		default:
			nodeMeter := &cpuMeter{pid: dynPID}
			for r := 0; r < nodeRuns[n]; r++ {
				id := fmt.Sprintf("tp-node-%d-%d", n, r)
				first, count, limit := int64(1), n, capT*2
				if n > 1_000 {
					first, count, limit = n/2+1, n-n/2, capT
					if _, err := e.nodeJSON(nil, "wbp.js", "set-pending", id, fmt.Sprint(n), fmt.Sprint(first)); err != nil {
						return err
					}
				} else if _, err := e.nodeJSON(nil, "wbp.js", "set-total", id, fmt.Sprint(n)); err != nil {
					return err
				}
				var out struct {
					Completed int     `json:"completed"`
					Seconds   float64 `json:"seconds"`
				}
				nodeMeter.start()
				_, err := e.nodeJSON(&out, "wbp.js", "complete-many", id, fmt.Sprint(first), fmt.Sprint(count), fmt.Sprint(completers), fmt.Sprint(limit.Seconds()))
				nodeMeter.stop()
				if err != nil {
					return err
				}
				nodeRow.samples = append(nodeRow.samples, float64(out.Completed)/out.Seconds)
				if int64(out.Completed) < n {
					nodeRow.note = fmt.Sprintf("capped at %s a run; %d of %d parts done in the last run", limit, out.Completed, count)
				}
			}
			nodeRow.extra = "CPU: " + cpuNote(nodeMeter, "dynalite (whole node process run)", false)
			log.Printf("  Node library %d: %v", n, nodeRow.samples)
		}

		// Redis: wp against a BullMQ flow.
		bull := s.add(&row{name: "BullMQ flow, " + label + " children", unit: "parts/s", higher: true,
			command: fmt.Sprintf("node bench/bullmq.js create PREFIX N; node bench/bullmq.js complete PREFIX N %d", completers)})
		wpRedis := s.add(&row{name: "wp Redis, " + label + " parts", unit: "parts/s", higher: true, baseline: bull.name,
			command: fmt.Sprintf("in process: redis store, %d goroutines calling Complete", completers)})
		wpRedis.target = atLeast(50_000, "≥ 50,000 completions/s with 32 goroutines (issue 2)")
		if n != 100_000 {
			wpRedis.target = nil
		}
		redisMeter := &cpuMeter{pid: redisPID}
		for r := 0; r < wpRuns[n]; r++ {
			id := fmt.Sprintf("tp-redis-%d-%d", n, r)
			if err := redisSt.CreateJob(ctx, backends.Job{ID: id, Total: n}); err != nil {
				return err
			}
			redisMeter.start()
			c, err := completeAll(ctx, redisSt, id, 0, n, completers, 0)
			redisMeter.stop()
			if err != nil {
				return err
			}
			if c.finishers != 1 {
				return fmt.Errorf("wp Redis %d parts: %d finishers, want 1", n, c.finishers)
			}
			wpRedis.samples = append(wpRedis.samples, float64(c.n)/c.elapsed.Seconds())
		}
		if wpRuns[n] == 0 {
			wpRedis.notRun = "only in the full run"
		} else {
			wpRedis.extra = "CPU: " + cpuNote(redisMeter, "redis-server", true)
		}
		log.Printf("  wp Redis %d: %v", n, wpRedis.samples)
		bullMeter := &cpuMeter{pid: redisPID}
		for r := 0; r < bullRuns[n]; r++ {
			br, err := e.bullFlow(n, fmt.Sprintf("tp%d-%d", n, r), bullMeter)
			if err != nil {
				return err
			}
			bull.samples = append(bull.samples, float64(n)/br.complete)
		}
		switch {
		case bullRuns[n] > 0:
			bull.extra = "CPU (completion only): " + cpuNote(bullMeter, "redis-server", false)
			log.Printf("  BullMQ %d: %v", n, bull.samples)
		case n >= 1_000_000:
			bull.notRun = "beyond the time budget: one flow's creation and completion grow with N (see the 100,000 row and section 3)"
		default:
			bull.notRun = "only in the full run"
		}

		// SQLite from several processes (no peer).
		const procs = 4
		sq := s.add(&row{name: fmt.Sprintf("wp SQLite, %d processes, %s parts", procs, label), unit: "parts/s", higher: true,
			command: fmt.Sprintf("%d processes (this binary re-executed), each completing every %dth part with one Complete at a time, on one database file", procs, procs)})
		sqURL := e.storeURL("SQLite", "throughput")
		for r := 0; r < wpRuns[n]; r++ {
			id := fmt.Sprintf("tp-sqlite-%d-%d", n, r)
			if err := createJob(ctx, sqURL, id, n); err != nil {
				return err
			}
			first, count, limit := int64(0), n, time.Duration(0)
			if capped {
				first, count, limit = n/2, n-n/2, capT
			}
			c, err := sqliteProcs(sqURL, id, first, count, procs, limit)
			if err != nil {
				return err
			}
			if !capped && c.finishers != 1 {
				return fmt.Errorf("wp SQLite %d parts: %d finishers, want 1", n, c.finishers)
			}
			sq.samples = append(sq.samples, float64(c.n)/c.elapsed.Seconds())
			if capped {
				sq.note = fmt.Sprintf("capped at %s a run", capT)
			}
		}
		if wpRuns[n] == 0 {
			sq.notRun = "only in the full run"
		}
		log.Printf("  wp SQLite %d: %v", n, sq.samples)
	}
	// Growth: does wp's rate hold as the job grows?
	for _, kind := range []string{"wp DynamoDB, %s parts", "wp Redis, %s parts", "wp SQLite, 4 processes, %s parts"} {
		small := s.find(fmt.Sprintf(kind, commas(1_000)))
		var parts []string
		for _, n := range sizes[1:] {
			r := s.find(fmt.Sprintf(kind, commas(n)))
			if small == nil || r == nil || len(r.samples) == 0 || len(small.samples) == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s parts: %.2f×", commas(n), r.median()/small.median()))
		}
		if len(parts) > 0 {
			s.after = append(s.after, fmt.Sprintf("Rate of %s relative to its 1,000-part rate: %s.", strings.ReplaceAll(kind, ", %s parts", ""), strings.Join(parts, ", ")))
		}
	}
	return nil
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// bullFlow creates a flow of n children and completes it, and remembers the
// creation for section 3.
func (e *env) bullFlow(n int64, prefix string, m *cpuMeter) (bullRun, error) {
	var c struct {
		Seconds float64 `json:"seconds"`
	}
	res, err := e.nodeJSON(&c, "bullmq.js", "create", prefix, fmt.Sprint(n))
	if err != nil {
		return bullRun{}, err
	}
	var d struct {
		Completed   int64   `json:"completed"`
		Seconds     float64 `json:"seconds"`
		ParentState string  `json:"parentState"`
	}
	if m != nil {
		m.start()
	}
	_, err = e.nodeJSON(&d, "bullmq.js", "complete", prefix, fmt.Sprint(n), fmt.Sprint(completers))
	if m != nil {
		m.stop()
	}
	if err != nil {
		return bullRun{}, err
	}
	if d.Completed != n || d.ParentState != "waiting" {
		return bullRun{}, fmt.Errorf("bullmq flow %d: completed %d, parent %q", n, d.Completed, d.ParentState)
	}
	br := bullRun{create: c.Seconds, complete: d.Seconds, rssCreate: float64(res.maxRSS) / mib}
	if e.bullCreate == nil {
		e.bullCreate = map[int64][]bullRun{}
	}
	e.bullCreate[n] = append(e.bullCreate[n], br)
	return br, nil
}

// ---------------------------------------------------------------------------
// 3. Job creation.

func (e *env) partsFile(n int64) (string, error) {
	path := filepath.Join(e.tmp, fmt.Sprintf("parts-%d.ndjson", n))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	for i := int64(0); i < n; i++ {
		fmt.Fprintf(w, "{\"tile\":\"%d\"}\n", i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

func (e *env) caseCreate(ctx context.Context) error {
	s := e.rep.section("create", "3. Job creation",
		"`wp create` reading N parts as NDJSON (`{\"tile\":\"N\"}` a line) on stdin, storing the job and publishing one `Subject=map` message per part to the SNS endpoint (an in-process SNS query-protocol server in the harness, reached over loopback HTTP), measured as a whole process: wall time and peak RSS. The harness checks that the endpoint received exactly N map messages. BullMQ: one `FlowProducer.add` of a parent with N children (time inside Node, peak RSS of the Node process).")
	sizes := []int64{10_000, 100_000, 1_000_000}
	runs := map[int64]int{10_000: e.pick(3, 2), 100_000: e.pick(3, 1), 1_000_000: e.pick(1, 0)}
	for _, n := range sizes {
		label := commas(n)
		file, err := e.partsFile(n)
		if err != nil {
			return err
		}
		bull := s.add(&row{name: "BullMQ flow creation, " + label + " children", unit: "s",
			command: "node bench/bullmq.js create PREFIX " + fmt.Sprint(n)})
		brs := e.bullCreate[n]
		if len(brs) == 0 && n <= 10_000 {
			for r := 0; r < runs[n]; r++ {
				if _, err := e.bullFlow(n, fmt.Sprintf("cr%d-%d", n, r), nil); err != nil {
					return err
				}
			}
			brs = e.bullCreate[n]
		}
		for _, br := range brs {
			bull.samples = append(bull.samples, br.create)
			bull.rss = append(bull.rss, br.rssCreate)
		}
		if len(brs) == 0 {
			bull.notRun = "beyond the time budget (section 2 runs the flows it has time for; its largest flow's creation time is in the row above)"
			if n == 100_000 && e.quick {
				bull.notRun = "only in the full run"
			}
		}
		for _, kind := range storeKinds {
			url := e.storeURL(kind, "create")
			r := s.add(&row{name: fmt.Sprintf("wp create, %s, %s parts", kind, label), unit: "s", baseline: bull.name,
				command: fmt.Sprintf("WP_PROGRESS=%s WorkTopic=arn:aws:sns:us-east-1:000000000000:wp-bench AWS_ENDPOINT_URL_SNS=$SNS $WP create --jobid ID < parts-%d.ndjson", redactTmp(url, e.tmp), n)})
			switch {
			case kind == "Redis" && n == 100_000:
				r.target = and("< 5 s and peak RSS < 100 MiB (issue 2)", below(5, ""), rssBelow(100, ""))
			case kind == "DynamoDB" && n == 100_000:
				r.target = &target{text: "reported (issue 4)", met: func(*row, *section) (bool, bool) { return true, true }}
			}
			for i := 0; i < runs[n]; i++ {
				e.sns.Reset()
				id := fmt.Sprintf("create-%s-%d-%d", strings.ToLower(kind), n, i)
				res, err := proc{args: []string{e.wp, "create", "--jobid", id}, env: []string{"WP_PROGRESS=" + url}, stdin: file, rss: true}.run()
				if err != nil {
					return err
				}
				if got := e.sns.Count("map"); int64(got) != n {
					return fmt.Errorf("wp create %s %d parts: the SNS endpoint got %d map messages", kind, n, got)
				}
				r.samples = append(r.samples, res.wall.Seconds())
				r.rss = append(r.rss, float64(res.maxRSS)/mib)
			}
			e.sns.Reset()
			if runs[n] == 0 {
				r.notRun = "only in the full run"
			} else {
				r.extra = fmt.Sprintf("%s parts/s", commas(int64(float64(n)/median(r.samples))))
			}
			log.Printf("  wp create %s %d: %v s, %v MiB", kind, n, r.samples, r.rss)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// 4. wp local against xargs.

func (e *env) caseLocal(ctx context.Context) error {
	s := e.rep.section("local", "4. `wp local -j 2 -- true` against `xargs -P 2 -n 1 true`",
		"Both run `true` once per part, two at a time; wp local also records every part in its SQLite store (a new database file each run) and runs the reduce. Throughput is parts over the whole process's wall time. The two are interleaved run by run.")
	const n = 10_000
	file, err := e.partsFile(n)
	if err != nil {
		return err
	}
	lines := filepath.Join(e.tmp, "lines-10000.txt")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	if err := os.WriteFile(lines, []byte(b.String()), 0o644); err != nil {
		return err
	}
	truePath, _ := exec.LookPath("true")
	xargsPath, err := exec.LookPath("xargs")
	if err != nil {
		return err
	}
	xa := s.add(&row{name: "xargs -P 2 -n 1 true, 10,000 lines", unit: "parts/s", higher: true,
		command: "xargs -P 2 -n 1 true < lines-10000.txt"})
	wl := s.add(&row{name: "wp local -j 2 -- true, 10,000 parts", unit: "parts/s", higher: true, baseline: xa.name,
		command: "$WP local -j 2 --progress sqlite://$TMP/local-N.db -- true < parts-10000.ndjson",
		target:  &target{text: "≥ 50% of xargs's throughput (issue 3)", met: func(r *row, s *section) (bool, bool) { return fasterThan(xa.name, 0.5, "").met(r, s) }}})
	for i := 0; i < e.pick(3, 1); i++ {
		res, err := proc{args: []string{xargsPath, "-P", "2", "-n", "1", truePath}, stdin: lines, rss: true}.run()
		if err != nil {
			return err
		}
		xa.samples = append(xa.samples, n/res.wall.Seconds())
		xa.rss = append(xa.rss, float64(res.maxRSS)/mib)
		db := filepath.Join(e.tmp, fmt.Sprintf("local-%d.db", i))
		res, err = proc{args: []string{e.wp, "local", "-j", "2", "--progress", "sqlite://" + db, "--", truePath}, stdin: file, rss: true}.run()
		if err != nil {
			return err
		}
		wl.samples = append(wl.samples, n/res.wall.Seconds())
		wl.rss = append(wl.rss, float64(res.maxRSS)/mib)
		log.Printf("  xargs %v wp local %v", xa.samples, wl.samples)
	}

	big := s.add(&row{name: "wp local -j 2 -- true, 100,000 parts", unit: "parts/s", higher: true, baseline: xa.name,
		command: "$WP local -j 2 --progress sqlite://$TMP/local-big.db -- true < parts-100000.ndjson",
		target:  rssBelow(100, "peak RSS < 100 MiB (issue 3)")})
	if e.quick {
		big.notRun = "only in the full run"
		return nil
	}
	bigFile, err := e.partsFile(100_000)
	if err != nil {
		return err
	}
	res, err := proc{args: []string{e.wp, "local", "-j", "2", "--progress", "sqlite://" + filepath.Join(e.tmp, "local-big.db"), "--", truePath}, stdin: bigFile, rss: true}.run()
	if err != nil {
		return err
	}
	big.samples = append(big.samples, 100_000/res.wall.Seconds())
	big.rss = append(big.rss, float64(res.maxRSS)/mib)
	log.Printf("  wp local 100000: %v parts/s %v MiB", big.samples, big.rss)
	return nil
}
