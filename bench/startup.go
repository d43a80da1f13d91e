package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ---------------------------------------------------------------------------
// 5. Start-up: what a wp process costs before it does anything.

// helloWorld builds a Go hello world the way wp is built (CGO_ENABLED=0),
// the floor any Go process pays.
func (e *env) helloWorld() (string, error) {
	dir := filepath.Join(e.tmp, "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build a hello world: %v\n%s", err, out)
	}
	return bin, nil
}

func (e *env) caseStartup(ctx context.Context) error {
	s := e.rep.section("startup", "5. Start-up",
		"Wall time from fork to exit, the variants interleaved one process of each in turn (with -old, an older wp binary's `--version` and `wp run` too). `wp --version` does nothing but start and print; a Go hello world built the same way (CGO_ENABLED=0) is the floor of any Go process. `wp run -- true` completes one part on Redis (no reduce); beside it, bare `true` and one Redis round trip (a PING from a client already connected, measured in the harness).")
	n := e.pick(60, 25)
	hello, err := e.helloWorld()
	if err != nil {
		return err
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	url := e.storeURL("Redis", "startup")
	const id = "startup"
	if err := createJob(ctx, url, id, int64(n)+10); err != nil {
		return err
	}
	helloRow := s.add(&row{name: "Go hello world", unit: "ms", command: hello})
	version := s.add(&row{name: "`wp --version`", unit: "ms", baseline: helloRow.name, command: "$WP --version",
		target: &target{text: "within 2× a Go hello world (issue 19)", met: func(r *row, s *section) (bool, bool) {
			return r.median() <= 2*s.find("Go hello world").median(), true
		}}})
	bare := s.add(&row{name: "bare `true`", unit: "ms", command: truePath})
	rtt := s.add(&row{name: "one Redis round trip (PING)", unit: "ms", command: "go-redis Ping from the harness, connected"})
	run := s.add(&row{name: "`wp run -- true` (Redis)", unit: "ms", baseline: bare.name,
		command: fmt.Sprintf("WP_PROGRESS=%s Subject=map Message='{\"jobid\":\"%s\",\"partid\":N}' $WP run -- true", redactTmp(url, e.tmp), id),
		target: &target{text: "within 3× bare `true` plus one Redis round trip (issue 19)", met: func(r *row, s *section) (bool, bool) {
			return r.median() <= 3*s.find("bare `true`").median()+s.find("one Redis round trip (PING)").median(), true
		}}})
	// With -old, the older wp's start-up and its wp run, interleaved with
	// this one's (on a job of its own, created the same way).
	var oldVersion, oldRun *row
	const oldID = "startup-old"
	if e.oldWP != "" {
		if err := createJob(ctx, url, oldID, int64(n)+10); err != nil {
			return err
		}
		oldVersion = s.add(&row{name: "`wp --version`, the older wp", unit: "ms", baseline: version.name, command: e.oldWP + " --version"})
		oldRun = s.add(&row{name: "`wp run -- true` (Redis), the older wp", unit: "ms", baseline: run.name,
			command: fmt.Sprintf("WP_PROGRESS=%s Subject=map Message='{\"jobid\":\"%s\",\"partid\":N}' %s run -- true", redactTmp(url, e.tmp), oldID, e.oldWP)})
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return err
	}
	rc := goredis.NewClient(opt)
	defer rc.Close()
	if err := rc.Ping(ctx).Err(); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		type variant struct {
			r *row
			p proc
		}
		vs := []variant{
			{helloRow, proc{args: []string{hello}}},
			{version, proc{args: []string{e.wp, "--version"}}},
			{bare, proc{args: []string{truePath}}},
			{run, proc{args: []string{e.wp, "run", "--", truePath}, env: []string{
				"WP_PROGRESS=" + url, "Subject=map", fmt.Sprintf(`Message={"jobid":%q,"partid":%d}`, id, i), "ApproximateReceiveCount=1"}}},
		}
		if e.oldWP != "" {
			vs = append(vs,
				variant{oldVersion, proc{args: []string{e.oldWP, "--version"}}},
				variant{oldRun, proc{args: []string{e.oldWP, "run", "--", truePath}, env: []string{
					"WP_PROGRESS=" + url, "Subject=map", fmt.Sprintf(`Message={"jobid":%q,"partid":%d}`, oldID, i), "ApproximateReceiveCount=1"}}})
		}
		for _, v := range vs {
			res, err := v.p.run()
			if err != nil {
				return err
			}
			v.r.samples = append(v.r.samples, float64(res.wall)/float64(time.Millisecond))
		}
		t0 := time.Now()
		if err := rc.Ping(ctx).Err(); err != nil {
			return err
		}
		rtt.samples = append(rtt.samples, float64(time.Since(t0))/float64(time.Millisecond))
	}
	version.extra = fmt.Sprintf("%.1f ms over the hello world", version.median()-helloRow.median())
	run.extra = fmt.Sprintf("%.1f ms over bare `true`", run.median()-bare.median())
	return nil
}
