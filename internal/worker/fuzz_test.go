package worker

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// FuzzMessage: ParseDelivery never panics; an accepted message has a valid
// job id, a known subject and, for map, a non-negative part; PartEnv never
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
		m, err := ParseDelivery(Delivery{Message: msg, Subject: subject}, DefaultFields)
		if err != nil {
			var pe *PoisonError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseDelivery error %v is not a poison error", err)
			}
			return
		}
		if err := backends.ValidateJobID(m.JobID); err != nil {
			t.Fatalf("accepted job id %q: %v", m.JobID, err)
		}
		if m.Subject != "map" && m.Subject != "reduce" {
			t.Fatalf("accepted subject %q", m.Subject)
		}
		if m.Subject == "map" && m.Part < 0 {
			t.Fatalf("accepted part %d", m.Part)
		}
		for _, kv := range PartEnv(nil, m, DefaultFields, slog.New(slog.DiscardHandler)) {
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
		set, err := ParseCodeSet(s)
		if err != nil {
			return
		}
		for c := range set {
			if c < 1 || c > 255 || !set[c] {
				t.Fatalf("ParseCodeSet(%q) holds %d", s, c)
			}
		}
		again, err := ParseCodeSet(set.String())
		if err != nil {
			t.Fatalf("String() %q of ParseCodeSet(%q) does not parse: %v", set.String(), s, err)
		}
		if len(again) != len(set) {
			t.Fatalf("ParseCodeSet(%q) = %v, re-parsed as %v", s, set, again)
		}
		for c := range set {
			if !again[c] {
				t.Fatalf("ParseCodeSet(%q) = %v, re-parsed as %v", s, set, again)
			}
		}
	})
}
