package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unicode/utf8"

	"github.com/wp-tools/wp/internal/publish"
	"github.com/wp-tools/wp/internal/text"
	"github.com/wp-tools/wp/internal/worker"
)

// lineError is bad input with the line it was found on.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// ndjsonReader reads NDJSON one line at a time with bounded memory: a line
// longer than maxLine is reported (and skipped) without being held whole.
type ndjsonReader struct {
	r       *bufio.Reader
	line    int
	maxLine int
	buf     []byte
}

func newNDJSONReader(r io.Reader, maxLine int) *ndjsonReader {
	return &ndjsonReader{r: bufio.NewReaderSize(r, 64*1024), maxLine: maxLine}
}

// errLineTooLong is returned (wrapped in a lineError) for an over-long line.
var errLineTooLong = errors.New("line too long")

// Next returns the next non-blank line, trimmed, and its 1-based number.
// It returns io.EOF at the end. The returned slice is valid until the next
// call.
func (n *ndjsonReader) Next() ([]byte, int, error) {
	for {
		n.buf = n.buf[:0]
		n.line++
		tooLong := false
		for {
			chunk, err := n.r.ReadSlice('\n')
			if !tooLong {
				if len(n.buf)+len(chunk) > n.maxLine+2 { // +2 for "\r\n"
					tooLong = true
					n.buf = n.buf[:0]
				} else {
					n.buf = append(n.buf, chunk...)
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(n.buf) == 0 && !tooLong && len(chunk) == 0 {
					return nil, n.line, io.EOF
				}
				break
			}
			if err != nil {
				return nil, n.line, fmt.Errorf("read input: %w", err)
			}
			break
		}
		if tooLong {
			return nil, n.line, &lineError{n.line, fmt.Errorf("%w: a part must make a message of at most %d bytes (SNS's limit)", errLineTooLong, n.maxLine)}
		}
		b := bytes.TrimSpace(n.buf)
		if len(b) == 0 {
			continue
		}
		return b, n.line, nil
	}
}

// checkPart validates one input line as a part: valid UTF-8, no NUL, a JSON
// object without the reserved keys jobid and partid. It returns the object's
// top-level fields.
func checkPart(b []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, errors.New("contains a NUL byte")
	}
	if b[0] != '{' {
		if !json.Valid(b) {
			return nil, fmt.Errorf("not JSON: %q (a part is one JSON object a line, e.g. {\"url\": \"s3://...\"})", text.Truncate(b, 40))
		}
		return nil, fmt.Errorf("not a JSON object (a part is one JSON object a line, e.g. {\"url\": \"s3://...\"}; found %s)", jsonKind(b))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	for _, k := range []string{"jobid", "partid"} {
		if _, ok := fields[k]; ok {
			return nil, fmt.Errorf("uses the reserved key %q (wp adds jobid and partid to each part)", k)
		}
	}
	if err := worker.CheckPartFields(fields); err != nil {
		return nil, fmt.Errorf("%v: rename one of them", err)
	}
	return fields, nil
}

func jsonKind(b []byte) string {
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
			return "a number"
		}
		return fmt.Sprintf("%q", text.Truncate(b, 20))
	}
}

// spool holds validated map messages in a temporary file, one a line, so
// that huge inputs are validated whole before anything is written without
// keeping every part in memory.
type spool struct {
	f     *os.File
	w     *bufio.Writer
	count int64
	// longest is the length of the longest map message.
	longest int
	// sum hashes the parts as given (see digest).
	sum hash.Hash
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "wp-parts-*.ndjson")
	if err != nil {
		return nil, fmt.Errorf("spool parts: %w", err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 256*1024), sum: sha256.New()}, nil
}

func (s *spool) add(msg []byte) error {
	s.count++
	s.longest = max(s.longest, len(msg))
	if _, err := s.w.Write(msg); err != nil {
		return fmt.Errorf("spool parts: %w", err)
	}
	return s.w.WriteByte('\n')
}

// reader rewinds the spool and returns a function yielding each message.
func (s *spool) reader() (func() (string, bool, error), error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("spool parts: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool parts: %w", err)
	}
	br := bufio.NewReaderSize(s.f, 256*1024)
	return func() (string, bool, error) {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return "", false, nil
		}
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("read spooled parts: %w", err)
		}
		return line[:len(line)-1], true, nil
	}, nil
}

// messages rewinds the spool and returns the function yielding the map
// messages to publish for job o, packed into batches of o.batch (none: one
// part a message) never across a store shard of shard parts, and how many
// there are.
func (s *spool) messages(o jobOptions, shard int64) (func() (string, bool, error), int64, error) {
	if o.batch == 0 {
		next, err := s.reader()
		return next, s.count, err
	}
	pack := func() (func() (string, []int64, bool, error), error) {
		next, err := s.reader()
		if err != nil {
			return nil, err
		}
		part := int64(-1)
		return worker.Packer{JobID: o.id, Parts: o.batch, Bytes: o.batchBytes, Shard: shard}.Pack(func() (int64, string, bool, error) {
			body, ok, err := next()
			part++
			return part, body, ok, err
		}), nil
	}
	// Count the messages first, for the progress and for what a stop
	// says.
	count, err := pack()
	if err != nil {
		return nil, 0, err
	}
	var n int64
	for {
		_, _, ok, err := count()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			break
		}
		n++
	}
	msgs, err := pack()
	if err != nil {
		return nil, 0, err
	}
	return func() (string, bool, error) {
		m, _, ok, err := msgs()
		return m, ok, err
	}, n, nil
}

// digest identifies the input: "sha256:" and the hex SHA-256 of each part's
// line as given (trimmed, blank lines skipped), each followed by a newline,
// in input order. wp create records it; wp retry refuses another file.
func (s *spool) digest() string {
	return "sha256:" + hex.EncodeToString(s.sum.Sum(nil))
}

func (s *spool) close() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// readParts validates the whole input and spools the map messages. It
// returns the first few problems, each with its line number; on any problem
// nothing should be written anywhere.
func readParts(r io.Reader, jobID string, sp *spool) error {
	nr := newNDJSONReader(r, publish.MaxMessageBytes)
	var problems []error
	const maxProblems = 5
	var msg []byte
	var part int64
	for {
		b, line, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var le *lineError
			if !errors.As(err, &le) {
				return err
			}
			problems = append(problems, err)
		} else if _, err := checkPart(b); err != nil {
			problems = append(problems, &lineError{line, err})
		} else {
			msg = worker.MapBody(msg[:0], jobID, part, b)
			if len(msg) > publish.MaxMessageBytes {
				problems = append(problems, &lineError{line, fmt.Errorf("the map message would be %d bytes, over SNS's limit of %d", len(msg), publish.MaxMessageBytes)})
			} else if len(problems) == 0 {
				if err := sp.add(msg); err != nil {
					return err
				}
				sp.sum.Write(b)
				sp.sum.Write([]byte{'\n'})
			}
			part++
		}
		if len(problems) >= maxProblems {
			problems = append(problems, errors.New("stopped after 5 problems"))
			break
		}
	}
	if len(problems) > 0 {
		return joinProblems(problems)
	}
	if sp.count == 0 {
		return errors.New("no parts: the input is empty (one JSON object a line is expected on stdin)")
	}
	return nil
}

// problemList is several input problems reported on one line.
type problemList []error

func (p problemList) Error() string {
	var b bytes.Buffer
	for i, e := range p {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (p problemList) Unwrap() []error { return p }

func joinProblems(p []error) error {
	if len(p) == 1 {
		return p[0]
	}
	return problemList(p)
}
