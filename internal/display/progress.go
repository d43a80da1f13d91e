package display

import (
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress is where a job stands, as a progress line shows it.
type Progress struct {
	Ended, Total int64
	// PerMinute is parts ended per minute lately (NaN: not known yet).
	PerMinute float64
	// Elapsed is how long the job (or run) has taken so far.
	Elapsed time.Duration
	// Extra is said after the figures ("2 given up").
	Extra string
}

// ETA is how long the parts left take at PerMinute (ok false when the rate
// is not known or zero).
func (p Progress) ETA() (time.Duration, bool) {
	left := p.Total - p.Ended
	if left <= 0 {
		return 0, true
	}
	if math.IsNaN(p.PerMinute) || p.PerMinute <= 0 {
		return 0, false
	}
	return time.Duration(float64(left) / p.PerMinute * float64(time.Minute)), true
}

// Line is the progress as one line: a bar of width cells (none when width
// is 0), the counts, the rate, the ETA and the elapsed time.
func (p Progress) Line(width int) string {
	var b strings.Builder
	frac := 0.0
	if p.Total > 0 {
		frac = float64(p.Ended) / float64(p.Total)
	}
	if width > 0 {
		full := int(frac * float64(width))
		b.WriteByte('[')
		b.WriteString(strings.Repeat("=", full))
		if full < width {
			b.WriteByte('>')
			b.WriteString(strings.Repeat(" ", width-full-1))
		}
		b.WriteString("] ")
	}
	fmt.Fprintf(&b, "%d/%d parts (%.0f%%)", p.Ended, p.Total, 100*frac)
	if p.Extra != "" {
		b.WriteString(", " + p.Extra)
	}
	b.WriteString(", " + RateWords(p.PerMinute))
	if eta, ok := p.ETA(); ok && p.Ended < p.Total {
		b.WriteString(", ETA " + Round(eta).String())
	}
	if p.Elapsed > 0 {
		b.WriteString(", elapsed " + Round(p.Elapsed).String())
	}
	return b.String()
}

// RateWords says a rate per minute ("1234/min", "rate not known yet").
func RateWords(perMinute float64) string {
	switch {
	case math.IsNaN(perMinute):
		return "rate not known yet"
	case perMinute >= 10:
		return fmt.Sprintf("%.0f/min", perMinute)
	default:
		return fmt.Sprintf("%.1f/min", perMinute)
	}
}

// Round rounds d for people: to the second, or the minute past an hour.
func Round(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// PerMinute is n parts over window, per minute (NaN when window is 0).
func PerMinute(n int64, window time.Duration) float64 {
	if window <= 0 {
		return math.NaN()
	}
	return float64(n) / window.Minutes()
}

// Meter measures a rate from successive counts of ended parts: the rate
// over the last Window of samples (a minute by default).
type Meter struct {
	Window  time.Duration
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at    time.Time
	ended int64
}

// Add records that ended parts had ended at time at.
func (m *Meter) Add(at time.Time, ended int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, sample{at, ended})
	w := m.Window
	if w <= 0 {
		w = time.Minute
	}
	// Keep one sample older than the window, to measure across it.
	for len(m.samples) > 2 && at.Sub(m.samples[1].at) > w {
		m.samples = m.samples[1:]
	}
}

// PerMinute is the rate between the oldest and newest samples (NaN with
// fewer than two, or none a second apart).
func (m *Meter) PerMinute() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) < 2 {
		return math.NaN()
	}
	a, b := m.samples[0], m.samples[len(m.samples)-1]
	if b.at.Sub(a.at) < time.Second {
		return math.NaN()
	}
	return PerMinute(b.ended-a.ended, b.at.Sub(a.at))
}

// Rows is how many rows the terminal f has (0 when f is not one).
func Rows(f any) int {
	file, ok := f.(*os.File)
	if !ok || !term.IsTerminal(int(file.Fd())) {
		return 0
	}
	_, h, err := term.GetSize(int(file.Fd()))
	if err != nil {
		return 0
	}
	return h
}
