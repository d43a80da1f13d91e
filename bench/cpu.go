package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverPID finds the process whose command line holds all of words (the
// harness's own redis-server or dynalite, told apart by their port).
func serverPID(words ...string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		all := true
		for _, w := range words {
			found := false
			for _, a := range args {
				if strings.Contains(a, w) {
					found = true
					break
				}
			}
			if !found {
				all = false
				break
			}
		}
		if all {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	return 0
}

// cpuTime is the user+system CPU time pid has used (0 if unknown).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// Fields after the command: state is f[0]; utime and stime are the
	// 14th and 15th fields of the whole line, f[11] and f[12] here.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures, over a stretch of wall time, how busy a server and
// this process were, as a share of one core.
type cpuMeter struct {
	pid                int
	wall               time.Time
	server, self       time.Duration
	serverSum, selfSum time.Duration
	wallSum            time.Duration
}

func (m *cpuMeter) start() {
	m.wall, m.server, m.self = time.Now(), cpuTime(m.pid), selfCPU()
}

func (m *cpuMeter) stop() {
	m.wallSum += time.Since(m.wall)
	m.serverSum += cpuTime(m.pid) - m.server
	m.selfSum += selfCPU() - m.self
}

// shares: server and self CPU as a percentage of one core over the measured wall time.
func (m *cpuMeter) shares() (server, self float64) {
	if m.wallSum <= 0 {
		return 0, 0
	}
	return 100 * m.serverSum.Seconds() / m.wallSum.Seconds(), 100 * m.selfSum.Seconds() / m.wallSum.Seconds()
}
