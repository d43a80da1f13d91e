package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wp-tools/wp/backends"
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
			msg := mapMessage(nil, "job-1", part, b)
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
			m, err := parseDelivery(delivery{Message: string(msg), Subject: "map"})
			if err != nil || m.jobID != "job-1" || m.part != part {
				t.Fatalf("wp run cannot read map message %q: %+v, %v", msg, m, err)
			}
			part++
		}
	})
}

// FuzzMessage: parseDelivery never panics; an accepted message has a valid
// job id, a known subject and, for map, a non-negative part; partEnv never
// yields a variable holding a NUL byte or a malformed name.
func FuzzMessage(f *testing.F) {
	for _, s := range [][2]string{
		{`{"jobid":"j","partid":0}`, "map"},
		{`{"jobid":"j","partid":0,"url":"s3://a","n":1.5,"ok":true,"x":null}`, ""},
		{`{"jobid":"j","metadata":{"a":1}}`, "reduce"},
		{`{"jobid":"j","partid":-1}`, "map"},
		{`{"jobid":"j","partid":1e3}`, "map"},
		{`{"jobid":"a*b","partid":0}`, "map"},
		{`{"jobid":"j","partid":"0"}`, "map"},
		{`{"jobid":"j","partid":99999999999999999999}`, "map"},
		{`{"jobid":"j","partid":0,"a-b.c":"\u0000"}`, "map"},
		{`[]`, "map"},
		{``, ""},
		{`{"jobid":"j"}`, "other"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, msg, subject string) {
		m, err := parseDelivery(delivery{Message: msg, Subject: subject})
		if err != nil {
			var pe *poisonError
			if !errors.As(err, &pe) {
				t.Fatalf("parseDelivery error %v is not a poison error", err)
			}
			return
		}
		if err := backends.ValidateJobID(m.jobID); err != nil {
			t.Fatalf("accepted job id %q: %v", m.jobID, err)
		}
		if m.subject != "map" && m.subject != "reduce" {
			t.Fatalf("accepted subject %q", m.subject)
		}
		if m.subject == "map" && m.part < 0 {
			t.Fatalf("accepted part %d", m.part)
		}
		for _, kv := range partEnv(nil, m, discardLogger()) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("bad environment entry %q", kv)
			}
			for _, r := range k {
				if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
					t.Fatalf("environment name %q holds %q", k, r)
				}
			}
		}
	})
}

// FuzzCodeSet: an accepted set holds only codes 1 to 255, and its String()
// parses back to the same set.
func FuzzCodeSet(f *testing.F) {
	for _, s := range []string{"3", "3,10-20", " 1 - 255 ", "", "0", "256", "5-2", "3,,4", "-1", "1-", "x", "99999999999999999999", "1-99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := parseCodeSet(s)
		if err != nil {
			return
		}
		for c := range set {
			if c < 1 || c > 255 || !set[c] {
				t.Fatalf("parseCodeSet(%q) holds %d", s, c)
			}
		}
		again, err := parseCodeSet(set.String())
		if err != nil {
			t.Fatalf("String() %q of parseCodeSet(%q) does not parse: %v", set.String(), s, err)
		}
		if len(again) != len(set) {
			t.Fatalf("parseCodeSet(%q) = %v, re-parsed as %v", s, set, again)
		}
		for c := range set {
			if !again[c] {
				t.Fatalf("parseCodeSet(%q) = %v, re-parsed as %v", s, set, again)
			}
		}
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
