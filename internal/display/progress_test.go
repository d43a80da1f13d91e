package display

import (
	"math"
	"testing"
	"time"
)

func TestProgress_Line(t *testing.T) {
	p := Progress{Ended: 250, Total: 1000, PerMinute: 50, Elapsed: 5 * time.Minute, Extra: "2 given up"}
	if got, want := p.Line(10), "[==>       ] 250/1000 parts (25%), 2 given up, 50/min, ETA 15m0s, elapsed 5m0s"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	p.PerMinute = math.NaN()
	if got, want := p.Line(0), "250/1000 parts (25%), 2 given up, rate not known yet, elapsed 5m0s"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	if _, ok := p.ETA(); ok {
		t.Error("an ETA without a rate")
	}
	done := Progress{Ended: 10, Total: 10, PerMinute: 3}
	if got, want := done.Line(4), "[====] 10/10 parts (100%), 3.0/min"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

func TestMeter(t *testing.T) {
	var m Meter
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	if !math.IsNaN(m.PerMinute()) {
		t.Error("a rate from no samples")
	}
	m.Add(t0, 100)
	m.Add(t0.Add(30*time.Second), 130)
	if got := m.PerMinute(); got != 60 {
		t.Errorf("PerMinute = %v, want 60", got)
	}
	// Older samples fall out of the window: the rate is the recent one.
	m.Add(t0.Add(90*time.Second), 130)
	m.Add(t0.Add(150*time.Second), 130)
	if got := m.PerMinute(); got != 0 {
		t.Errorf("PerMinute after a stall = %v, want 0", got)
	}
}
