package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// row is one measured case. Samples are in unit; the median, min and max
// are computed when the report is written.
type row struct {
	name    string
	unit    string // "ms", "s", "parts/s"
	higher  bool   // a higher figure is better (rates)
	samples []float64
	rss     []float64 // peak RSS in MiB per sample, when measured
	extra   string    // another measured figure (already formatted from samples)
	// baseline names another row of the same section; the ratio column
	// compares this row's median with it.
	baseline string
	command  string
	note     string
	target   *target
	// notRun says why the case was not run (it stays in the table).
	notRun string
}

// target is a goal from the issues; met is computed from the medians.
type target struct {
	text string
	met  func(r *row, s *section) (bool, bool) // (met, known)
}

type section struct {
	key, title, intro string
	rows              []*row
	after             []string // measured summary lines written under the table
}

func (s *section) add(r *row) *row {
	s.rows = append(s.rows, r)
	return r
}

func (s *section) find(name string) *row {
	for _, r := range s.rows {
		if r.name == name {
			return r
		}
	}
	return nil
}

type report struct {
	quick           bool
	sections        []*section
	sectionTime     map[string]time.Duration
	skippedSections []string
	total           time.Duration
}

func newReport(quick bool) *report {
	return &report{quick: quick, sectionTime: map[string]time.Duration{}}
}

func (rp *report) section(key, title, intro string) *section {
	s := &section{key: key, title: title, intro: intro}
	rp.sections = append(rp.sections, s)
	return s
}

func (r *row) median() float64 { return median(r.samples) }

// speedup of r over b: above 1 means r is faster (less time, higher rate).
func speedup(r, b *row) float64 {
	if r.higher {
		return r.median() / b.median()
	}
	return b.median() / r.median()
}

