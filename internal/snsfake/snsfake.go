// Package snsfake is an in-process Amazon SNS endpoint for tests. It speaks
// the SNS query protocol the way aws-sdk-go-v2's sns client sends it
// (form-encoded POST with Action=Publish or Action=PublishBatch and
// Version=2010-03-31) and answers with the XML documents real SNS returns, so
// wp's publisher can be tested with the real SDK by pointing BaseEndpoint (or
// AWS_ENDPOINT_URL_SNS) at Server.Start's URL.
//
// It validates what real SNS validates that matters to wp:
//
//   - TopicArn is present;
//   - Message is present, valid UTF-8 and at most MaxMessageBytes bytes;
//   - Subject, when given, is at most 99 printable ASCII characters with no
//     line breaks (SNS rejects anything else);
//   - a PublishBatch has 1 to 10 entries, distinct entry Ids made of letters,
//     digits, '-' and '_' (at most 80), and messages totalling at most
//     MaxMessageBytes bytes.
//
// Whole-request problems are answered with an ErrorResponse and HTTP 400
// (codes InvalidParameter, EmptyBatchRequest, TooManyEntriesInBatchRequest,
// BatchEntryIdsNotDistinct, InvalidBatchEntryId, BatchRequestTooLong); a bad
// entry inside a valid batch is reported in Failed with SenderFault true, as
// SNS does.
//
// Fault injection for tests: FailNext (whole requests answered with a server
// error), FailEntries (batch entries reported Failed with InternalError),
// FailSubject (requests carrying a subject answered with HTTP 500),
// HoldSubject (requests carrying a subject block until released) and
// SetDelay. Main runs the server as a standalone command for testscript.
package snsfake

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxMessageBytes is SNS's limit on one message body and on the total of the
// message bodies in one PublishBatch call.
const MaxMessageBytes = 262144

// MaxBatchEntries is the most entries one PublishBatch call may carry.
const MaxBatchEntries = 10

const apiVersion = "2010-03-31"

// maxRequestBytes bounds a request body. A full batch of 256 KiB that is
// entirely percent-encoded is about 768 KiB; 4 MiB leaves room for the rest.
const maxRequestBytes = 4 << 20

// Message is one message SNS accepted.
type Message struct {
	TopicArn  string
	Subject   string
	Body      string
	MessageId string
	// Batch is true when the message came in a PublishBatch call.
	Batch bool
}

// Server is a fake SNS endpoint. The zero value is not usable: call New.
type Server struct {
	mu          sync.Mutex
	msgs        []Message
	failNext    int
	failStatus  int
	failSubject string
	failEntries func(subject, body string) bool
	holds       map[string]chan struct{}
	delay       time.Duration
	record      func(Message)
	onHold      func(Message)
	held        int
	closed      chan struct{}

	srv *http.Server
	ln  net.Listener
}

// New returns a server that is not yet listening; call Start.
func New() *Server {
	return &Server{holds: map[string]chan struct{}{}, closed: make(chan struct{})}
}

// Start listens on a free port on 127.0.0.1 (never on all interfaces) and
// returns the endpoint URL, for example "http://127.0.0.1:40123".
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("snsfake: listen on 127.0.0.1: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// Close releases every held request and stops the server, dropping open
// connections. Safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
	}
}

// Messages returns a copy of every message accepted so far, in the order
// they were accepted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many accepted messages have the given subject.
func (s *Server) Count(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if m.Subject == subject {
			n++
		}
	}
	return n
}

// Reset forgets the accepted messages and clears every fault set with
// FailNext, FailEntries, FailSubject and SetDelay. Holds stay in place until
// released.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = nil
	s.failNext, s.failStatus = 0, 0
	s.failEntries = nil
	s.failSubject = ""
	s.delay = 0
}

// FailNext answers the next n HTTP requests, whatever they hold, with an
// error response of the given HTTP status (500 if status is 0): 429 as
// Throttled, 503 as ServiceUnavailable, anything else as InternalError. The
// messages in those requests are not accepted.
func (s *Server) FailNext(n int, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failStatus = n, status
}

