package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
)

// The test binary doubles as the helper process of the multi-process test
// and benchmark: with WP_SQLITE_HELPER set it runs helperMain instead of the
// tests.
func TestMain(m *testing.M) {
	if os.Getenv("WP_SQLITE_HELPER") != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func dbURL(path string) string {
	return (&url.URL{Scheme: "sqlite", Path: filepath.ToSlash(path)}).String()
}

func openTemp(t testing.TB) (*backends.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "progress.db")
	st, err := backends.Open(context.Background(), dbURL(path), 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st, path
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store {
		st, _ := openTemp(t)
		return st
	})
}

func TestParseURL(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url     string
		path    string        // want, when no error
		busy    time.Duration // want, when no error
		wantErr string        // substring of the error
	}{
		{url: "sqlite:///var/lib/wp/progress.db", path: "/var/lib/wp/progress.db", busy: DefaultBusyTimeout},
		{url: "sqlite://progress.db", path: filepath.Join(wd, "progress.db"), busy: DefaultBusyTimeout},
		{url: "sqlite://state/wp/progress.db", path: filepath.Join(wd, "state/wp/progress.db"), busy: DefaultBusyTimeout},
		{url: "sqlite:///tmp/a%20b.db", path: "/tmp/a b.db", busy: DefaultBusyTimeout},
		{url: "sqlite:///tmp/x/../p.db", path: "/tmp/p.db", busy: DefaultBusyTimeout},
		{url: "sqlite:///tmp/p.db?busy_timeout=30s", path: "/tmp/p.db", busy: 30 * time.Second},
		{url: "sqlite:///tmp/p.db?busy_timeout=1500ms", path: "/tmp/p.db", busy: 1500 * time.Millisecond},
		{url: "sqlite://", wantErr: "names no database file"},
		{url: "sqlite:///", wantErr: "names no database file"},
		{url: "sqlite:///tmp/dir/", wantErr: "names no database file"},
		{url: "sqlite:progress.db", wantErr: "two slashes"},
		{url: "sqlite:///tmp/p.db?mode=ro", wantErr: `unknown sqlite URL parameter "mode"`},
		{url: "sqlite:///tmp/p.db?busy_timeout=10s&cache=shared", wantErr: `unknown sqlite URL parameter "cache"`},
		{url: "sqlite:///tmp/p.db?busy_timeout=10", wantErr: "busy_timeout"},
		{url: "sqlite:///tmp/p.db?busy_timeout=-1s", wantErr: "busy_timeout"},
		{url: "sqlite:///tmp/p.db?busy_timeout=1s&busy_timeout=2s", wantErr: "more than once"},
		{url: "sqlite://user:secret@host/p.db", wantErr: "no user or password"},
		{url: "sqlite://host:99/p.db", wantErr: "no port"},
		{url: "sqlite:///tmp/p.db#frag", wantErr: "fragment"},
		{url: "sqlite:///tmp/what%3F.db", wantErr: "'?'"},
		{url: "redis:///tmp/p.db", wantErr: "not sqlite"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := parseURL(u)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("parseURL(%s) = %+v, want an error containing %q", tc.url, cfg, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("parseURL(%s) error = %q, want it to contain %q", tc.url, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseURL(%s): %v", tc.url, err)
			}
			if got, want := cfg.path, tc.path; got != want {
				t.Errorf("path = %q, want %q", got, want)
			}
			if got, want := cfg.busyTimeout, tc.busy; got != want {
				t.Errorf("busy timeout = %v, want %v", got, want)
			}
		})
	}
}

