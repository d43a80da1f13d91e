package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/text"
)

// Delivery is one message as watchbot hands it to a worker: the SNS message
// body (env Message) and its subject (env Subject).
type Delivery struct {
	Message string
	Subject string
	// ReceiveCount is the message's ApproximateReceiveCount (1 on the
	// first delivery); 0 when unknown.
	ReceiveCount int
	// Last: no delivery of this message follows this one (the queue's last
	// receive, the local runner's last attempt). A map part whose command
	// fails on its last delivery is given up.
	Last bool
}

// Subjects of wp's messages.
const (
	SubjectMap    = "map"
	SubjectReduce = "reduce"
)

// Message is a parsed map or reduce message.
type Message struct {
	Subject string // SubjectMap or SubjectReduce
	JobID   string
	Part    int64 // map only
	// Fields are the message's top-level fields, as they came.
	Fields map[string]json.RawMessage
	// Metadata is a reduce message's metadata (nil when it has none).
	Metadata json.RawMessage
	// Batch is a batch message's parts, in part order (nil for a plain
	// map message); Part is then the first of them.
	Batch []BatchPart
}

// LogAttrs are the attributes of every log line about m: its job, subject
// and (for a map) part.
func (m Message) LogAttrs() []any {
	if m.Subject == SubjectMap {
		return []any{"jobid", m.JobID, "subject", m.Subject, "partid", m.Part}
	}
	return []any{"jobid", m.JobID, "subject", m.Subject}
}

// FieldNames names the message fields that hold the job id and the part id:
// "jobid" and "partid" in the messages wp create and watchbot-progress-py
// publish; messages published by other code (the Node library leaves the
// shape to its user) may use others.
type FieldNames struct {
	JobID, PartID string
}

// DefaultFields are the field names wp publishes.
var DefaultFields = FieldNames{JobID: "jobid", PartID: "partid"}

// PoisonError is a message that can never succeed: the caller should drop
// it rather than have it retried.
type PoisonError struct {
	Err error
	// Missing names the id field the message lacks ("" for other
	// problems): the caller may say how to name another.
	Missing string
}

func (e *PoisonError) Error() string { return e.Err.Error() }
func (e *PoisonError) Unwrap() error { return e.Err }

func poison(format string, a ...any) error { return &PoisonError{Err: fmt.Errorf(format, a...)} }

// ParseDelivery checks a message before anything else happens. Its errors
// are *PoisonError.
func ParseDelivery(d Delivery, names FieldNames) (Message, error) {
	if names.JobID == "" {
		names.JobID = DefaultFields.JobID
	}
	if names.PartID == "" {
		names.PartID = DefaultFields.PartID
	}
	var m Message
	if d.Message == "" {
		return m, poison("no Message: wp run expects the watchbot message in the Message environment variable")
	}
	body := bytes.TrimSpace([]byte(d.Message))
	if len(body) == 0 || body[0] != '{' {
		return m, poison("Message is not a JSON object")
	}
	if err := json.Unmarshal(body, &m.Fields); err != nil {
		return m, poison("Message is not valid JSON: %v", err)
	}
	raw, ok := m.Fields[names.JobID]
	if !ok {
		return m, &PoisonError{Err: fmt.Errorf("Message has no %s field, which holds the job id", names.JobID), Missing: names.JobID}
	}
	if err := json.Unmarshal(raw, &m.JobID); err != nil {
		return m, poison("Message %s is not a string: %s", names.JobID, text.Truncate(raw, 40))
	}
	if err := backends.ValidateJobID(m.JobID); err != nil {
		return m, poison("Message %s: %v", names.JobID, err)
	}
	_, hasPart := m.Fields[names.PartID]
	_, isBatch := m.Fields[BatchField]
	switch d.Subject {
	case SubjectMap, SubjectReduce:
		m.Subject = d.Subject
	case "":
		if !hasPart && !isBatch {
			return m, poison("no Subject and no %s: cannot tell a map message from a reduce", names.PartID)
		}
		m.Subject = SubjectMap
	default:
		return m, poison("unknown Subject %q: want map or reduce", d.Subject)
	}
	if m.Subject == SubjectReduce {
		m.Metadata = m.Fields["metadata"]
		return m, nil
	}
	if isBatch {
		if hasPart {
			return m, poison("batch message has a %s of its own: its parts carry theirs", names.PartID)
		}
		return m, parseBatch(&m, raw, names)
	}
	if !hasPart {
		return m, &PoisonError{Err: fmt.Errorf("map message has no %s field, which holds the part id", names.PartID), Missing: names.PartID}
	}
	p, err := parsePartID(m.Fields[names.PartID])
	if err != nil {
		return m, poison("Message %s %v", names.PartID, err)
	}
	m.Part = p
	return m, nil
}

// parsePartID accepts a non-negative JSON integer.
func parsePartID(raw json.RawMessage) (int64, error) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s[0] == '"' {
		return 0, fmt.Errorf("%s is not a number", text.Truncate(raw, 40))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%s is too large", text.Truncate(raw, 40))
		}
		return 0, fmt.Errorf("%s is not a whole number", text.Truncate(raw, 40))
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

// FailedReduceBody is the reduce message of a failed job created with
// ReduceOnFailure: ReduceBody plus "state": "failed" and the reason.
func FailedReduceBody(jobID string, meta json.RawMessage, reason string) string {
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	b, _ := json.Marshal(struct {
		JobID    string          `json:"jobid"`
		Metadata json.RawMessage `json:"metadata"`
		State    string          `json:"state"`
		Error    string          `json:"error"`
	}{jobID, meta, backends.StateFailed, reason})
	return string(b)
}

// ReduceBody is the reduce message: {"jobid": ..., "metadata": {...}}.
func ReduceBody(jobID string, meta json.RawMessage) string {
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	b, _ := json.Marshal(struct {
		JobID    string          `json:"jobid"`
		Metadata json.RawMessage `json:"metadata"`
	}{jobID, meta})
	return string(b)
}
