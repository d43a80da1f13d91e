package backendtest

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The tests of GivenUp: the given-up parts, listed.

// testGivenUpList: GivenUp lists given-up parts in ascending order with what
// was recorded (At to the millisecond, Stderr cut to MaxStderrTail), and
// stops when fn returns an error.
func testGivenUpList(t *testing.T, st *backends.Store) {
	const id = "job-gul2"
	const total = 1300
	c := ctx(t)
	mustCreateJob(t, st, backends.Job{ID: id, Total: total, Tolerance: backends.Tolerance{Percent: true, BasisPoints: 10000}})
	at := time.Date(2026, 11, 29, 8, 15, 42, 123_456_789, time.UTC)
	long := strings.Repeat("x", 1000) + "é the end\n"
	want := map[int64]backends.GiveUpInfo{
		7:    {ExitCode: 2, ReceiveCount: 10, At: at, Stderr: "boom\nline two: \"quoted\" ünïcode\n"},
		3:    {ExitCode: 137, Signal: "SIGKILL", ReceiveCount: 12, At: at.Add(time.Hour), Stderr: ""},
		1299: {ExitCode: 1, ReceiveCount: 1, At: at.Add(-time.Minute), Stderr: long},
	}
	// Enough parts to span pages in every store.
	for p := int64(100); p < 1200; p++ {
		want[p] = backends.GiveUpInfo{ExitCode: int(p % 200), ReceiveCount: int(p), At: at.Add(time.Duration(p) * time.Millisecond), Stderr: fmt.Sprint("part ", p)}
	}
	order := make([]int64, 0, len(want))
	for p := range want {
		order = append(order, p)
	}
	// Given up in descending order: the listing must sort.
	sort.Slice(order, func(a, b int) bool { return order[a] > order[b] })
	for _, p := range order {
		if _, err := st.GiveUp(c, id, p, want[p]); err != nil {
			t.Fatalf("GiveUp(%d): %v", p, err)
		}
	}
	// A duplicate give-up does not overwrite what was recorded.
	if r, err := st.GiveUp(c, id, 7, backends.GiveUpInfo{ExitCode: 99, Stderr: "other"}); err != nil || !r.Duplicate {
		t.Fatalf("duplicate GiveUp(7) = %+v, %v; want Duplicate", r, err)
	}
	got := givenUp(t, st, id)
	if len(got) != len(want) {
		t.Fatalf("GivenUp listed %d parts, want %d", len(got), len(want))
	}
	for i, g := range got {
		if i > 0 && g.Part <= got[i-1].Part {
			t.Fatalf("GivenUp listed part %d after %d: want ascending order", g.Part, got[i-1].Part)
		}
		w, ok := want[g.Part]
		if !ok {
			t.Fatalf("GivenUp listed part %d, which was not given up", g.Part)
		}
		w.At = w.At.Truncate(time.Millisecond)
		w.Stderr = backends.StderrTail(w.Stderr)
		if g.ExitCode != w.ExitCode || g.Signal != w.Signal || g.ReceiveCount != w.ReceiveCount || !g.At.Equal(w.At) || g.Stderr != w.Stderr {
			t.Errorf("GivenUp part %d = %+v, want %+v", g.Part, g.GiveUpInfo, w)
		}
	}
	if g := got[len(got)-1]; len(g.Stderr) > backends.MaxStderrTail || !strings.HasSuffix(g.Stderr, "é the end\n") {
		t.Errorf("part %d Stderr kept %d bytes ending %q, want at most %d, its end", g.Part, len(g.Stderr), g.Stderr[max(0, len(g.Stderr)-12):], backends.MaxStderrTail)
	}
	checkCounts(t, st, id, total-int64(len(want)), int64(len(want)))

	stop := errors.New("stop")
	var seen []int64
	err := st.GivenUp(c, id, func(p backends.GivenUpPart) error {
		seen = append(seen, p.Part)
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("GivenUp err = %v, want the callback's error", err)
	}
	if want := []int64{3, 7, 100}; !reflect.DeepEqual(seen, want) {
		t.Errorf("GivenUp called fn with %v before stopping, want %v", seen, want)
	}
	// At set by the Store when zero.
	before := time.Now().Add(-2 * time.Second)
	if _, err := st.GiveUp(c, id, 0, backends.GiveUpInfo{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if g := givenUp(t, st, id)[0]; g.Part != 0 || g.At.Before(before) || g.At.After(time.Now().Add(2*time.Second)) {
		t.Errorf("GivenUp part 0 = %+v, want At about now", g)
	}
}

// testGivenUpEmpty: a job with nothing given up lists nothing.
func testGivenUpEmpty(t *testing.T, st *backends.Store) {
	mustCreate(t, st, "job-gue", 3, "")
	if got := givenUp(t, st, "job-gue"); len(got) != 0 {
		t.Errorf("GivenUp of a fresh job = %v, want none", got)
	}
}