func fmtNum(v float64, unit string) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case unit == "parts/s" || unit == "completions/s":
		return commas(int64(math.Round(v)))
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func (rp *report) write(path, cmdline, machine, notes string) error {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# wp benchmarks\n\n")
	w("Written by `%s` on %s (%.0f s). Every figure below was measured in that one run, on this machine, against services the harness started on loopback; nothing is typed by hand except the targets, which come from the issues. Re-run the command to reproduce.\n\n", cmdline, time.Now().UTC().Format("2006-01-02 15:04 UTC"), rp.total.Seconds())
	w("%s\n", machine)
	if rp.quick {
		w("**-quick run**: fewer runs and smaller sizes than the full run; cases marked *not run* are measured by `go run ./bench`.\n\n")
	}
	if len(rp.skippedSections) > 0 {
		w("**Partial run**: sections %s were not run (-only).\n\n", strings.Join(rp.skippedSections, ", "))
	}
	w("How to read the tables: *median* and *min-max* are over the runs (or, for per-process cases, over the processes); *vs baseline* compares the medians with the row named there, measured in the same run; peak RSS is the kernel's ru_maxrss of the process (`wait4` rusage), in MiB.\n\n")

	// Targets first: the summary a reader wants.
	var tl []string
	for _, s := range rp.sections {
		for _, r := range s.rows {
			if r.target == nil {
				continue
			}
			status := "not run"
			if r.notRun == "" && len(r.samples) > 0 {
				met, known := r.target.met(r, s)
				switch {
				case !known:
					status = "not measured"
				case met:
					status = "**met**"
				default:
					status = "**missed**"
				}
			}
			tl = append(tl, fmt.Sprintf("| %s | %s | %s | %s |", r.name, r.target.text, rowFigure(r), status))
		}
	}
	if len(tl) > 0 {
		w("## Targets from the issues\n\n| case | target | measured (median) | |\n|---|---|---|---|\n%s\n\n", strings.Join(tl, "\n"))
	}

	for _, s := range rp.sections {
		w("## %s\n\n", s.title)
		if s.intro != "" {
			w("%s\n\n", s.intro)
		}
		w("| case | median | min-max | runs | vs baseline | peak RSS MiB (median) | other |\n|---|---|---|---|---|---|---|\n")
		for _, r := range s.rows {
			if r.notRun != "" || len(r.samples) == 0 {
				why := r.notRun
				if why == "" {
					why = "no sample"
				}
				w("| %s | *not run* | | | | | %s |\n", r.name, why)
				continue
			}
			lo, hi := minMax(r.samples)
			vs := ""
			if r.baseline != "" {
				if b := s.find(r.baseline); b != nil && b.notRun == "" && len(b.samples) > 0 {
					sp := speedup(r, b)
					if sp >= 1 {
						vs = fmt.Sprintf("%.2f× faster than %s", sp, b.name)
					} else {
						vs = fmt.Sprintf("%.2f× slower than %s", 1/sp, b.name)
					}
				}
			}
			rss := ""
			if len(r.rss) > 0 {
				rss = fmt.Sprintf("%.0f", median(r.rss))
			}
			other := r.extra
			if r.note != "" {
				other = strings.TrimPrefix(other+"; "+r.note, "; ")
			}
			w("| %s | %s %s | %s-%s | %d | %s | %s | %s |\n", r.name, fmtNum(r.median(), r.unit), r.unit, fmtNum(lo, r.unit), fmtNum(hi, r.unit), len(r.samples), vs, rss, other)
		}
		w("\n")
		for _, a := range s.after {
			w("%s\n\n", a)
		}
		w("Commands (as run; `$WP` is wp built with `CGO_ENABLED=0 go build`, services on loopback):\n\n")
		var cmds []string
		names := map[string][]string{}
		for _, r := range s.rows {
			if r.command == "" {
				continue
			}
			if _, seen := names[r.command]; !seen {
				cmds = append(cmds, r.command)
			}
			names[r.command] = append(names[r.command], r.name)
		}
		for _, c := range cmds {
			w("- %s: `%s`\n", strings.Join(names[c], "; "), c)
		}
		if d, ok := rp.sectionTime[s.key]; ok {
			w("\nThis section took %.0f s.\n", d.Seconds())
		}
		w("\n")
	}
	if strings.TrimSpace(notes) != "" {
		w("## Notes (prose kept in bench/notes.md; figures are in the tables above)\n\n%s\n", strings.TrimSpace(notes))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func rowFigure(r *row) string {
	if r.notRun != "" || len(r.samples) == 0 {
		return ""
	}
	s := fmtNum(r.median(), r.unit) + " " + r.unit
	if len(r.rss) > 0 {
		s += fmt.Sprintf(", peak RSS %.0f MiB", median(r.rss))
	}
	return s
}

// Targets.

func below(limit float64, text string) *target {
	return &target{text: text, met: func(r *row, _ *section) (bool, bool) { return r.median() < limit, true }}
}

func atLeast(limit float64, text string) *target {
	return &target{text: text, met: func(r *row, _ *section) (bool, bool) { return r.median() >= limit, true }}
}

func rssBelow(limitMiB float64, text string) *target {
	return &target{text: text, met: func(r *row, _ *section) (bool, bool) {
		if len(r.rss) == 0 {
			return false, false
		}
		return median(r.rss) < limitMiB, true
	}}
}

func and(text string, ts ...*target) *target {
	return &target{text: text, met: func(r *row, s *section) (bool, bool) {
		for _, t := range ts {
			met, known := t.met(r, s)
			if !known {
				return false, false
			}
			if !met {
				return false, true
			}
		}
		return true, true
	}}
}

// fasterThan: at least x times the speed of the named row.
func fasterThan(other string, x float64, text string) *target {
	return &target{text: text, met: func(r *row, s *section) (bool, bool) {
		b := s.find(other)
		if b == nil || b.notRun != "" || len(b.samples) == 0 {
			return false, false
		}
		return speedup(r, b) >= x, true
	}}
}

// machine describes this computer from /proc.
func (e *env) machine() string {
	model := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	vers := map[string]string{}
	for _, c := range [][]string{{"node", "--version"}, {"redis-server", "--version"}} {
		if out, err := commandOutput(c...); err == nil {
			vers[c[0]] = out
		}
	}
	peers := peerVersions(e.root)
	return fmt.Sprintf(`| machine | |
|---|---|
| CPU | %s |
| cores | %d |
| memory | %s |
| load average when the report was written (1, 5, 15 min) | %s |
| OS / arch | %s/%s |
| Go | %s |
| Node.js | %s |
| redis-server | %s |
| peers (bench/package-lock.json) | %s |
| dynalite (package-lock.json) | %s |
`, model, runtime.NumCPU(), mem, load, runtime.GOOS, runtime.GOARCH, runtime.Version(), vers["node"], firstField(vers["redis-server"], "v="), peers, lockVersion(e.root, "node_modules/dynalite"))
}

func firstField(s, prefix string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, prefix) {
			return strings.TrimPrefix(f, prefix)
		}
	}
	return s
}

func peerVersions(root string) string {
	var out []string
	for _, p := range []string{"@mapbox/watchbot-progress", "bullmq", "ioredis"} {
		out = append(out, p+" "+lockVersion(root+"/bench", "node_modules/"+p))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
