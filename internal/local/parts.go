package local

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wp-tools/wp/backends/sqlite"
	"github.com/wp-tools/wp/internal/statedir"
)

// PartsPath is where the runner keeps job jobID's map messages: beside the
// SQLite database for a sqlite:// store (sqlite:///x/progress.db keeps them
// in /x/progress.db.parts/), else in the state directory's parts/, so that
// an interrupted run resumes with no input.
func PartsPath(storeURL, jobID string) (string, error) {
	if strings.HasPrefix(storeURL, "sqlite:") {
		db, err := sqlite.Path(storeURL)
		if err != nil {
			return "", err
		}
		return filepath.Join(db+".parts", jobID+".ndjson"), nil
	}
	dir, err := statedir.Dir()
	if err != nil {
		return "", fmt.Errorf("find a place for the parts file: %w", err)
	}
	return filepath.Join(dir, "parts", jobID+".ndjson"), nil
}

// PartsFile is a parts file being written beside its final path: Keep puts
// it there, Discard removes it. A parts file is only left behind for a job
// that exists, so it is kept once the job is created.
type PartsFile struct {
	tmp  *os.File
	path string
}

// CreateParts writes the map messages next yields, one a line, to a
// temporary file beside path.
func CreateParts(path string, next func() (body string, ok bool, err error)) (*PartsFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("parts file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".parts-*")
	if err != nil {
		return nil, fmt.Errorf("parts file: %w", err)
	}
	p := &PartsFile{tmp: tmp, path: path}
	w := bufio.NewWriterSize(tmp, 256*1024)
	for {
		body, ok, err := next()
		if err != nil {
			p.Discard()
			return nil, err
		}
		if !ok {
			break
		}
		w.WriteString(body)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		p.Discard()
		return nil, fmt.Errorf("parts file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("parts file: %w", err)
	}
	return p, nil
}

// Keep puts the file in place. With keepExisting, a file already there (the
// one the job was created with, on a re-run) is kept instead.
func (p *PartsFile) Keep(keepExisting bool) error {
	if keepExisting {
		if _, err := os.Stat(p.path); err == nil {
			os.Remove(p.tmp.Name())
			return nil
		}
	}
	if err := os.Rename(p.tmp.Name(), p.path); err != nil {
		os.Remove(p.tmp.Name())
		return fmt.Errorf("parts file: %w", err)
	}
	return nil
}

// Discard removes the file; after Keep it does nothing.
func (p *PartsFile) Discard() {
	p.tmp.Close()
	os.Remove(p.tmp.Name())
}
