package publish

import (
	"context"
	"errors"
	"sync"
)

// Lazy is a Publisher made on first use: `wp run` connects to SNS only when
// a reduce must be sent, so a map part that does not finish its job needs
// no topic and makes no SNS call.
type Lazy struct {
	topic string
	opts  []Option
	mu    sync.Mutex
	pub   *Publisher
}

// NewLazy returns a Lazy publisher to topicARN ("" is an error on first
// use, not before).
func NewLazy(topicARN string, opts ...Option) *Lazy {
	return &Lazy{topic: topicARN, opts: opts}
}

// Publish implements the worker's Publisher.
func (l *Lazy) Publish(ctx context.Context, subject, body string) error {
	if l.topic == "" {
		return errors.New("no SNS topic to publish the reduce to: set --topic or the WorkTopic environment variable")
	}
	l.mu.Lock()
	if l.pub == nil {
		p, err := NewFromEnv(ctx, l.topic, l.opts...)
		if err != nil {
			l.mu.Unlock()
			return err
		}
		l.pub = p
	}
	p := l.pub
	l.mu.Unlock()
	return p.Publish(ctx, subject, body)
}
