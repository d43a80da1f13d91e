// Package partset is a set of a job's parts, one bit a part: the parts wp
// local still has to run, the parts wp retry publishes again. 1,000,000
// parts take 125 KB.
package partset

// Set holds parts first..first+total-1.
type Set struct {
	first, total int64
	bits         []uint64
}

// New is an empty set of the parts first..first+total-1.
func New(first, total int64) *Set {
	return &Set{first: first, total: total, bits: make([]uint64, (max(total, 0)+63)/64)}
}

// Add adds part; it returns false, adding nothing, when part is not one of
// the set's parts.
func (s *Set) Add(part int64) bool {
	i := part - s.first
	if i < 0 || i >= s.total {
		return false
	}
	s.bits[i/64] |= 1 << (uint(i) % 64)
	return true
}

// Has says whether part is in the set.
func (s *Set) Has(part int64) bool {
	i := part - s.first
	if i < 0 || i >= s.total {
		return false
	}
	return s.bits[i/64]&(1<<(uint(i)%64)) != 0
}

// First is the set's first part (part i of the input is First()+i).
func (s *Set) First() int64 { return s.first }
