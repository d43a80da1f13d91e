package testservers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	wpOnce sync.Once
	wpBin  string
	wpErr  error
)

// BuildWP builds the wp command from this repository once per test process,
// as a release is built (CGO_ENABLED=0, the tags of goreleaser.yaml), into a temporary directory that
// CleanupWP removes, and returns its path. It is built without -race even
// when the tests are: tests start wp thousands of times, and a race-built
// wp takes about 45 ms to start against 8 ms. (testscript scripts run the
// test binary itself as wp, race-built or not.)
func BuildWP() (string, error) {
	wpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wp-bin-")
		if err != nil {
			wpErr = err
			return
		}
		bin := filepath.Join(dir, "wp")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-tags", "urfave_cli_no_docs", "-o", bin, ".")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			wpErr = fmt.Errorf("go build wp: %v\n%s", err, out)
			return
		}
		wpBin = bin
	})
	return wpBin, wpErr
}

// BuildWPT is BuildWP for a test: a build that fails fails the test.
func BuildWPT(t testing.TB) string {
	t.Helper()
	bin, err := BuildWP()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// CleanupWP removes the binary BuildWP built; a TestMain calls it after
// the tests.
func CleanupWP() {
	if wpBin != "" {
		os.RemoveAll(filepath.Dir(wpBin))
	}
}

// WPEnvKeys are the variables WPEnv sets.
var WPEnvKeys = []string{"PATH", "HOME", "XDG_STATE_HOME", "TMPDIR",
	"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"}

// WPEnv is the environment every wp process a test starts begins with, and
// nothing of the tester's own: the PATH, a HOME and an XDG state directory
// of its own under dir (so the default SQLite store is the test's), the
// temporary directory, and AWS settings that can reach only the test's own
// services (test credentials, us-east-1, no instance metadata; no
// AWS_PROFILE, no endpoint but those extra names). extra (KEY=VALUE) come
// last, and win.
func WPEnv(dir string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_STATE_HOME=" + filepath.Join(dir, "state"),
		"TMPDIR=" + os.TempDir(),
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
	}
	return append(env, extra...)
}

// Getenv is the value of key in env (KEY=VALUE, the last one winning), as a
// process started with env would see it.
func Getenv(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}
