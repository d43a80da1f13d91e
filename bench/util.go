package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// lockVersion is the version package-lock.json in dir pins for path
// ("node_modules/bullmq").
func lockVersion(dir, path string) string {
	b, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return "unknown"
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if json.Unmarshal(b, &lock) != nil {
		return "unknown"
	}
	if p, ok := lock.Packages[path]; ok {
		return p.Version
	}
	return "unknown"
}

func commandOutput(args ...string) (string, error) {
	b, err := exec.Command(args[0], args[1:]...).Output()
	return strings.TrimSpace(string(b)), err
}
