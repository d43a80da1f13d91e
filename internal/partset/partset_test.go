package partset

import "testing"

func TestSet(t *testing.T) {
	s := New(1, 130) // parts 1..130, as a Node-library job numbers them
	for _, p := range []int64{1, 64, 65, 130} {
		if !s.Add(p) {
			t.Fatalf("Add(%d) = false, want true", p)
		}
	}
	for _, p := range []int64{0, 131, -1} {
		if s.Add(p) {
			t.Errorf("Add(%d) = true for a part outside 1..130", p)
		}
	}
	for p := int64(-1); p <= 132; p++ {
		want := p == 1 || p == 64 || p == 65 || p == 130
		if got := s.Has(p); got != want {
			t.Errorf("Has(%d) = %v, want %v", p, got, want)
		}
	}
	if got, want := s.First(), int64(1); got != want {
		t.Errorf("First() = %d, want %d", got, want)
	}
	if got := New(0, 0); got.Has(0) || got.Add(0) {
		t.Error("an empty job's set holds part 0")
	}
}
