package testservers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Legacy is how tests run the predecessors' own code against a progress
// table: watchbot-progress-py (unmodified modules, on PYTHONPATH, with
// Debian's boto3) and the Node library @mapbox/watchbot-progress (from npm,
// pinned in package.json), each through its driver script in
// testdata/legacy.
type Legacy struct {
	Python     string // the python3 that has boto3
	PyLibrary  string // the directory holding watchbot_progress
	PyDriver   string
	Node       string
	NodeDriver string
}

// PyLibraryDir is where the Python library is expected: shared/ beside the
// repository (CI copies it there), or WP_TEST_PY_LIBRARY.
func PyLibraryDir() string {
	if d := os.Getenv("WP_TEST_PY_LIBRARY"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "..", "shared", "reference", "watchbot-progress-py")
}

var (
	legacyOnce sync.Once
	legacy     *Legacy
	legacyErr  error
)

// FindLegacy checks, once per process, that python3 with boto3, the Python
// library, node and the npm-installed Node library are all there, and says
// what to install when one is not.
func FindLegacy() (*Legacy, error) {
	legacyOnce.Do(func() { legacy, legacyErr = findLegacy() })
	return legacy, legacyErr
}

func findLegacy() (*Legacy, error) {
	root := RepoRoot()
	l := &Legacy{
		PyLibrary:  PyLibraryDir(),
		PyDriver:   filepath.Join(root, "testdata", "legacy", "driver.py"),
		NodeDriver: filepath.Join(root, "testdata", "legacy", "driver.js"),
	}
	var problems []string
	// Debian's boto3 is installed for the system python3; a python3 earlier
	// in PATH (pyenv, a virtualenv) may not have it.
	for _, p := range []string{os.Getenv("WP_TEST_PYTHON"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			if exec.Command(path, "-c", "import boto3").Run() == nil {
				l.Python = path
				break
			}
		}
	}
	if l.Python == "" {
		problems = append(problems, "python3 with boto3 not found: apt-get install -y python3-boto3 (or set WP_TEST_PYTHON to a python3 that has boto3)")
	}
	if _, err := os.Stat(filepath.Join(l.PyLibrary, "watchbot_progress", "backends", "dynamodb.py")); err != nil {
		problems = append(problems, fmt.Sprintf("the Python library watchbot-progress-py is not at %s: put a copy of shared/ beside the repository (or set WP_TEST_PY_LIBRARY to the directory holding watchbot_progress)", l.PyLibrary))
	}
	node, err := exec.LookPath("node")
	if err != nil {
		problems = append(problems, "node not found: install Node.js (apt-get install -y nodejs npm), then run `npm ci` in the repository root")
	}
	l.Node = node
	if _, err := os.Stat(filepath.Join(root, "node_modules", "@mapbox", "watchbot-progress", "lib", "progress.js")); err != nil {
		problems = append(problems, "the Node library @mapbox/watchbot-progress is not installed: run `npm ci` in the repository root")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return l, nil
}
