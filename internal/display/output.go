// Package display is what wp shows on a terminal and how many commands
// share one: whole-line output from parallel commands (Output), a status
// line kept at the bottom of a terminal (Output.SetStatus, Ticker), and
// the publish counter of wp create (Bar).
package display

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// IsTerminal reports whether f (an io.Reader or io.Writer) is a terminal.
func IsTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// Output writes whole lines of many commands to one stdout and one stderr,
// so lines never interleave mid-line, and keeps a status line (a progress
// bar) at the bottom of a terminal stderr.
type Output struct {
	mu     sync.Mutex
	stdout io.Writer
	stderr io.Writer
	status string
}

// NewOutput returns an Output writing to stdout and stderr.
func NewOutput(stdout, stderr io.Writer) *Output {
	return &Output{stdout: stdout, stderr: stderr}
}

// write hands one line (or one line's pieces) on under the lock.
func (o *Output) write(toErr bool, pieces func(w io.Writer)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.status != "" {
		io.WriteString(o.stderr, "\r\033[K")
	}
	w := o.stdout
	if toErr {
		w = o.stderr
	}
	pieces(w)
	if o.status != "" {
		io.WriteString(o.stderr, o.status)
	}
}

// SetStatus replaces the status line ("" removes it).
func (o *Output) SetStatus(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	io.WriteString(o.stderr, "\r\033[K"+s)
	o.status = s
}

// Writer returns a LineWriter for one command's stdout (or stderr, toErr)
// that puts prefix before each of its lines.
func (o *Output) Writer(toErr bool, prefix string) *LineWriter {
	return &LineWriter{out: o, toErr: toErr, prefix: prefix}
}

// MaxLineInMemory is how much of one line a LineWriter holds in memory;
// the rest of a longer line waits in a temporary file, so memory stays
// bounded and the line is still handed on whole.
const MaxLineInMemory = 64 * 1024

// LineWriter buffers a command's output and hands it on a whole line at a
// time, each with the prefix. A line of any length stays whole: past
// MaxLineInMemory it is spilled to a temporary file until its newline
// comes.
type LineWriter struct {
	out    *Output
	toErr  bool
	prefix string
	buf    []byte
	spill  *os.File // the start of a long line, when it outgrew buf
	err    error    // the spill file could not be written: pass through
}

func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			break
		}
		w.add(p[:i+1])
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// add appends a piece of the current line.
func (w *LineWriter) add(p []byte) {
	if w.spill == nil && len(w.buf)+len(p) <= MaxLineInMemory {
		w.buf = append(w.buf, p...)
		return
	}
	if w.spill == nil && w.err == nil {
		f, err := os.CreateTemp("", "wp-line-*")
		if err == nil {
			os.Remove(f.Name()) // gone when closed
			w.spill = f
		} else {
			w.err = err
		}
	}
	if w.spill != nil {
		if len(w.buf) > 0 {
			_, w.err = w.spill.Write(w.buf)
			w.buf = w.buf[:0]
		}
		if w.err == nil {
			_, w.err = w.spill.Write(p)
		}
		if w.err == nil {
			return
		}
		// The disk refused: hand on what was spilled, then go on in
		// pieces (the line is cut, but nothing is lost).
		w.flushSpill()
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= MaxLineInMemory {
		w.out.write(w.toErr, func(out io.Writer) {
			out.Write([]byte(w.prefix))
			out.Write(w.buf)
			out.Write([]byte{'\n'})
		})
		w.buf = w.buf[:0]
	}
}

func (w *LineWriter) flushSpill() {
	f := w.spill
	w.spill = nil
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return
	}
	w.out.write(w.toErr, func(out io.Writer) {
		out.Write([]byte(w.prefix))
		io.Copy(out, f)
		out.Write([]byte{'\n'})
	})
}

// emit hands on the current line, which ends in a newline.
func (w *LineWriter) emit() {
	if w.spill != nil {
		f := w.spill
		w.spill = nil
		defer f.Close()
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			w.out.write(w.toErr, func(out io.Writer) {
				out.Write([]byte(w.prefix))
				io.Copy(out, f)
				out.Write(w.buf)
			})
			w.buf = w.buf[:0]
			return
		}
	}
	w.out.write(w.toErr, func(out io.Writer) {
		if w.prefix != "" {
			out.Write([]byte(w.prefix))
		}
		out.Write(w.buf)
	})
	w.buf = w.buf[:0]
}

// Flush hands on a last line that had no newline, with one added.
func (w *LineWriter) Flush() {
	if len(w.buf) > 0 || w.spill != nil {
		w.buf = append(w.buf, '\n')
		w.emit()
	}
}

// Bar draws "publishing 1234/10000 (12%)" on stderr when it is a terminal,
// at most ten times a second; elsewhere it prints nothing.
type Bar struct {
	w     io.Writer
	label string
	total int64
	on    bool
	mu    sync.Mutex
	last  int64 // unix ms of the last draw
	n     int64
	now   func() int64
}

// NewBar returns a Bar for total items.
func NewBar(w io.Writer, label string, total int64) *Bar {
	return &Bar{w: w, label: label, total: total, on: IsTerminal(w), now: nowMS}
}

// Set records that n items are done.
func (b *Bar) Set(n int) {
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n = int64(n)
	if t := b.now(); t-b.last >= 100 {
		b.last = t
		b.draw()
	}
}

func (b *Bar) draw() {
	pct := 0.0
	if b.total > 0 {
		pct = 100 * float64(b.n) / float64(b.total)
	}
	fmt.Fprintf(b.w, "\r%s %d/%d (%.0f%%)", b.label, b.n, b.total, pct)
}

// Done draws the last count and ends the line.
func (b *Bar) Done() {
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw()
	fmt.Fprintln(b.w)
}
