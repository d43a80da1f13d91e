package snsfake

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
)

const usage = `usage: snsfake serve [-fail-subject SUBJECT] [-hold-subject SUBJECT] ADDRFILE LOGFILE

Runs a fake SNS endpoint on 127.0.0.1 until SIGTERM or SIGINT.

ADDRFILE  receives the endpoint URL (http://127.0.0.1:PORT), written
          atomically once the server listens: wait for it, then point wp at
          it with AWS_ENDPOINT_URL_SNS.
LOGFILE   gets one JSON line {"subject":...,"body":...,"topic":...} appended
          for every accepted message, before SNS's answer is sent. A message
          held by -hold-subject is logged once, when its request arrives, as
          {"subject":...,"body":...,"topic":...,"held":true}; it is never
          accepted.

  -fail-subject SUBJECT  answer requests carrying a message with this
                         subject with HTTP 500 InternalError
  -hold-subject SUBJECT  never answer requests carrying a message with this
                         subject (their messages are not logged)
`

// LogLine is one line of the standalone command's LOGFILE.
type LogLine struct {
	Subject string `json:"subject"`
	Body    string `json:"body"`
	Topic   string `json:"topic"`
	// Held marks a message whose request is being held (never accepted).
	Held bool `json:"held,omitempty"`
}

// Main runs the standalone snsfake command with os.Args and returns its exit
// code: 0 after a clean shutdown on SIGTERM/SIGINT, 1 on a runtime error, 2
// on a usage error. wp's testscript setup registers it as the "snsfake"
// command.
func Main() int {
	return run(os.Args[1:], os.Stderr)
}

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("snsfake serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	failSubject := fs.String("fail-subject", "", "answer messages with this subject with HTTP 500")
	holdSubject := fs.String("hold-subject", "", "never answer messages with this subject")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	addrFile, logFile := fs.Arg(0), fs.Arg(1)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "snsfake: open log file: %v\n", err)
		return 1
	}
	defer logf.Close()

	s := New()
	var (
		logMu  sync.Mutex
		logErr error
	)
	logLine := func(l LogLine) {
		logMu.Lock()
		defer logMu.Unlock()
		b, err := json.Marshal(l)
		if err == nil {
			_, err = logf.Write(append(b, '\n'))
		}
		if err != nil && logErr == nil {
			logErr = err
			fmt.Fprintf(stderr, "snsfake: write log file: %v\n", err)
		}
	}
	s.OnMessage(func(m Message) { logLine(LogLine{Subject: m.Subject, Body: m.Body, Topic: m.TopicArn}) })
	s.OnHold(func(m Message) { logLine(LogLine{Subject: m.Subject, Body: m.Body, Topic: m.TopicArn, Held: true}) })
	if *failSubject != "" {
		s.FailSubject(*failSubject)
	}
	if *holdSubject != "" {
		s.HoldSubject(*holdSubject) // never released
	}
	url, err := s.Start()
	if err != nil {
		fmt.Fprintf(stderr, "snsfake: %v\n", err)
		return 1
	}
	defer s.Close()
	if err := writeFileAtomic(addrFile, url+"\n"); err != nil {
		fmt.Fprintf(stderr, "snsfake: write address file: %v\n", err)
		return 1
	}

	<-ctx.Done()
	s.Close()
	logMu.Lock()
	defer logMu.Unlock()
	if logErr != nil {
		return 1
	}
	return 0
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it, so a reader polling for path never sees it half written.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".snsfake-addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
