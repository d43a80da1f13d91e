package worker

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/wp-tools/wp/backends"
)

// PartEnv is the environment a part's command gets on top of base:
// WP_JOB_ID, WP_SUBJECT, and for a map WP_PART_ID and WP_PART_<FIELD> for
// each top-level scalar field, for a reduce WP_METADATA. Inherited WP_PART_*
// variables are dropped so none is stale.
func PartEnv(base []string, m Message, names FieldNames, lg *slog.Logger) []string {
	env := make([]string, 0, len(base)+len(m.Fields)+4)
	for _, kv := range base {
		if strings.HasPrefix(kv, "WP_PART_") || strings.HasPrefix(kv, "WP_JOB_ID=") || strings.HasPrefix(kv, "WP_SUBJECT=") || strings.HasPrefix(kv, "WP_METADATA=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "WP_JOB_ID="+m.JobID, "WP_SUBJECT="+m.Subject)
	if m.Subject == SubjectReduce {
		meta := m.Metadata
		if len(meta) == 0 {
			meta = json.RawMessage(`{}`)
		}
		return append(env, "WP_METADATA="+string(meta))
	}
	env = append(env, "WP_PART_ID="+strconv.FormatInt(m.Part, 10))
	keys := make([]string, 0, len(m.Fields))
	for k := range m.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == names.JobID || k == names.PartID {
			continue
		}
		v, ok := scalarString(m.Fields[k])
		if !ok {
			continue
		}
		if strings.IndexByte(v, 0) >= 0 {
			lg.Warn("part field holds a NUL byte: not passed in the environment", "field", k)
			continue
		}
		env = append(env, "WP_PART_"+EnvName(k)+"="+v)
	}
	return env
}

// EnvName upper-cases a field name and turns every character other than
// A-Z, 0-9 and _ into _.
func EnvName(k string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(k) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// scalarString renders a JSON string, number or boolean as shell text;
// numbers keep their exact JSON spelling. Objects, arrays and null are not
// scalars.
func scalarString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		return string(raw), true
	case '{', '[', 'n':
		return "", false
	default:
		return string(raw), true
	}
}

// tailWriter passes everything on to w and keeps the last
// backends.MaxStderrTail bytes written.
type tailWriter struct {
	w    io.Writer
	mu   sync.Mutex
	tail []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - backends.MaxStderrTail; over > 0 {
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	t.mu.Unlock()
	if t.w == nil {
		return len(p), nil
	}
	return t.w.Write(p)
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.tail)
}