// An unknown parameter is refused before any file is created.
func TestOpen_UnknownParameter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	_, err := backends.Open(context.Background(), dbURL(path)+"?journal=off", 0)
	if err == nil || !strings.Contains(err.Error(), `"journal"`) {
		t.Fatalf("Open with ?journal=off: err = %v, want one naming the parameter", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Open left %s behind (stat err %v)", path, err)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/srv/state")
	if got, err := DefaultPath(); err != nil || got != "/srv/state/wp/progress.db" {
		t.Errorf("DefaultPath with XDG_STATE_HOME = %q, %v; want /srv/state/wp/progress.db", got, err)
	}
	if got, err := DefaultURL(); err != nil || got != "sqlite:///srv/state/wp/progress.db" {
		t.Errorf("DefaultURL = %q, %v; want sqlite:///srv/state/wp/progress.db", got, err)
	}
	for _, xdg := range []string{"", "relative/state"} {
		t.Setenv("XDG_STATE_HOME", xdg)
		t.Setenv("HOME", "/home/someone")
		if got, err := DefaultPath(); err != nil || got != "/home/someone/.local/state/wp/progress.db" {
			t.Errorf("DefaultPath with XDG_STATE_HOME=%q = %q, %v; want ~/.local/state/wp/progress.db", xdg, got, err)
		}
	}
	u, err := DefaultURL()
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseURL(pu)
	if err != nil || cfg.path != "/home/someone/.local/state/wp/progress.db" {
		t.Errorf("DefaultURL %s parses to %q, %v", u, cfg.path, err)
	}
}

func TestPermissions(t *testing.T) {
	for _, mask := range []int{0o000, 0o022, 0o277} {
		t.Run(fmt.Sprintf("umask_%03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			root := t.TempDir()
			path := filepath.Join(root, "a", "b", "progress.db")
			st, err := backends.Open(context.Background(), dbURL(path), 0)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer st.Close()
			// A write makes sure the -wal and -shm files exist.
			if err := st.CreateJob(context.Background(), backends.Job{ID: "perm", Total: 3}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Complete(context.Background(), "perm", 1); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				path string
				want os.FileMode
			}{
				{filepath.Join(root, "a"), 0o700},
				{filepath.Join(root, "a", "b"), 0o700},
				{path, 0o600},
				{path + "-wal", 0o600},
				{path + "-shm", 0o600},
			} {
				fi, err := os.Stat(c.path)
				if err != nil {
					t.Errorf("stat %s: %v", c.path, err)
					continue
				}
				if got := fi.Mode().Perm(); got != c.want {
					t.Errorf("%s has mode %03o, want %03o", strings.TrimPrefix(c.path, root), got, c.want)
				}
			}
		})
	}
}

