package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// TestReadUnits: what a table of 30 read units can afford, measured by the
// proxy on a table holding 200 finished 20-part jobs and one running
// 200,000-part job (BIG, the newest, with 1,000 parts done). Before the
// index and the estimates, listing them all read 1,258 units and the Status
// of BIG 787. The goals: the newest 20 listed in at most 30 units, all 201
// in at most 250, the Status of BIG with stale reads in at most 400. Units
// are deterministic (the proxy counts dynalite's figures by DynamoDB's
// rules). It also reports one Status of a 1,000,000-part job.
func TestReadUnits(t *testing.T) {
	st, p := proxiedTable(t, testservers.ProxyOptions{})
	ctx := testCtx(t)
	stale := backends.AllowStale(ctx)
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("done-%03d", i)
		if err := st.CreateJob(ctx, backends.Job{ID: id, Total: 20, Metadata: []byte(`{"name":"a finished job"}`)}); err != nil {
			t.Fatal(err)
		}
		if c, err := st.CompleteParts(ctx, id, parts(0, 20)); err != nil || !c.Finisher {
			t.Fatalf("CompleteParts of %s = %+v, %v", id, c, err)
		}
	}
	if err := st.CreateJob(ctx, backends.Job{ID: "BIG", Total: 200_000}); err != nil {
		t.Fatal(err)
	}
	for from := int64(0); from < 1000; from += 100 {
		if _, err := st.CompleteParts(ctx, "BIG", parts(from, from+100)); err != nil {
			t.Fatal(err)
		}
	}

	// measure runs fn and returns the read units the proxy counted, and
	// checks them against what the Statuses reported.
	measure := func(what string, fn func() (reported float64, err error)) float64 {
		t.Helper()
		p.Reset()
		reported, err := fn()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := p.Stats().ReadUnits
		if math.Abs(got-reported) > 1e-9 {
			t.Errorf("%s: the Statuses report %.1f read units, the proxy counted %.1f", what, reported, got)
		}
		return got
	}
	list := func(ctx context.Context, opt backends.ListOptions, most int) func() (float64, error) {
		return func() (float64, error) {
			var units float64
			n := 0
			stop := errors.New("enough")
			err := st.List(ctx, opt, func(s backends.Status) error {
				units += s.ReadUnits
				if n++; n == most {
					return stop
				}
				return nil
			})
			if errors.Is(err, stop) {
				err = nil
			}
			if err == nil && most > 0 && n != most {
				err = fmt.Errorf("listed %d jobs, want %d", n, most)
			}
			return units, err
		}
	}
	status := func(ctx context.Context, id string) func() (float64, error) {
		return func() (float64, error) {
			s, err := st.Status(ctx, id)
			return s.ReadUnits, err
		}
	}
	type goal struct {
		what string
		got  float64
		most float64
	}
	goals := []goal{
		{"List of the newest 20", measure("List 20", list(ctx, backends.ListOptions{Limit: 20}, 20)), 30},
		{"List of the newest 20, stale reads", measure("List 20 stale", list(stale, backends.ListOptions{Limit: 20}, 20)), 30},
		{"List of all 201", measure("List all", list(ctx, backends.ListOptions{}, 201)), 250},
		{"List of all 201, stale reads", measure("List all stale", list(stale, backends.ListOptions{}, 201)), 250},
		{"Status of BIG, stale reads", measure("Status BIG stale", status(stale, "BIG")), 400},
	}
	for _, g := range goals {
		t.Logf("%s: %.1f read units (goal: at most %.0f)", g.what, g.got, g.most)
		if g.got > g.most {
			t.Errorf("%s: %.1f read units, want at most %.0f", g.what, g.got, g.most)
		}
	}
	t.Logf("Status of BIG, strongly consistent: %.1f read units", measure("Status BIG", status(ctx, "BIG")))
	t.Logf("Peek of BIG: %.1f read units", measure("Peek BIG", func() (float64, error) {
		s, err := st.Peek(ctx, "BIG")
		return s.ReadUnits, err
	}))
	t.Logf("List of all 201 by Scan (a table without the index): %.1f read units", measure("List Scan", list(ctx, backends.ListOptions{Scan: true}, 201)))

	if err := st.CreateJob(ctx, backends.Job{ID: "MILLION", Total: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Status of a 1,000,000-part job: %.1f read units strongly consistent, %.1f with stale reads",
		measure("Status MILLION", status(ctx, "MILLION")), measure("Status MILLION stale", status(stale, "MILLION")))
}
