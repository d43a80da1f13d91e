package display

import (
	"sync"
	"time"
)

func nowMS() int64 { return time.Now().UnixMilli() }

// Ticker shows how far a long run is: on a terminal, a status line redrawn
// five times a second at the bottom of out; elsewhere, line(s) passed to
// plain every 10 seconds (a log line).
type Ticker struct {
	out   *Output
	term  bool
	line  func() string
	plain func(string)
	quit  chan struct{}
	wg    sync.WaitGroup
}

// NewTicker returns a Ticker; term says whether out's stderr is a terminal.
func NewTicker(out *Output, term bool, line func() string, plain func(string)) *Ticker {
	return &Ticker{out: out, term: term, line: line, plain: plain, quit: make(chan struct{})}
}

// Start starts showing.
func (t *Ticker) Start() {
	every := 10 * time.Second
	if t.term {
		every = 200 * time.Millisecond
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-t.quit:
				if t.term {
					t.out.SetStatus("")
				}
				return
			case <-tk.C:
				if t.term {
					t.out.SetStatus(t.line())
				} else {
					t.plain(t.line())
				}
			}
		}
	}()
}

// Stop stops showing and removes the status line.
func (t *Ticker) Stop() {
	close(t.quit)
	t.wg.Wait()
}
