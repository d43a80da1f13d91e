package worker

import (
	"strconv"
	"strings"
	"time"
)

// The environment watchbot gives the worker command for one message
// (ecs-watchbot's lib/message.js): wp run reads it, and the local runner
// gives its commands the same.
const (
	EnvMessage      = "Message"
	EnvSubject      = "Subject" // only when the publisher set one
	EnvMessageID    = "MessageId"
	EnvSent         = "SentTimestamp"
	EnvFirstReceive = "ApproximateFirstReceiveTimestamp"
	EnvReceiveCount = "ApproximateReceiveCount"
)

// Envelope is what watchbot tells the command of a message besides its body
// and subject: the same on every receive of the message.
type Envelope struct {
	MessageID    string
	Sent         time.Time
	FirstReceive time.Time
}

// WatchbotEnv is base and the variables watchbot sets for delivery d of the
// message e describes.
func WatchbotEnv(base []string, d Delivery, e Envelope) []string {
	env := append(base[:len(base):len(base)], EnvMessage+"="+d.Message)
	if d.Subject != "" {
		env = append(env, EnvSubject+"="+d.Subject)
	}
	return append(env,
		EnvMessageID+"="+e.MessageID,
		EnvSent+"="+e.Sent.UTC().Format(time.RFC3339Nano),
		EnvFirstReceive+"="+e.FirstReceive.UTC().Format(time.RFC3339Nano),
		EnvReceiveCount+"="+strconv.Itoa(d.ReceiveCount),
	)
}

// DeliveryFromEnv is the delivery watchbot handed this process, read with
// getenv. A receive count that is missing or not a whole number is 0 (the
// part is then never given up); badCount is then the value, when there was
// one.
func DeliveryFromEnv(getenv func(string) string) (d Delivery, badCount string) {
	d = Delivery{Message: getenv(EnvMessage), Subject: getenv(EnvSubject)}
	s := getenv(EnvReceiveCount)
	if s == "" {
		return d, ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return d, s
	}
	d.ReceiveCount = n
	return d, ""
}