// FailEntries reports every PublishBatch entry for which fn returns true in
// Failed with Code "InternalError" and SenderFault false; the other entries
// of the call are accepted. fn is called with the server's lock held: it
// must not call the Server. A nil fn stops failing entries.
func (s *Server) FailEntries(fn func(subject, body string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failEntries = fn
}

// FailSubject answers every request (Publish or PublishBatch) that carries a
// message with this subject with HTTP 500 InternalError, until cleared with
// an empty subject. None of that request's messages are accepted.
func (s *Server) FailSubject(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSubject = subject
}

// HoldSubject makes every request that carries a message with this subject
// wait, unanswered, until release is called (or the server is closed). A
// held request whose client goes away (say, a SIGKILLed wp) is dropped: its
// messages are not accepted. After release the request is handled normally.
// release is safe to call more than once.
func (s *Server) HoldSubject(subject string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.holds[subject] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.holds[subject] == ch {
				delete(s.holds, subject)
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// SetDelay makes the server wait d before answering each request.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// OnMessage registers fn to be called for every accepted message, before the
// response is sent. Calls are serialized. The standalone command uses it to
// log messages to a file.
func (s *Server) OnMessage(fn func(Message)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record = fn
}

// OnHold registers fn to be called, once per message, when a request is
// first held by HoldSubject. The message has no MessageId yet. Calls are
// serialized with the server's lock held: fn must not call the Server.
func (s *Server) OnHold(fn func(Message)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onHold = fn
}

// Held returns how many requests are waiting on HoldSubject right now. A
// test polls it to learn that wp is blocked in its publish.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// apiError is an error answered with an ErrorResponse document.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func invalid(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidParameter", fmt.Sprintf(format, args...)}
}

// entry is one message of a request before it is accepted.
type entry struct {
	id      string
	subject string
	body    string
	// failure is set for a batch entry SNS would reject on its own.
	failure *apiError
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := uuid.NewString()
	if r.Method != http.MethodPost {
		writeError(w, requestID, &apiError{http.StatusMethodNotAllowed, "InvalidAction", "only POST is supported"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBytes)
	if err := r.ParseForm(); err != nil {
		writeError(w, requestID, invalid("cannot parse form body: %v", err))
		return
	}

	s.mu.Lock()
	delay := s.delay
	failStatus := 0
	if s.failNext > 0 {
		s.failNext--
		failStatus = s.failStatus
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			panic(http.ErrAbortHandler)
		}
	}
	if failStatus != 0 {
		writeError(w, requestID, serverError(failStatus))
		return
	}

	form := r.PostForm
	if v := form.Get("Version"); v != apiVersion {
		writeError(w, requestID, invalid("unsupported Version %q, want %s", v, apiVersion))
		return
	}
	action := form.Get("Action")
	var (
		entries []entry
		aerr    *apiError
	)
	switch action {
	case "Publish":
		entries, aerr = parsePublish(form)
	case "PublishBatch":
		entries, aerr = parsePublishBatch(form)
	default:
		aerr = &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("action %q is not supported by snsfake (only Publish and PublishBatch)", action)}
	}
	if aerr != nil {
		writeError(w, requestID, aerr)
		return
	}
	topic := form.Get("TopicArn")
	if topic == "" && action == "Publish" {
		topic = form.Get("TargetArn")
	}

	if !s.waitHolds(r, topic, action, entries) {
		// Client gone or server closed: drop the connection without an
		// answer. Returning normally would send an empty 200, which the SDK
		// takes for success.
		panic(http.ErrAbortHandler)
	}

	s.mu.Lock()
	if s.failSubject != "" {
		for _, e := range entries {
			if e.subject == s.failSubject {
				s.mu.Unlock()
				writeError(w, requestID, serverError(http.StatusInternalServerError))
				return
			}
		}
	}
	var (
		successful []batchSuccess
		failed     []batchFailure
		accepted   []Message
	)
	for _, e := range entries {
		if e.failure == nil && action == "PublishBatch" && s.failEntries != nil && s.failEntries(e.subject, e.body) {
			e.failure = &apiError{http.StatusInternalServerError, "InternalError", "injected failure"}
		}
		if e.failure != nil {
			failed = append(failed, batchFailure{
				ID: e.id, Code: e.failure.code, Message: e.failure.msg,
				SenderFault: e.failure.status < 500,
			})
			continue
		}
		m := Message{TopicArn: topic, Subject: e.subject, Body: e.body, MessageId: uuid.NewString(), Batch: action == "PublishBatch"}
		accepted = append(accepted, m)
		successful = append(successful, batchSuccess{ID: e.id, MessageID: m.MessageId})
	}
	s.msgs = append(s.msgs, accepted...)
	if s.record != nil {
		for _, m := range accepted {
			s.record(m)
		}
	}
	s.mu.Unlock()

	meta := responseMetadata{RequestID: requestID}
	if action == "Publish" {
		writeXML(w, http.StatusOK, publishResponse{
			Xmlns:  xmlns,
			Result: publishResult{MessageID: accepted[0].MessageId}, Metadata: meta,
		})
		return
	}
	res := publishBatchResponse{Xmlns: xmlns, Metadata: meta}
	res.Result.Successful = successful
	res.Result.Failed = failed
	writeXML(w, http.StatusOK, res)
}

// waitHolds blocks while any entry's subject is held. It returns false when
// the client went away or the server closed first.
func (s *Server) waitHolds(r *http.Request, topic, action string, entries []entry) bool {
	counted := false
	defer func() {
		if counted {
			s.mu.Lock()
			s.held--
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		var ch chan struct{}
		for _, e := range entries {
			if c, ok := s.holds[e.subject]; ok {
				ch = c
				break
			}
		}
		if ch != nil && !counted {
			counted = true
			s.held++
			if s.onHold != nil {
				for _, e := range entries {
					s.onHold(Message{TopicArn: topic, Subject: e.subject, Body: e.body, Batch: action == "PublishBatch"})
				}
			}
		}
		s.mu.Unlock()
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			return false
		case <-s.closed:
			return false
		}
	}
}

func serverError(status int) *apiError {
	switch status {
	case http.StatusTooManyRequests:
		return &apiError{status, "Throttled", "rate exceeded (injected by snsfake)"}
	case http.StatusServiceUnavailable:
		return &apiError{status, "ServiceUnavailable", "service unavailable (injected by snsfake)"}
	default:
		return &apiError{status, "InternalError", "internal error (injected by snsfake)"}
	}
}

func parsePublish(form map[string][]string) ([]entry, *apiError) {
	get := func(k string) (string, bool) {
		v, ok := form[k]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	if t, _ := get("TopicArn"); t == "" {
		// watchbot-progress-py publishes with TargetArn set to the topic's
		// ARN, which SNS accepts; a platform endpoint's ARN (":endpoint/")
		// would be a mobile push, which snsfake does not do.
		if target, ok := get("TargetArn"); ok && strings.Contains(target, ":endpoint/") {
			return nil, invalid("snsfake supports TargetArn only for a topic ARN, not a platform endpoint")
		} else if !ok || target == "" {
			return nil, invalid("Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter")
		}
	}
	body, _ := get("Message")
	subject, hasSubject := get("Subject")
	if e := checkMessage(body, subject, hasSubject); e != nil {
		return nil, e
	}
	return []entry{{subject: subject, body: body}}, nil
}

var batchKey = regexp.MustCompile(`^PublishBatchRequestEntries\.member\.([0-9]+)\.(Id|Message|Subject)$`)
var entryID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func parsePublishBatch(form map[string][]string) ([]entry, *apiError) {
	if len(form["TopicArn"]) == 0 || form["TopicArn"][0] == "" {
		return nil, invalid("Invalid parameter: TopicArn Reason: no value for required parameter")
	}
	type raw struct {
		fields     map[string]string
		hasSubject bool
	}
	byIndex := map[int]*raw{}
	maxIndex := 0
	for k, v := range form {
		m := batchKey.FindStringSubmatch(k)
		if m == nil || len(v) == 0 {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil || i < 1 || i > 1000 {
			return nil, invalid("bad entry index in %s", k)
		}
		r := byIndex[i]
		if r == nil {
			r = &raw{fields: map[string]string{}}
			byIndex[i] = r
		}
		r.fields[m[2]] = v[0]
		if m[2] == "Subject" {
			r.hasSubject = true
		}
		maxIndex = max(maxIndex, i)
	}
	if len(byIndex) == 0 {
		return nil, &apiError{http.StatusBadRequest, "EmptyBatchRequest", "The batch request doesn't contain any entries."}
	}
	if len(byIndex) > MaxBatchEntries {
		return nil, &apiError{http.StatusBadRequest, "TooManyEntriesInBatchRequest",
			fmt.Sprintf("The batch request contains %d entries; the limit is %d.", len(byIndex), MaxBatchEntries)}
	}
	if maxIndex != len(byIndex) {
		return nil, invalid("batch entry indexes are not 1..%d", len(byIndex))
	}
	entries := make([]entry, 0, len(byIndex))
	seen := map[string]bool{}
	total := 0
	for i := 1; i <= maxIndex; i++ {
		r := byIndex[i]
		id := r.fields["Id"]
		if !entryID.MatchString(id) {
			return nil, &apiError{http.StatusBadRequest, "InvalidBatchEntryId",
				fmt.Sprintf("The Id of a batch entry in a batch request doesn't abide by the specification: %q", id)}
		}
		if seen[id] {
			return nil, &apiError{http.StatusBadRequest, "BatchEntryIdsNotDistinct",
				fmt.Sprintf("Two or more batch entries in the request have the same Id %q.", id)}
		}
		seen[id] = true
		body := r.fields["Message"]
		total += len(body)
		e := entry{id: id, subject: r.fields["Subject"], body: body}
		e.failure = checkMessage(body, e.subject, r.hasSubject)
		entries = append(entries, e)
	}
	if total > MaxMessageBytes {
		return nil, &apiError{http.StatusBadRequest, "BatchRequestTooLong",
			fmt.Sprintf("The length of all the messages put together is %d bytes, more than the limit of %d bytes.", total, MaxMessageBytes)}
	}
	return entries, nil
}

// checkMessage applies SNS's rules for one message and its subject.
func checkMessage(body, subject string, hasSubject bool) *apiError {
	switch {
	case body == "":
		return invalid("Invalid parameter: Empty message")
	case len(body) > MaxMessageBytes:
		return invalid("Invalid parameter: Message too long (%d bytes, limit %d)", len(body), MaxMessageBytes)
	case !utf8.ValidString(body):
		return invalid("Invalid parameter: Message must be UTF-8")
	}
	if hasSubject {
		if err := checkSubject(subject); err != nil {
			return invalid("Invalid parameter: Subject %v", err)
		}
	}
	return nil
}

// checkSubject applies SNS's subject rule: ASCII text that begins with a
// letter, number or punctuation mark, with no line breaks or control
// characters, under 100 characters.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) >= 100 {
		return fmt.Errorf("is %d characters, must be under 100", len(s))
	}
	if s[0] == ' ' {
		return errors.New("must begin with a letter, number or punctuation mark")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
		return fmt.Errorf("must be printable ASCII without line breaks (byte %d)", i)
	}
	return nil
}

const xmlns = "http://sns.amazonaws.com/doc/2010-03-31/"

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type publishResult struct {
	MessageID string `xml:"MessageId"`
}

type publishResponse struct {
	XMLName  xml.Name         `xml:"PublishResponse"`
	Xmlns    string           `xml:"xmlns,attr"`
	Result   publishResult    `xml:"PublishResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type batchSuccess struct {
	ID        string `xml:"Id"`
	MessageID string `xml:"MessageId"`
}

type batchFailure struct {
	ID          string `xml:"Id"`
	Code        string `xml:"Code"`
	Message     string `xml:"Message"`
	SenderFault bool   `xml:"SenderFault"`
}

type publishBatchResponse struct {
	XMLName xml.Name `xml:"PublishBatchResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		Successful []batchSuccess `xml:"Successful>member"`
		Failed     []batchFailure `xml:"Failed>member"`
	} `xml:"PublishBatchResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	res := errorResponse{Xmlns: xmlns}
	res.Error.Type = "Sender"
	if e.status >= 500 {
		res.Error.Type = "Receiver"
	}
	res.Error.Code = e.code
	res.Error.Message = e.msg
	res.RequestID = requestID
	writeXML(w, e.status, res)
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, "snsfake: marshal response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	w.Write(b)
}
