package worker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// CodeSet is a set of exit codes such as "3,10-20": the codes of the
// command that fail the whole job.
type CodeSet map[int]bool

// ParseCodeSet parses a comma-separated list of exit codes and ranges
// (1 to 255). Its errors name the bad item.
func ParseCodeSet(s string) (CodeSet, error) {
	set := CodeSet{}
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("%q has an empty item (want codes and ranges from 1 to 255, such as 3,10-20)", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		if isRange && (strings.TrimSpace(lo) == "" || strings.TrimSpace(hi) == "") {
			return nil, codeErr(s, item, fmt.Errorf("%q is not an exit code or a range of them", item))
		}
		a, err := parseCode(lo)
		if err != nil {
			return nil, codeErr(s, item, err)
		}
		b := a
		if isRange {
			if b, err = parseCode(hi); err != nil {
				return nil, codeErr(s, item, err)
			}
			if b < a {
				return nil, codeErr(s, item, fmt.Errorf("the range %s runs backwards", item))
			}
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	return set, nil
}

// codeErr names the item only when the list holds more than it.
func codeErr(list, item string, err error) error {
	if strings.TrimSpace(list) == item {
		return fmt.Errorf("%v (want codes and ranges from 1 to 255, such as 3,10-20)", err)
	}
	return fmt.Errorf("in %q: %v (want codes and ranges from 1 to 255, such as 3,10-20)", list, err)
}

func parseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an exit code", s)
	}
	if n < 1 || n > 255 {
		return 0, fmt.Errorf("%d is not an exit code from 1 to 255", n)
	}
	return n, nil
}

func (s CodeSet) String() string {
	codes := make([]int, 0, len(s))
	for c := range s {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}