// An existing database keeps its mode, and its sidecars are not made wider.
func TestPermissions_ExistingFileKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	st, err := backends.Open(context.Background(), dbURL(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateJob(context.Background(), backends.Job{ID: "j", Total: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o640); got != want {
			t.Errorf("%s mode = %03o, want %03o", filepath.Base(p), got, want)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "kept", Total: 5000, Metadata: []byte(`{"a": 1}`)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int64{4, 4097} {
		if _, err := st.Complete(ctx, "kept", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = backends.Open(ctx, dbURL(path), 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	s, err := st.Status(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Remaining, int64(4998); got != want {
		t.Errorf("Remaining after reopen = %d, want %d", got, want)
	}
	if got, want := string(s.Metadata), `{"a": 1}`; got != want {
		t.Errorf("Metadata after reopen = %s, want %s verbatim", got, want)
	}
	c, err := st.Complete(ctx, "kept", 4097)
	if err != nil || !c.Duplicate {
		t.Errorf("Complete(4097) after reopen = %+v, %v; want Duplicate", c, err)
	}
}

func TestOpen_RefusesOtherSchemas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	newer := filepath.Join(dir, "newer.db")
	st, err := backends.Open(ctx, dbURL(newer), 0)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	rawExec(t, newer, "PRAGMA user_version = 99")
	if _, err := backends.Open(ctx, dbURL(newer), 0); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a schema version 99 database: err = %v, want one saying it is newer", err)
	}

	foreign := filepath.Join(dir, "foreign.db")
	rawExec(t, foreign, "CREATE TABLE customers (name TEXT)")
	if _, err := backends.Open(ctx, dbURL(foreign), 0); err == nil || !strings.Contains(err.Error(), "not a wp progress database") {
		t.Errorf("Open of a foreign database: err = %v, want one saying it is not wp's", err)
	}
}

func rawExec(t *testing.T, path, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// helper is one running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	stderr *bytes.Buffer
}

// helperResult is what a helper reports on its last line.
type helperResult struct {
	finishers, firsts, duplicates int64
	elapsed                       time.Duration
}

// startHelpers starts n helper processes that complete parts of jobID in the
// database at path. With share false each completes every part (in its own
// order); with share true helper i completes the parts p with p%n == i. The
// helpers open the store, say "ready" and wait for their stdin to close, so
// all of them start completing at once.
func startHelpers(tb testing.TB, path, jobID string, total int64, n int, share bool) []*helper {
	tb.Helper()
	return startHelperMode(tb, "complete", path, jobID, total, n, share)
}

func startHelperMode(tb testing.TB, mode, path, jobID string, total int64, n int, share bool) []*helper {
	tb.Helper()
	hs := make([]*helper, n)
	for i := range hs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"WP_SQLITE_HELPER="+mode,
			"WP_SQLITE_URL="+dbURL(path),
			"WP_SQLITE_JOB="+jobID,
			"WP_SQLITE_TOTAL="+strconv.FormatInt(total, 10),
			"WP_SQLITE_WORKER="+strconv.Itoa(i),
			"WP_SQLITE_WORKERS="+strconv.Itoa(n),
			"WP_SQLITE_SHARE="+strconv.FormatBool(share),
		)
		h := &helper{cmd: cmd, stderr: new(bytes.Buffer)}
		cmd.Stderr = h.stderr
		var err error
		if h.stdin, err = cmd.StdinPipe(); err != nil {
			tb.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		h.out = bufio.NewScanner(stdout)
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start helper %d: %v", i, err)
		}
		tb.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		hs[i] = h
	}
	for i, h := range hs {
		if !h.out.Scan() || h.out.Text() != "ready" {
			h.stdin.Close()
			h.cmd.Wait()
			tb.Fatalf("helper %d did not get ready: %q %v; stderr:\n%s", i, h.out.Text(), h.out.Err(), h.stderr)
		}
	}
	return hs
}

// releaseLines lets the helpers go and returns the last line each printed.
// A helper that exits non-zero fails the test.
func releaseLines(tb testing.TB, hs []*helper) []string {
	tb.Helper()
	for _, h := range hs {
		h.stdin.Close()
	}
	lines := make([]string, len(hs))
	var failed bool
	for i, h := range hs {
		for h.out.Scan() {
			lines[i] = h.out.Text()
		}
		if err := h.cmd.Wait(); err != nil {
			tb.Errorf("helper %d: %v; stderr:\n%s", i, err, h.stderr)
			failed = true
		}
	}
	if failed {
		tb.FailNow()
	}
	return lines
}

// release lets the complete helpers go and collects their results.
func release(tb testing.TB, hs []*helper) []helperResult {
	tb.Helper()
	lines := releaseLines(tb, hs)
	res := make([]helperResult, len(hs))
	var failed bool
	for i, line := range lines {
		h := hs[i]
		var r helperResult
		var ns int64
		if _, err := fmt.Sscanf(line, "finishers=%d firsts=%d duplicates=%d elapsed_ns=%d",
			&r.finishers, &r.firsts, &r.duplicates, &ns); err != nil {
			tb.Errorf("helper %d printed %q: %v; stderr:\n%s", i, line, err, h.stderr)
			failed = true
			continue
		}
		r.elapsed = time.Duration(ns)
		res[i] = r
	}
	if failed {
		tb.FailNow()
	}
	return res
}

// helperMain runs in a helper process. Any error, SQLITE_BUSY included, makes
// it exit 1.
func helperMain() int {
	env := func(k string) string { return os.Getenv("WP_SQLITE_" + k) }
	total, err1 := strconv.ParseInt(env("TOTAL"), 10, 64)
	worker, err2 := strconv.Atoi(env("WORKER"))
	workers, err3 := strconv.Atoi(env("WORKERS"))
	share, err4 := strconv.ParseBool(env("SHARE"))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		fmt.Fprintln(os.Stderr, "helper: bad environment:", err)
		return 2
	}
	ctx := context.Background()
	if env("HELPER") == "create" {
		return helperCreate(ctx, env("URL"), env("JOB"), total)
	}
	st, err := backends.Open(ctx, env("URL"), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	defer st.Close()
	var parts []int64
	switch {
	case share:
		for p := int64(worker); p < total; p += int64(workers) {
			parts = append(parts, p)
		}
	case worker == 0: // ascending
		for p := int64(0); p < total; p++ {
			parts = append(parts, p)
		}
	case worker == 1: // descending
		for p := total - 1; p >= 0; p-- {
			parts = append(parts, p)
		}
	default: // shuffled, differently per worker
		r := rand.New(rand.NewPCG(uint64(worker), 42))
		for _, p := range r.Perm(int(total)) {
			parts = append(parts, int64(p))
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // wait for the parent's go
	start := time.Now()
	var finishers, firsts, dups int64
	giveUp := env("HELPER") == "giveup" // parts p%3 == 0 are given up
	for _, p := range parts {
		var c backends.Completion
		var err error
		if giveUp && p%3 == 0 {
			c, err = st.GiveUp(ctx, env("JOB"), p, backends.GiveUpInfo{ExitCode: 1, ReceiveCount: 10})
		} else {
			c, err = st.Complete(ctx, env("JOB"), p)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "helper %d: %v\n", worker, err)
			return 1
		}
		if c.Finisher {
			finishers++
		}
		if c.Duplicate {
			dups++
		} else {
			firsts++
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("finishers=%d firsts=%d duplicates=%d elapsed_ns=%d\n", finishers, firsts, dups, elapsed.Nanoseconds())
	return 0
}

// helperCreate waits for the go, then opens the (new) database and tries to
// create the job; it prints created=1 or created=0 (ErrExists).
func helperCreate(ctx context.Context, dbURL, jobID string, total int64) int {
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	st, err := backends.Open(ctx, dbURL, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	defer st.Close()
	err = st.CreateJob(ctx, backends.Job{ID: jobID, Total: total})
	switch {
	case err == nil:
		fmt.Println("created=1")
	case errors.Is(err, backends.ErrExists):
		fmt.Println("created=0")
	default:
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// TestMultiProcess_CreateFresh: six processes open one database that does
// not exist yet at the same moment (racing to create the file, switch it to
// WAL and create the schema) and all create the same job: all open without
// error and exactly one creates the job.
func TestMultiProcess_CreateFresh(t *testing.T) {
	const procs = 6
	path := filepath.Join(t.TempDir(), "sub", "fresh.db")
	lines := releaseLines(t, startHelperMode(t, "create", path, "race", 7, procs, false))
	created := 0
	for i, l := range lines {
		switch l {
		case "created=1":
			created++
		case "created=0":
		default:
			t.Errorf("helper %d printed %q", i, l)
		}
	}
	if created != 1 {
		t.Errorf("%d of %d processes created the job, want exactly 1", created, procs)
	}
	st, err := backends.Open(context.Background(), dbURL(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s, err := st.Status(context.Background(), "race"); err != nil || s.Total != 7 || s.Remaining != 7 {
		t.Errorf("Status = %+v, %v; want a 7-part job with 7 pending", s, err)
	}
}

// TestMultiProcess_ExactlyOnce: six real processes each complete every part
// of one job, in different orders, at the same time. Exactly one completion
// over all of them is the finisher, and each part is recorded exactly once.
func TestMultiProcess_ExactlyOnce(t *testing.T) {
	const total, procs = 600, 6
	ctx := context.Background()
	st, path := openTemp(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "mp", Total: total}); err != nil {
		t.Fatal(err)
	}
	res := release(t, startHelpers(t, path, "mp", total, procs, false))
	var finishers, firsts, dups int64
	for i, r := range res {
		t.Logf("helper %d: finisher %d times, first for %d parts, duplicate %d times, %v",
			i, r.finishers, r.firsts, r.duplicates, r.elapsed.Round(time.Millisecond))
		finishers += r.finishers
		firsts += r.firsts
		dups += r.duplicates
	}
	if got, want := finishers, int64(1); got != want {
		t.Errorf("finishers over %d processes = %d, want exactly %d", procs, got, want)
	}
	if got, want := firsts, int64(total); got != want {
		t.Errorf("first completions over all processes = %d, want %d (each part recorded once)", got, want)
	}
	if got, want := dups, int64(total*(procs-1)); got != want {
		t.Errorf("duplicates = %d, want %d", got, want)
	}
	s, err := st.Status(ctx, "mp")
	if err != nil {
		t.Fatal(err)
	}
	if s.Remaining != 0 || s.State() != backends.StateComplete {
		t.Errorf("status after all processes = %+v, want complete", s)
	}
	var left int
	if err := st.Pending(ctx, "mp", func(int64) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("Pending lists %d parts after every part was completed", left)
	}
}

// TestMultiProcess_GiveUp: as TestMultiProcess_ExactlyOnce, with a third
// of the parts given up instead of completed by every process: exactly one
// call over all processes, Complete or GiveUp, is the finisher, and each
// part ends exactly once.
func TestMultiProcess_GiveUp(t *testing.T) {
	const total, procs = 600, 6
	ctx := context.Background()
	st, path := openTemp(t)
	if err := st.CreateJob(ctx, backends.Job{ID: "mpg", Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}}); err != nil {
		t.Fatal(err)
	}
	res := release(t, startHelperMode(t, "giveup", path, "mpg", total, procs, false))
	var finishers, firsts int64
	for _, r := range res {
		finishers += r.finishers
		firsts += r.firsts
	}
	if got, want := finishers, int64(1); got != want {
		t.Errorf("finishers over %d processes = %d, want exactly %d", procs, got, want)
	}
	if got, want := firsts, int64(total); got != want {
		t.Errorf("first events over all processes = %d, want %d (each part ended once)", got, want)
	}
	s, err := st.Status(ctx, "mpg")
	if err != nil {
		t.Fatal(err)
	}
	if s.Remaining != 0 || s.GivenUp != total/3 || s.State() != backends.StateComplete {
		t.Errorf("status after all processes = %+v, want complete with %d given up", s, total/3)
	}
}

func BenchmarkComplete(b *testing.B) {
	ctx := context.Background()
	st, _ := openTemp(b)
	if err := st.CreateJob(ctx, backends.Job{ID: "bench", Total: int64(b.N)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Complete(ctx, "bench", int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComplete_4Processes: four processes complete disjoint quarters of
// one b.N-part job on one database. completions/s is b.N over the slowest
// helper's time.
func BenchmarkComplete_4Processes(b *testing.B) {
	const procs = 4
	ctx := context.Background()
	st, path := openTemp(b)
	if err := st.CreateJob(ctx, backends.Job{ID: "bench", Total: int64(b.N)}); err != nil {
		b.Fatal(err)
	}
	hs := startHelpers(b, path, "bench", int64(b.N), procs, true)
	b.ResetTimer()
	res := release(b, hs)
	b.StopTimer()
	var slowest time.Duration
	var firsts int64
	for _, r := range res {
		slowest = max(slowest, r.elapsed)
		firsts += r.firsts
	}
	if firsts != int64(b.N) {
		b.Fatalf("helpers recorded %d parts, want %d", firsts, b.N)
	}
	b.ReportMetric(float64(b.N)/slowest.Seconds(), "completions/s")
}

func BenchmarkCreateJob_1M(b *testing.B) {
	ctx := context.Background()
	st, _ := openTemp(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := st.CreateJob(ctx, backends.Job{ID: fmt.Sprintf("big-%d", i), Total: 1_000_000}); err != nil {
			b.Fatal(err)
		}
	}
}

// While another connection holds the write lock past busy_timeout, Complete
// gives up after a bounded number of attempts with an error that says so,
// records nothing, and works again once the lock is gone.
func TestBusy_BoundedRetry(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "busy.db")
	st, err := backends.Open(ctx, dbURL(path)+"?busy_timeout=5ms", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateJob(ctx, backends.Job{ID: "b", Total: 2}); err != nil {
		t.Fatal(err)
	}
	release := holdWriteLock(t, path)
	_, err = st.Complete(ctx, "b", 0)
	if err == nil || !isBusy(err) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Complete while another connection holds the write lock: err = %v, want a busy error", err)
	}
	// Reads still work under WAL while the writer holds its lock.
	if s, err := st.Status(ctx, "b"); err != nil || s.Remaining != 2 {
		t.Errorf("Status during the lock = %+v, %v; want 2 remaining", s, err)
	}
	release()
	c, err := st.Complete(ctx, "b", 0)
	if err != nil || c.Duplicate {
		t.Fatalf("Complete after the lock was released = %+v, %v; want a first completion", c, err)
	}
}

// Pending across more shard rows than one page holds, with completed parts
// at shard edges and in the short last shard.
func TestPending_ManyShards(t *testing.T) {
	ctx := context.Background()
	st, _ := openTemp(t)
	const shards = 2*pendingPage + 5
	const total = shards*partsPerShard + 17 // a short last shard
	if err := st.CreateJob(ctx, backends.Job{ID: "wide", Total: total}); err != nil {
		t.Fatal(err)
	}
	done := map[int64]bool{}
	for sh := int64(0); sh <= shards; sh++ {
		// first, last and a middle part of every shard that has them
		for _, p := range []int64{sh * partsPerShard, sh*partsPerShard + 7*sh%partsPerShard, sh*partsPerShard + partsPerShard - 1} {
			if p >= total || done[p] {
				continue
			}
			if _, err := st.Complete(ctx, "wide", p); err != nil {
				t.Fatal(err)
			}
			done[p] = true
		}
	}
	prev, n := int64(-1), int64(0)
	err := st.Pending(ctx, "wide", func(p int64) error {
		if p <= prev || p >= total {
			return fmt.Errorf("Pending gave %d after %d (total %d)", p, prev, total)
		}
		// every id between prev and p must have been completed
		for q := prev + 1; q < p; q++ {
			if !done[q] {
				return fmt.Errorf("Pending skipped pending part %d", q)
			}
		}
		if done[p] {
			return fmt.Errorf("Pending gave completed part %d", p)
		}
		prev = p
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n, total-int64(len(done)); got != want {
		t.Errorf("Pending gave %d parts, want %d", got, want)
	}
	s, err := st.Status(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Remaining, total-int64(len(done)); got != want {
		t.Errorf("Remaining = %d, want %d", got, want)
	}
}

// TestComplete_TimeoutWhileLocked: a Complete waiting for the write lock
// (another connection holds it) ends when the store's timeout does, not
// when the much longer busy_timeout would: its statements run without the
// context (see Complete), but the wait for the lock does not.
func TestComplete_TimeoutWhileLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "progress.db")
	d, err := Open(ctx, &url.URL{Scheme: "sqlite", Path: filepath.ToSlash(path), RawQuery: "busy_timeout=60s"})
	if err != nil {
		t.Fatal(err)
	}
	st := backends.New(d, 500*time.Millisecond)
	defer st.Close()
	if err := st.CreateJob(ctx, backends.Job{ID: "locked", Total: 2}); err != nil {
		t.Fatal(err)
	}
	release := holdWriteLock(t, path)
	start := time.Now()
	_, err = st.Complete(ctx, "locked", 0)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Complete succeeded while another connection held the write lock")
	}
	t.Logf("Complete while locked: %v after %v", err, took)
	if took > 20*time.Second {
		t.Errorf("Complete took %v: the 500ms store timeout did not end the wait for the lock (busy_timeout is 60s)", took)
	}
	release()
	if c, err := st.Complete(ctx, "locked", 0); err != nil || c.Duplicate {
		t.Fatalf("Complete after the lock was released = %+v, %v; want a first completion (the timed-out one wrote nothing)", c, err)
	}
}

// holdWriteLock takes the write lock of the database at path on a
// connection of its own (BEGIN IMMEDIATE), as another process would, until
// release is called (or the test ends).
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	ctx := context.Background()
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(ctx)
	if err != nil {
		other.Close()
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		other.Close()
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Error(err)
			}
			conn.Close()
			other.Close()
		})
	}
	t.Cleanup(release)
	return release
}
