package testservers

import (
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
)

// service is a started emulator process whose standard input is a pipe
// it watches, so that it ends when the test binary dies.
type service struct {
	name    string
	out     *lockedBuffer
	exited  chan struct{}
	waitErr error
	stopped atomic.Bool
	once    sync.Once
	stdin   interface{ Close() error }
	cmd     *exec.Cmd
}

// startService starts cmd with its output in a buffer and its standard
// input a pipe; name is what errors call it.
func startService(name string, cmd *exec.Cmd) (*service, error) {
	s := &service{name: name, out: &lockedBuffer{}, exited: make(chan struct{}), cmd: cmd}
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// stop ends the process (closing its input, then killing it) and waits for
// it; it is safe to call more than once.
func (s *service) stop() {
	s.once.Do(func() {
		s.stopped.Store(true)
		s.stdin.Close()
		s.cmd.Process.Kill()
		<-s.exited
	})
}

// died says, once the process has exited without stop, how it ended and
// the end of its output; "" while it runs or after stop.
func (s *service) died() string {
	select {
	case <-s.exited:
	default:
		return ""
	}
	if s.stopped.Load() {
		return ""
	}
	return fmt.Sprintf("%s exited (%v); the end of its output:\n%s", s.name, s.waitErr, tail(s.out.Bytes(), 2000))
}
