// Command bench measures wp beside the tools its users run today, on this
// machine, in one run, and writes BENCHMARKS.md:
//
//	go run ./bench [-quick] [-out BENCHMARKS.md]
//
// It builds wp (CGO_ENABLED=0), installs the peers with npm ci from
// bench/package-lock.json when bench/node_modules is missing (and dynalite
// from the repository's package-lock.json), starts its own redis-server,
// dynalite and in-process SNS endpoint on loopback, runs every case several
// times and writes medians, min-max, ratios to the baseline measured in the
// same run, the machine and the commands. No figure in BENCHMARKS.md is typed
// by hand: everything in it is measured by this run, except the targets
// (taken from the issues) and the prose in bench/notes.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wp-tools/wp/internal/snsfake"
	"github.com/wp-tools/wp/internal/testservers"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == sqliteWorkerArg {
		os.Exit(sqliteWorker(os.Args[2:]))
	}
	quick := flag.Bool("quick", false, "fewer runs and smaller sizes (about a minute or two)")
	out := flag.String("out", "", "where to write the report (default: BENCHMARKS.md in the repository root)")
	only := flag.String("only", "", "run only the sections whose key matches this regexp (overhead, throughput, cluster, create, local, startup, batch, reads); for development, the report says so")
	old := flag.String("old", "", "an older wp binary whose reads the reads section measures beside this one's")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	oldWP = *old
	if err := run(*quick, *out, *only); err != nil {
		log.Fatal(err)
	}
}

// env is everything the cases share.
type env struct {
	quick      bool
	root       string // repository root
	tmp        string
	wp         string // the built binary
	node       string
	redis      *testservers.Server
	dyn        *testservers.Server
	sns        *snsfake.Server
	snsURL     string
	table      string
	childEnv   []string
	rep        *report
	bullCreate map[int64][]bullRun
	oldWP      string // -old
}

// oldWP is the -old flag.
var oldWP string

func run(quick bool, out, only string) error {
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(root, "BENCHMARKS.md")
	}
	var onlyRE *regexp.Regexp
	if only != "" {
		if onlyRE, err = regexp.Compile(only); err != nil {
			return fmt.Errorf("-only: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "wp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	e := &env{quick: quick, root: root, tmp: tmp, rep: newReport(quick), oldWP: oldWP}
	if e.node, err = exec.LookPath("node"); err != nil {
		return errors.New("node not found: install Node.js and npm (the peers and dynalite are npm packages)")
	}
	if timeBin, err = exec.LookPath("time"); err != nil {
		return errors.New("GNU time not found: install it (Debian/Ubuntu: apt-get install -y time); it measures each process's peak RSS")
	}
	log.Printf("building wp")
	if e.wp, err = testservers.BuildWP(); err != nil {
		return err
	}
	defer testservers.CleanupWP()
	if err := npmCI(root, "dynalite"); err != nil {
		return err
	}
	if err := npmCI(filepath.Join(root, "bench"), "bullmq"); err != nil {
		return err
	}

	log.Printf("starting redis-server, dynalite and the SNS endpoint")
	if e.redis, err = testservers.StartRedis(); err != nil {
		return err
	}
	defer e.redis.Stop()
	if e.dyn, err = testservers.StartDynalite(); err != nil {
		return err
	}
	defer e.dyn.Stop()
	e.sns = snsfake.New()
	if e.snsURL, err = e.sns.Start(); err != nil {
		return err
	}
	defer e.sns.Close()
	if err := e.setEnv(); err != nil {
		return err
	}

	sections := []struct {
		key string
		fn  func(context.Context) error
	}{
		{"overhead", e.caseOverhead},
		{"throughput", e.caseThroughput},
		{"cluster", e.caseCluster},
		{"create", e.caseCreate},
		{"local", e.caseLocal},
		{"startup", e.caseStartup},
		{"batch", e.caseBatch},
		{"reads", e.caseReads},
	}
	ctx := context.Background()
	for _, s := range sections {
		if onlyRE != nil && !onlyRE.MatchString(s.key) {
			e.rep.skippedSections = append(e.rep.skippedSections, s.key)
			continue
		}
		t0 := time.Now()
		log.Printf("case %s", s.key)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("case %s: %w", s.key, err)
		}
		e.rep.sectionTime[s.key] = time.Since(t0)
		log.Printf("case %s took %.0f s", s.key, time.Since(t0).Seconds())
	}
	e.rep.total = time.Since(start)
	cmdline := "go run ./bench"
	if quick {
		cmdline += " -quick"
	}
	if only != "" {
		cmdline += " -only '" + only + "'"
	}
	if oldWP != "" {
		cmdline += " -old OLDWP"
	}
	notes, _ := os.ReadFile(filepath.Join(root, "bench", "notes.md"))
	if err := e.rep.write(out, cmdline, e.machine(), string(notes)); err != nil {
		return err
	}
	log.Printf("wrote %s in %.0f s", out, time.Since(start).Seconds())
	return nil
}

// setEnv points the AWS SDKs (wp's and the Node library's) at dynalite and
// the SNS endpoint, for the children and for this process.
func (e *env) setEnv() error {
	e.table = "wp-bench"
	kv := []string{
		"AWS_ACCESS_KEY_ID=bench",
		"AWS_SECRET_ACCESS_KEY=bench",
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_SNS=" + e.snsURL,
		"AWS_ENDPOINT_URL_DYNAMODB=" + e.dyn.URL,
		"DynamoDbEndpoint=" + e.dyn.URL,
		"ProgressTable=arn:aws:dynamodb:us-east-1:000000000000:table/" + e.table,
		"WorkTopic=arn:aws:sns:us-east-1:000000000000:wp-bench",
		"AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1",
		"REDIS_HOST=" + strings.Split(e.redis.Addr, ":")[0],
		"REDIS_PORT=" + e.redis.Addr[strings.LastIndexByte(e.redis.Addr, ':')+1:],
		"XDG_STATE_HOME=" + filepath.Join(e.tmp, "state"),
	}
	for _, v := range []string{"WP_PROGRESS", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"} {
		os.Unsetenv(v)
	}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	e.childEnv = nil // os.Environ() now carries everything
	return e.createTable()
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/wp-tools/wp\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run go run ./bench inside the wp repository")
		}
		dir = parent
	}
}

// npmCI runs npm ci in dir when node_modules/<probe> is missing.
func npmCI(dir, probe string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", probe)); err == nil {
		return nil
	}
	log.Printf("npm ci in %s", dir)
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %v (needs Node.js and npm, and the npm registry)\n%s", dir, err, lastLines(string(b), 10))
	}
	return nil
}
