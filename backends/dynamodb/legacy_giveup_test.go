package dynamodb

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/wp-tools/wp/backends"
)

// TestLegacy_GivenUp: a legacy job (either library's item) is given up on
// its one item, fails at once (a legacy job tolerates none) with the error
// both libraries read, and wp retry revives it.
func TestLegacy_GivenUp(t *testing.T) {
	for _, first := range []int64{0, 1} {
		t.Run(fmt.Sprintf("first=%d", first), func(t *testing.T) {
			st, _ := newTable(t)
			ctx := testCtx(t)
			id := fmt.Sprintf("legacy-gu-%d", first)
			putLegacy(t, st, id, seq(first, first+4), 5, nil)
			c, err := st.GiveUp(ctx, id, first+2, backends.GiveUpInfo{ExitCode: 9, ReceiveCount: 10, Stderr: "boom"})
			if err != nil || !c.Failed || c.Done {
				t.Fatalf("GiveUp = %+v, %v; want Failed", c, err)
			}
			raw := rawItem(t, st, id)
			if nsContains(raw, attrParts, first+2) || !nsContains(raw, attrGivenUp, first+2) {
				t.Errorf("legacy item = %v, want part %d moved from parts to wpGivenUp", raw, first+2)
			}
			if e := getStr(raw, attrError); e != backends.ToleranceReason(1, backends.Tolerance{}, 5) {
				t.Errorf("error = %q, want the tolerance reason", e)
			}
			s, err := st.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Remaining != 4 || s.GivenUp != 1 || !s.FailedByTolerance || s.FirstPart != first {
				t.Errorf("Status = %+v", s)
			}
			var listed []backends.GivenUpPart
			if err := st.GivenUp(ctx, id, func(p backends.GivenUpPart) error { listed = append(listed, p); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(listed) != 1 || listed[0].Part != first+2 || listed[0].ExitCode != 9 || listed[0].Stderr != "boom" {
				t.Errorf("GivenUp = %+v", listed)
			}
			if _, err := st.Complete(ctx, id, first); !errors.Is(err, backends.ErrJobFailed) {
				t.Errorf("Complete on the failed legacy job: err = %v, want ErrJobFailed", err)
			}
			moved, err := st.Retry(ctx, id, []int64{first + 2})
			if err != nil || !reflect.DeepEqual(moved, []int64{first + 2}) {
				t.Fatalf("Retry = %v, %v", moved, err)
			}
			raw = rawItem(t, st, id)
			if !nsContains(raw, attrParts, first+2) || raw[attrError] != nil || raw[attrGivenUp] != nil {
				t.Errorf("legacy item after Retry = %v, want the part pending and no error", raw)
			}
			for p := first; p < first+5; p++ {
				c, err := st.Complete(ctx, id, p)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := c.Finisher, p == first+4; got != want {
					t.Errorf("Complete(%d).Finisher = %v, want %v", p, got, want)
				}
			}
		})
	}
}

// TestLegacy_Converted: a legacy job that tolerates given-up parts (its
// item carries wpTolLimit) converts a given-up part on a later completion.
func TestLegacy_Converted(t *testing.T) {
	st, _ := newTable(t)
	ctx := testCtx(t)
	putLegacy(t, st, "legacy-conv", seq(0, 2), 3, item{attrTolLimit: num(3)})
	if c, err := st.GiveUp(ctx, "legacy-conv", 1, backends.GiveUpInfo{}); err != nil || c.Failed {
		t.Fatalf("GiveUp = %+v, %v", c, err)
	}
	if c, err := st.GiveUp(ctx, "legacy-conv", 1, backends.GiveUpInfo{}); err != nil || !c.Duplicate {
		t.Fatalf("second GiveUp = %+v, %v; want Duplicate", c, err)
	}
	c, err := st.Complete(ctx, "legacy-conv", 1)
	if err != nil || c.Duplicate || c.Finisher {
		t.Fatalf("Complete of the given-up part = %+v, %v; want a conversion", c, err)
	}
	if s, err := st.Status(ctx, "legacy-conv"); err != nil || s.GivenUp != 0 || s.Remaining != 2 {
		t.Errorf("Status = %+v, %v", s, err)
	}
	if c, err := st.Complete(ctx, "legacy-conv", 1); err != nil || !c.Duplicate {
		t.Errorf("Complete again = %+v, %v; want Duplicate", c, err)
	}
}
