package worker

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/text"
)

// A batch message is one map message that carries several consecutive
// parts of a job (wp create --batch):
//
//	{"jobid":"J","batch":[{"partid":16,"url":"a"},{"partid":17,"url":"b"}]}
//
// Each element is its part's own map message without the jobid, so that the
// command of each part is given exactly the message it would have had alone
// ({"jobid":"J","partid":16,"url":"a"}): MapBody and BatchBody make them,
// ParseDelivery reads them back byte for byte.

// BatchField is the field of a batch message that holds its parts.
const BatchField = "batch"

// BatchPart is one part of a batch message.
type BatchPart struct {
	Part int64
	// Body is the part's own map message, as it would be published alone.
	Body string
	// Fields are its top-level fields (partid included, jobid not).
	Fields map[string]json.RawMessage
}

// MapBody appends to dst the map message of part: the part's own JSON
// object (obj, as given: numbers keep their spelling, fields their order)
// with jobid and partid put first.
func MapBody(dst []byte, jobID string, part int64, obj []byte) []byte {
	dst = append(dst, `{"jobid":`...)
	q, _ := json.Marshal(jobID)
	dst = append(dst, q...)
	dst = append(dst, `,"partid":`...)
	dst = strconv.AppendInt(dst, part, 10)
	inner := bytes.TrimSpace(obj[1 : len(obj)-1])
	if len(inner) > 0 {
		dst = append(dst, ',')
		dst = append(dst, inner...)
	}
	return append(dst, '}')
}

// batchPrefix is how a MapBody of jobID starts; the rest is the batch
// element.
func batchPrefix(jobID string) string {
	q, _ := json.Marshal(jobID)
	return `{"jobid":` + string(q) + `,`
}

// BatchBody is the batch message of job jobID's parts, given as their
// MapBody messages, in part order. BatchSize says how long it would be.
func BatchBody(jobID string, bodies []string) string {
	prefix := batchPrefix(jobID)
	var b bytes.Buffer
	b.Grow(BatchSize(jobID, bodies))
	b.WriteString(prefix)
	b.WriteString(`"` + BatchField + `":[`)
	for i, body := range bodies {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		b.WriteString(body[len(prefix):])
	}
	b.WriteString("]}")
	return b.String()
}

// BatchSize is len(BatchBody(jobID, bodies)), computed without building
// it.
func BatchSize(jobID string, bodies []string) int {
	prefix := len(batchPrefix(jobID))
	n := prefix + len(`"`+BatchField+`":[]}`)
	for i, body := range bodies {
		if i > 0 {
			n++
		}
		n += 1 + len(body) - prefix
	}
	return n
}

// parseBatch reads the parts of a batch message of job m.JobID (its
// jobid's JSON as it came: raw).
func parseBatch(m *Message, raw json.RawMessage, names FieldNames) error {
	var elems []json.RawMessage
	if err := json.Unmarshal(m.Fields[BatchField], &elems); err != nil {
		return poison("batch message: %q is not an array of parts", BatchField)
	}
	if len(elems) == 0 {
		return poison("batch message has no parts")
	}
	if len(elems) > backends.MaxBatch {
		return poison("batch message has %d parts, more than %d", len(elems), backends.MaxBatch)
	}
	prefix := `{"` + names.JobID + `":` + string(raw) + `,`
	m.Batch = make([]BatchPart, 0, len(elems))
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		var fields map[string]json.RawMessage
		if len(e) < 2 || e[0] != '{' || json.Unmarshal(e, &fields) != nil {
			return poison("batch message: element %d is not a JSON object", i)
		}
		if j, ok := fields[names.JobID]; ok {
			if !bytes.Equal(bytes.TrimSpace(j), bytes.TrimSpace(raw)) {
				return poison("batch message: element %d names another job (%s)", i, text.Truncate(j, 40))
			}
			return poison("batch message: element %d has a %s of its own: a batch's parts carry only the batch's", i, names.JobID)
		}
		p, ok := fields[names.PartID]
		if !ok {
			return poison("batch message: element %d has no %s", i, names.PartID)
		}
		part, err := parsePartID(p)
		if err != nil {
			return poison("batch message: element %d: %s %v", i, names.PartID, err)
		}
		if i > 0 && part != m.Batch[i-1].Part+1 {
			return poison("batch message: its parts are not consecutive (part %d after part %d)", part, m.Batch[i-1].Part)
		}
		m.Batch = append(m.Batch, BatchPart{Part: part, Body: prefix + string(e[1:]), Fields: fields})
	}
	m.Part = m.Batch[0].Part
	return nil
}

// Parts is the part ids of a batch message (one for a plain map message).
func (m Message) Parts() []int64 {
	if m.Batch == nil {
		return []int64{m.Part}
	}
	parts := make([]int64, len(m.Batch))
	for i, b := range m.Batch {
		parts[i] = b.Part
	}
	return parts
}

// partMessage is batch part b of m as a map message of its own.
func (m Message) partMessage(b BatchPart) Message {
	return Message{Subject: SubjectMap, JobID: m.JobID, Part: b.Part, Fields: b.Fields}
}

// Packer packs a job's map messages into batch messages as wp create
// --batch does: consecutive parts only, at most Parts of them and Bytes
// bytes a message, and never two parts of different store shards (parts
// p/Shard; Shard 0: no shards), so that the completions of one batch are
// one write. A part with no neighbour to share a message with goes alone,
// as a plain map message.
type Packer struct {
	JobID string
	Parts int
	Bytes int
	Shard int64
}

// Pack reads map messages from next (their part ids ascending) and returns
// the function yielding the messages to publish, each with its parts.
func (p Packer) Pack(next func() (part int64, body string, ok bool, err error)) func() (msg string, parts []int64, ok bool, err error) {
	var (
		held     bool // a message read ahead, not yet packed
		hp       int64
		hb       string
		finished bool
	)
	read := func() (int64, string, bool, error) {
		if held {
			held = false
			return hp, hb, true, nil
		}
		if finished {
			return 0, "", false, nil
		}
		part, body, ok, err := next()
		if !ok || err != nil {
			finished = true
		}
		return part, body, ok, err
	}
	return func() (string, []int64, bool, error) {
		part, body, ok, err := read()
		if !ok || err != nil {
			return "", nil, false, err
		}
		parts, bodies := []int64{part}, []string{body}
		for len(parts) < p.Parts {
			np, nb, ok, err := read()
			if err != nil {
				return "", nil, false, err
			}
			if !ok {
				break
			}
			last := parts[len(parts)-1]
			if np != last+1 || (p.Shard > 0 && np/p.Shard != last/p.Shard) || BatchSize(p.JobID, append(bodies, nb)) > p.Bytes {
				held, hp, hb = true, np, nb
				break
			}
			parts, bodies = append(parts, np), append(bodies, nb)
		}
		if len(parts) == 1 {
			return bodies[0], parts, true, nil
		}
		return BatchBody(p.JobID, bodies), parts, true, nil
	}
}
