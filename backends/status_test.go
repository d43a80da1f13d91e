package backends

import "testing"

func TestStatus_HasPart(t *testing.T) {
	tests := []struct {
		name string
		s    Status
		in   []int64
		out  []int64
	}{
		{"zero-based", Status{Total: 3}, []int64{0, 1, 2}, []int64{-1, 3}},
		{"node", Status{Total: 3, FirstPart: 1}, []int64{1, 2, 3}, []int64{0, 4}},
		{"either numbering", Status{Total: 3, EitherNumbering: true}, []int64{0, 1, 2, 3}, []int64{-1, 4}},
	}
	for _, tc := range tests {
		for _, p := range tc.in {
			if !tc.s.HasPart(p) {
				t.Errorf("%s: HasPart(%d) = false, want true", tc.name, p)
			}
		}
		for _, p := range tc.out {
			if tc.s.HasPart(p) {
				t.Errorf("%s: HasPart(%d) = true, want false", tc.name, p)
			}
		}
	}
}
