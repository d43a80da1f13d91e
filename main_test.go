package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/wp-tools/wp/internal/snsfake"
	"github.com/wp-tools/wp/internal/testservers"
)

func TestMain(m *testing.M) {
	testscript.Main(cleanupAfter{m}, map[string]func(){
		"wp": main,
		// exitwith N: exit with code N.
		"exitwith": func() {
			n, _ := strconv.Atoi(os.Args[1])
			os.Exit(n)
		},
	})
}

// cleanupAfter removes the wp binary testservers.BuildWP built, once the
// tests have run (testscript.Main exits the process itself).
type cleanupAfter struct{ m *testing.M }

func (c cleanupAfter) Run() int {
	defer testservers.CleanupWP()
	return c.m.Run()
}

const testTopic = "arn:aws:sns:us-east-1:123456789012:wp-test"

// TestScripts runs testdata/scripts/*.txtar: the CLI as a user types it.
// Each script gets its own redis-server (WP_PROGRESS points at it), its own
// in-process SNS endpoint (AWS_ENDPOINT_URL), and WorkTopic.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/scripts",
		RequireExplicitExec: true,
		Setup:               setupScript,
		Cmds:                scriptCmds,
	})
}

func setupScript(env *testscript.Env) error {
	r, err := testservers.StartRedis()
	if err != nil {
		return err
	}
	env.Defer(r.Stop)
	sns := snsfake.New()
	url, err := sns.Start()
	if err != nil {
		return err
	}
	env.Defer(sns.Close)
	env.Values["sns"] = sns
	// testscript's own PATH (with wp on it) and TMPDIR stay.
	for _, kv := range testservers.WPEnv(env.WorkDir,
		"WP_PROGRESS="+r.URL,
		"REDIS_URL="+r.URL,
		"REDIS_ADDR="+r.Addr,
		"AWS_ENDPOINT_URL="+url,
		"WorkTopic="+testTopic,
		"WP_STORE_TIMEOUT=10s",
		"EXAMPLES="+filepath.Join(testservers.RepoRoot(), "examples"),
	) {
		k, v, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "TMPDIR" {
			env.Setenv(k, v)
		}
	}
	return nil
}

func snsOf(ts *testscript.TestScript) *snsfake.Server {
	return ts.Value("sns").(*snsfake.Server)
}

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// sns count SUBJECT N: exactly N messages with SUBJECT were published.
	// sns dump SUBJECT: print their bodies, sorted, one a line.
	// sns fail N: answer the next N requests with HTTP 500.
	// sns failsubject SUBJECT: answer every request carrying SUBJECT with 500.
	// sns failentries REGEXP: fail every batch entry whose body matches.
	// sns wait SUBJECT N: wait until N messages with SUBJECT were published.
	// sns waitrefused N: wait until failentries has refused N entries since
	// it was set. (An accepted message is counted when the fake takes it,
	// before wp has the reply; with --concurrency 1 a refused entry of the
	// next batch shows that wp has the previous batch's reply.)
	// sns heal: clear the faults, keep the messages.
	// sns reset: forget every message and fault.
	"sns": cmdSNS,
	// deliver [-dup K] [-j N] [-subject S] [-fail-job-on CODES] -- CMD...:
	// run `wp run -- CMD` once per published message of the subject (default
	// map), each K times, N processes at a time, in random order; fail if
	// any wp run exits other than 0.
	"deliver": cmdDeliver,
	// signal NAME: send signal NAME (TERM, INT, HUP, KILL) to every
	// background command.
	"signal": cmdSignal,
	// waitfile PATH: wait up to 20s for PATH to exist.
	"waitfile": cmdWaitFile,
	// setmessage SUBJECT N: set Message and Subject to the Nth (0-based,
	// in publishing order) published message of SUBJECT, as watchbot would.
	"setmessage": cmdSetMessage,
	// nopids FILE: every pid listed in FILE (one a line) is gone.
	"nopids": cmdNoPids,
	// dynalite: start an in-memory DynamoDB (dynalite) for this script and
	// point AWS_ENDPOINT_URL_DYNAMODB at it.
	"dynalite": cmdDynalite,
	// blackhole NAME: listen on a loopback port that accepts connections
	// and never answers; set NAME to its host:port.
	"blackhole": cmdBlackhole,
	// redispass PASSWORD: start a redis-server that requires PASSWORD and
	// point WP_PROGRESS at it (with the password in the URL).
	"redispass": cmdRedisPass,
	// rediscluster: start a real 3-master Redis Cluster for this script
	// and point WP_PROGRESS at its first node; CLUSTER_ADDRS lists every
	// node, space-separated.
	"rediscluster": cmdRedisCluster,
	// redisreplica NAME: start a replica of the script's redis-server,
	// wait for its first sync, and set NAME to its host:port.
	"redisreplica": cmdRedisReplica,
}

