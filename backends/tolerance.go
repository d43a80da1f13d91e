package backends

import (
	"fmt"
	"strconv"
	"strings"
)

// Tolerance is how many given-up parts a job tolerates before it fails: a
// number of parts, or a share of the job's parts (in hundredths of a
// percent, so that the arithmetic is exact).
type Tolerance struct {
	// Parts is the number of parts tolerated, unless Percent.
	Parts int64
	// Percent: the tolerance is BasisPoints/100 percent of the parts.
	Percent     bool
	BasisPoints int64
}

// ParseTolerance reads "N" (a number of parts) or "P%" (a share of the
// job's parts, 0 to 100, at most two decimals). "" is 0.
func ParseTolerance(s string) (Tolerance, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Tolerance{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		whole, frac, _ := strings.Cut(strings.TrimSpace(p), ".")
		if len(frac) > 2 || whole == "" || strings.ContainsAny(whole+frac, "+-") {
			return Tolerance{}, fmt.Errorf("%q is not a share of parts: want a percentage from 0%% to 100%% with at most two decimals, such as 5%% or 0.5%%", s)
		}
		w, err1 := strconv.ParseInt(whole, 10, 64)
		f := int64(0)
		var err2 error
		if frac != "" {
			f, err2 = strconv.ParseInt(frac+strings.Repeat("0", 2-len(frac)), 10, 64)
		}
		if err1 != nil || err2 != nil || w > 100 || (w == 100 && f > 0) {
			return Tolerance{}, fmt.Errorf("%q is not a share of parts: want a percentage from 0%% to 100%%, such as 5%%", s)
		}
		return Tolerance{Percent: true, BasisPoints: w*100 + f}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return Tolerance{}, fmt.Errorf("%q is not a number of parts or a percentage: want N (0 or more parts) or P%% (a share of the parts), such as 3 or 5%%", s)
	}
	return Tolerance{Parts: n}, nil
}

// Limit is the most given-up parts a job of total parts tolerates: Parts,
// or the share rounded down (10% of 25 parts tolerates 2).
func (t Tolerance) Limit(total int64) int64 {
	if t.Percent {
		return total * t.BasisPoints / 10000
	}
	return t.Parts
}

// String is the tolerance as ParseTolerance reads it: "3", "10%", "2.5%".
func (t Tolerance) String() string {
	if !t.Percent {
		return strconv.FormatInt(t.Parts, 10)
	}
	s := strconv.FormatInt(t.BasisPoints/100, 10)
	if f := t.BasisPoints % 100; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", f), "0")
	}
	return s + "%"
}

// ToleranceReason is the failure reason of a job whose given-up parts
// outnumber its tolerance.
func ToleranceReason(givenUp int64, t Tolerance, total int64) string {
	if t.Percent {
		return fmt.Sprintf("%d parts given up (tolerance %s: %d of %d parts)", givenUp, t, t.Limit(total), total)
	}
	return fmt.Sprintf("%d parts given up (tolerance %s)", givenUp, t)
}
