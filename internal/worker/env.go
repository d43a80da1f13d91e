package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
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
//
// wp's own variables are never shadowed: WP_PART_ID is always the part
// number, and a field whose name becomes ID ("id", "Id", "ID") is passed as
// WP_PART_FIELD_ID instead (PartVarName). Two fields that become one name
// ("my-url" and "my_url") cannot both have it: wp create and wp local refuse
// such input (CheckPartFields); in a message from elsewhere the first in
// byte order takes the name and a warning names the other, which the
// command still finds in Message, as every field.
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
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	env = append(env, "WP_PART_ID="+strconv.FormatInt(m.Part, 10))
	vars, clashes := partVars(m.Fields, names)
	for _, c := range clashes {
		lg.Warn(fmt.Sprintf("part %s: it holds %q; the command finds %q in Message", c.Error(), c.fields[0], c.fields[1]))
	}
	for _, v := range vars {
		if strings.IndexByte(v.value, 0) >= 0 {
			lg.Warn("part field holds a NUL byte: not passed in the environment; the command finds it in Message", "field", v.field)
			continue
		}
		env = append(env, "WP_PART_"+v.name+"="+v.value)
	}
	return env
}

// reservedPartNames are the WP_PART_ names wp sets itself.
var reservedPartNames = map[string]bool{"ID": true}

// PartVarName is the name (after WP_PART_) of the variable that holds the
// part field k: EnvName(k), or FIELD_ and EnvName(k) when that is a name wp
// sets itself (WP_PART_ID is the part number, so a field "id" is
// WP_PART_FIELD_ID).
func PartVarName(k string) string {
	n := EnvName(k)
	if reservedPartNames[n] {
		return "FIELD_" + n
	}
	return n
}

type partVar struct{ field, name, value string }

// FieldClash is two fields of one part that become the same variable.
type FieldClash struct {
	// fields: the one that got the name, then the one left out.
	fields [2]string
	name   string
}

func (c *FieldClash) Error() string {
	return fmt.Sprintf("fields %q and %q both become WP_PART_%s", c.fields[0], c.fields[1], c.name)
}

// partVars lists the part's scalar fields with their variable names, in
// byte order of the field names, leaving out the job and part id fields and
// every field whose name an earlier one took (listed in clashes).
func partVars(fields map[string]json.RawMessage, names FieldNames) (vars []partVar, clashes []*FieldClash) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	taken := map[string]string{}
	for _, k := range keys {
		if k == names.JobID || k == names.PartID {
			continue
		}
		v, ok := scalarString(fields[k])
		if !ok {
			continue
		}
		n := PartVarName(k)
		if first, ok := taken[n]; ok {
			clashes = append(clashes, &FieldClash{fields: [2]string{first, k}, name: n})
			continue
		}
		taken[n] = k
		vars = append(vars, partVar{field: k, name: n, value: v})
	}
	return vars, clashes
}

// CheckPartFields returns a *FieldClash when two scalar fields of a part
// (as wp create and wp local read it) would become one variable.
func CheckPartFields(fields map[string]json.RawMessage) error {
	if _, clashes := partVars(fields, DefaultFields); len(clashes) > 0 {
		return clashes[0]
	}
	return nil
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