func cmdDynalite(ts *testscript.TestScript, neg bool, args []string) {
	srv, err := testservers.StartDynalite()
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(func() {
		if d := srv.Died(); d != "" {
			ts.Logf("%s", d) // shown with the script's failure it caused
		}
		srv.Stop()
	})
	ts.Setenv("AWS_ENDPOINT_URL_DYNAMODB", srv.URL)
}

// refusedCounts: each fake SNS server's count of entries refused by the
// current sns failentries.
var refusedCounts sync.Map

func cmdSNS(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: sns count|dump|fail|failsubject|reset ...")
	}
	s := snsOf(ts)
	switch args[0] {
	case "count":
		if len(args) != 3 {
			ts.Fatalf("usage: sns count SUBJECT N")
		}
		want, err := strconv.Atoi(args[2])
		ts.Check(err)
		got := s.Count(args[1])
		if (got == want) == neg {
			ts.Fatalf("published %d messages with Subject=%s, want %s%d", got, args[1], map[bool]string{true: "not ", false: ""}[neg], want)
		}
	case "dump":
		var bodies []string
		for _, m := range s.Messages() {
			if m.Subject == args[1] {
				if m.TopicArn != testTopic {
					ts.Fatalf("message published to %q, want %q", m.TopicArn, testTopic)
				}
				bodies = append(bodies, m.Body)
			}
		}
		sort.Strings(bodies)
		for _, b := range bodies {
			fmt.Fprintln(ts.Stdout(), b)
		}
	case "fail":
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		s.FailNext(n, 500)
	case "failsubject":
		s.FailSubject(args[1])
	case "failentries":
		// sns failentries REGEXP: answer every batch entry whose body
		// matches with a server error (retried, then given up on).
		re, err := regexp.Compile(args[1])
		ts.Check(err)
		refused := new(atomic.Int64)
		refusedCounts.Store(s, refused)
		s.FailEntries(func(_, body string) bool {
			if re.MatchString(body) {
				refused.Add(1)
				return true
			}
			return false
		})
	case "waitrefused":
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		v, ok := refusedCounts.Load(s)
		if !ok {
			ts.Fatalf("sns waitrefused: no sns failentries set")
		}
		refused := v.(*atomic.Int64)
		deadline := time.Now().Add(20 * time.Second)
		for refused.Load() < int64(n) {
			if time.Now().After(deadline) {
				ts.Fatalf("%d entries refused after 20s, want %d", refused.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "wait":
		// sns wait SUBJECT N: wait up to 20s for N messages of SUBJECT.
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		deadline := time.Now().Add(20 * time.Second)
		for s.Count(args[1]) < n {
			if time.Now().After(deadline) {
				ts.Fatalf("%d messages with Subject=%s after 20s, want %d", s.Count(args[1]), args[1], n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "heal":
		s.FailEntries(nil)
		s.FailSubject("")
		s.FailNext(0, 0)
	case "reset":
		s.Reset()
	default:
		ts.Fatalf("sns: unknown subcommand %q", args[0])
	}
}

func messagesOf(ts *testscript.TestScript, subject string) []snsfake.Message {
	var out []snsfake.Message
	for _, m := range snsOf(ts).Messages() {
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

func cmdSetMessage(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: setmessage SUBJECT N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	msgs := messagesOf(ts, args[0])
	// Publishing order within a batch run is not fixed: order by body.
	sort.Slice(msgs, func(i, j int) bool { return partOf(msgs[i].Body) < partOf(msgs[j].Body) })
	if n >= len(msgs) {
		ts.Fatalf("only %d messages with Subject=%s", len(msgs), args[0])
	}
	ts.Setenv("Message", msgs[n].Body)
	ts.Setenv("Subject", msgs[n].Subject)
}

func partOf(body string) int64 {
	var m struct {
		PartID int64 `json:"partid"`
		Batch  []struct {
			PartID int64 `json:"partid"`
		} `json:"batch"`
	}
	_ = json.Unmarshal([]byte(body), &m)
	if len(m.Batch) > 0 { // a batch message: its first part
		return m.Batch[0].PartID
	}
	return m.PartID
}

func cmdDeliver(ts *testscript.TestScript, neg bool, args []string) {
	dup, par, subject, failOn := 1, 4, "map", ""
	for len(args) > 0 && args[0] != "--" {
		if len(args) < 2 {
			ts.Fatalf("deliver: flag %s needs a value", args[0])
		}
		switch args[0] {
		case "-dup":
			dup, _ = strconv.Atoi(args[1])
		case "-j":
			par, _ = strconv.Atoi(args[1])
		case "-subject":
			subject = args[1]
		case "-fail-job-on":
			failOn = args[1]
		default:
			ts.Fatalf("deliver: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: deliver [flags] -- CMD...")
	}
	cmd := args[1:]
	var deliveries []snsfake.Message
	for _, m := range messagesOf(ts, subject) {
		for i := 0; i < dup; i++ {
			deliveries = append(deliveries, m)
		}
	}
	if len(deliveries) == 0 {
		ts.Fatalf("deliver: no %s messages were published", subject)
	}
	rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	wp, err := exec.LookPath("wp")
	ts.Check(err)
	var mu sync.Mutex
	var failures []string
	// A delivery that exits 75 (retry) is delivered again, with its
	// receive count increased, as watchbot would: on a loaded machine a
	// finisher can hold the reduce claim longer than wp run waits for it.
	pending := deliveries
	for receive := 1; len(pending) > 0; receive++ {
		var again []snsfake.Message
		work := make(chan snsfake.Message)
		var wg sync.WaitGroup
		for i := 0; i < par; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range work {
					argv := []string{"run"}
					if failOn != "" {
						argv = append(argv, "--fail-job-on", failOn)
					}
					argv = append(append(argv, "--"), cmd...)
					c := exec.Command(wp, argv...)
					c.Dir = ts.Getenv("WORK")
					c.Env = append(environ(ts), "Message="+m.Body, "Subject="+m.Subject, "MessageId="+m.MessageId, "ApproximateReceiveCount="+strconv.Itoa(receive))
					out, err := c.CombinedOutput()
					var ee *exec.ExitError
					switch {
					case errors.As(err, &ee) && ee.ExitCode() == exitRetry && receive < 5:
						mu.Lock()
						again = append(again, m)
						mu.Unlock()
					case err != nil:
						mu.Lock()
						failures = append(failures, fmt.Sprintf("wp run %s: %v\n%s", m.Body, err, out))
						mu.Unlock()
					}
				}
			}()
		}
		for _, m := range pending {
			work <- m
		}
		close(work)
		wg.Wait()
		pending = again
	}
	if len(failures) > 0 && !neg {
		ts.Fatalf("%d of %d deliveries failed; first:\n%s", len(failures), len(deliveries), failures[0])
	}
	if len(failures) == 0 && neg {
		ts.Fatalf("every delivery succeeded")
	}
	fmt.Fprintf(ts.Stdout(), "delivered %d messages\n", len(deliveries))
}

// environ is what of the script's environment a wp process it starts
// gets: the base every test's wp has (testservers.WPEnv), and the settings
// scripts give wp.
func environ(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range append(testservers.WPEnvKeys, "WP_PROGRESS", "ProgressTable", "WP_FAIL_JOB_ON", "WP_LOG_FORMAT", "WP_GRACE", "WP_REDUCE_LEASE", "WP_MAX_RECEIVES", "WP_JOBS", "WP_THROTTLE_WAIT",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "WorkTopic", "WP_STORE_TIMEOUT", "WORK") {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: signal TERM|INT|HUP|KILL")
	}
	sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP, "KILL": syscall.SIGKILL}[args[0]]
	if sig == 0 {
		ts.Fatalf("signal: unknown signal %q", args[0])
	}
	cmds := ts.BackgroundCmds()
	if len(cmds) == 0 {
		ts.Fatalf("signal: no background command")
	}
	for _, c := range cmds {
		if c.Process != nil {
			ts.Check(c.Process.Signal(sig))
		}
	}
}

func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	p := ts.MkAbs(args[0])
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 20s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdNoPids(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: nopids FILE")
	}
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil {
			continue
		}
		n++
		// Give the kernel a moment to reap a process that was just killed.
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if isZombie(pid) {
				break
			}
			if time.Now().After(deadline) {
				ts.Fatalf("process %d is still running", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n == 0 {
		ts.Fatalf("nopids: %s lists no pids", args[0])
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func cmdBlackhole(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: blackhole NAME")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	}()
	ts.Defer(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	ts.Setenv(args[0], ln.Addr().String())
}

func cmdRedisPass(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: redispass PASSWORD")
	}
	r, err := testservers.StartRedis("--requirepass", args[0])
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(r.Stop)
	ts.Setenv("WP_PROGRESS", "redis://:"+args[0]+"@"+r.Addr+"/0")
	ts.Setenv("REDIS_ADDR", r.Addr)
}

func cmdRedisCluster(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 0 {
		ts.Fatalf("usage: rediscluster")
	}
	c, err := testservers.StartRedisCluster(3, 0)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(c.Stop)
	ts.Setenv("WP_PROGRESS", c.URL)
	ts.Setenv("CLUSTER_ADDRS", strings.Join(c.Addrs, " "))
}

func cmdRedisReplica(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: redisreplica NAME")
	}
	host, port, _ := strings.Cut(ts.Getenv("REDIS_ADDR"), ":")
	r, err := testservers.StartRedis("--replicaof", host, port)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(r.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts.Check(testservers.WaitLinkUp(ctx, r.Addr))
	ts.Setenv(args[0], r.Addr)
}
