package backends

import "testing"

func TestParseTolerance(t *testing.T) {
	for _, tc := range []struct {
		in      string
		str     string
		limit25 int64 // Limit(25)
	}{
		{"", "0", 0},
		{"0", "0", 0},
		{"2", "2", 2},
		{"10%", "10%", 2}, // 2.5 rounds down
		{"12%", "12%", 3},
		{"100%", "100%", 25},
		{"0%", "0%", 0},
		{"2.5%", "2.5%", 0},
		{"4.04%", "4.04%", 1},
		{" 7 ", "7", 7},
	} {
		tol, err := ParseTolerance(tc.in)
		if err != nil {
			t.Errorf("ParseTolerance(%q): %v", tc.in, err)
			continue
		}
		if got := tol.String(); got != tc.str {
			t.Errorf("ParseTolerance(%q).String() = %q, want %q", tc.in, got, tc.str)
		}
		if got := tol.Limit(25); got != tc.limit25 {
			t.Errorf("ParseTolerance(%q).Limit(25) = %d, want %d", tc.in, got, tc.limit25)
		}
		again, err := ParseTolerance(tol.String())
		if err != nil || again != tol {
			t.Errorf("ParseTolerance(%q) does not round-trip: %+v, %v", tol.String(), again, err)
		}
	}
	for _, bad := range []string{"-1", "150%", "abc", "1.5", "%", "-5%", "100.5%", "1.234%", "+3", "3 %x", "99999999999999999999"} {
		if _, err := ParseTolerance(bad); err == nil {
			t.Errorf("ParseTolerance(%q) succeeded, want an error", bad)
		}
	}
}
