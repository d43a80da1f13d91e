package display

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestLineWriter_LongLineStaysWhole: a line far over MaxLineInMemory,
// written in small pieces while another command writes short lines, comes
// out as one prefixed line with nothing inside it.
func TestLineWriter_LongLineStaysWhole(t *testing.T) {
	var stdout, stderr bytes.Buffer
	o := NewOutput(&stdout, &stderr)
	long := o.Writer(false, "[part 0] ")
	short := o.Writer(false, "[part 1] ")
	line := strings.Repeat("x", 5*MaxLineInMemory+17)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < len(line); i += 1000 {
			long.Write([]byte(line[i:min(i+1000, len(line))]))
		}
		long.Write([]byte("\nend\n"))
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			short.Write([]byte("short\n"))
		}
	}()
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if got, want := len(lines), 202; got != want {
		t.Fatalf("%d lines, want %d", got, want)
	}
	var found bool
	for _, l := range lines {
		switch l {
		case "[part 1] short", "[part 0] end":
		case "[part 0] " + line:
			found = true
		default:
			t.Fatalf("unexpected line of %d bytes: %.60q...", len(l), l)
		}
	}
	if !found {
		t.Error("the long line is not there whole")
	}
}

func TestLineWriter_FlushAddsNewline(t *testing.T) {
	var stdout bytes.Buffer
	o := NewOutput(&stdout, &stdout)
	w := o.Writer(true, "[reduce] ")
	w.Write([]byte("a\nno newline"))
	w.Flush()
	w.Flush()
	if got, want := stdout.String(), "[reduce] a\n[reduce] no newline\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestLineWriter_NoPrefix(t *testing.T) {
	var stdout bytes.Buffer
	o := NewOutput(&stdout, &stdout)
	w := o.Writer(false, "")
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n"))
	if got, want := stdout.String(), "one\ntwo\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}
