package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wp-tools/wp/internal/worker"
)

// FuzzNDJSON: every line the reader returns either fails checkPart or makes
// a map message that is valid JSON with the right jobid and partid and
// exactly the part's own fields; the reader never returns a line longer than
// its limit, and always reaches the end.
func FuzzNDJSON(f *testing.F) {
	for _, s := range []string{
		"{\"a\":1}\n{\"b\":\"x\"}\n",
		"\n\n{\"url\": \"s3://a\", \"n\": 12.50}\r\n",
		"{}\n",
		"[1,2]\n",
		"{\"partid\":1}\n",
		"{\"a\":1}{\"b\":2}\n",
		"{\"a\":\"\xff\"}\n",
		"{\"a\":\"x\x00\"}\n",
		"{\"a\":{\"b\":[1,{\"c\":null}]}, \"d\": true}",
		"{\"a\":1,\"a\":2}\n",
		"{\"jobid\":\"x\"}",
		"   {\"a\" : 1 }   \n",
		"{\"a\":\"" + strings.Repeat("x", 300) + "\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxLine = 256
		nr := newNDJSONReader(bytes.NewReader(in), maxLine)
		var part int64
		for lines := 0; ; lines++ {
			if lines > len(in)+1 {
				t.Fatalf("more lines than bytes of input")
			}
			b, line, err := nr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var le *lineError
				if !errors.As(err, &le) || !errors.Is(err, errLineTooLong) || le.line != line {
					t.Fatalf("Next error %v (line %d) is not a line-too-long error for its line", err, line)
				}
				continue
			}
			if len(b) == 0 || len(b) > maxLine+2 {
				t.Fatalf("Next returned a line of %d bytes (limit %d)", len(b), maxLine)
			}
			fields, err := checkPart(b)
			if err != nil {
				continue
			}
			if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
				t.Fatalf("checkPart accepted %q", b)
			}
			msg := worker.MapBody(nil, "job-1", part, b)
			var got map[string]json.RawMessage
			if err := json.Unmarshal(msg, &got); err != nil {
				t.Fatalf("map message %q of part %q is not JSON: %v", msg, b, err)
			}
			if !json.Valid(msg) {
				t.Fatalf("map message %q is not valid JSON", msg)
			}
			if string(got["jobid"]) != `"job-1"` || string(got["partid"]) != strconv.FormatInt(part, 10) {
				t.Fatalf("map message %q: jobid %s partid %s, want job-1 and %d", msg, got["jobid"], got["partid"], part)
			}
			if len(got) != len(fields)+2 {
				t.Fatalf("map message %q has %d fields; the part %q has %d", msg, len(got), b, len(fields))
			}
			for k, v := range fields {
				if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(v)) {
					t.Fatalf("field %q: %s in the message, %s in the part", k, got[k], v)
				}
			}
			// The message must parse as watchbot would hand it to wp run.
			m, err := worker.ParseDelivery(worker.Delivery{Message: string(msg), Subject: "map"}, worker.DefaultFields)
			if err != nil || m.JobID != "job-1" || m.Part != part {
				t.Fatalf("wp run cannot read map message %q: %+v, %v", msg, m, err)
			}
			part++
		}
	})
}
