package sqlite

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/wp-tools/wp/backends"
)

// recent is a job's count of ended parts by the minute, kept on its jobs row
// (the recent column) and rewritten by the write that ends parts: n[i]
// parts ended in Unix minute last-i. It holds backends.RecentMinutes
// minutes and no more, so moving to a new minute drops the oldest: the
// count never grows, and no other write is needed to prune it.
type recent struct {
	last int64
	n    [backends.RecentMinutes]uint32
}

// recentBytes is the encoded size: last (8 bytes) and the counts (4 each),
// big-endian.
const recentBytes = 8 + 4*backends.RecentMinutes

// unixMinute is t's minute since the Unix epoch.
func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// decodeRecent reads a recent column; NULL (a job no part of which has
// ended since it was created or migrated) is no counts.
func decodeRecent(b []byte) (recent, error) {
	var r recent
	if len(b) == 0 {
		return r, nil
	}
	if len(b) != recentBytes {
		return r, fmt.Errorf("the recent-ends count holds %d bytes, want %d: the database is damaged", len(b), recentBytes)
	}
	r.last = int64(binary.BigEndian.Uint64(b))
	for i := range r.n {
		r.n[i] = binary.BigEndian.Uint32(b[8+4*i:])
	}
	return r, nil
}

func (r *recent) encode() []byte {
	b := make([]byte, recentBytes)
	binary.BigEndian.PutUint64(b, uint64(r.last))
	for i, n := range r.n {
		binary.BigEndian.PutUint32(b[8+4*i:], n)
	}
	return b
}

// add counts k parts ended in minute. A minute before the last one counted
// (the clock was set back) counts in the last one, so no end is lost.
func (r *recent) add(minute, k int64) {
	if d := minute - r.last; d > 0 {
		if d >= int64(len(r.n)) {
			clear(r.n[:])
		} else {
			copy(r.n[d:], r.n[:int64(len(r.n))-d])
			clear(r.n[:d])
		}
		r.last = minute
	}
	r.n[0] = uint32(min(int64(r.n[0])+k, math.MaxUint32))
}

// since is how many parts ended in minute first or later.
func (r *recent) since(first int64) int64 {
	var sum int64
	for i, n := range r.n {
		if r.last-int64(i) >= first {
			sum += int64(n)
		}
	}
	return sum
}

// window is Status.RecentEnded and RecentWindow at now: the parts counted
// in the last RecentMinutes minutes (the current one included), over the
// time from the first of those minutes, or from when counting began
// (from: the job's creation, or the migration that added the count) if
// that is later.
func (r *recent) window(now, from time.Time) (int64, time.Duration) {
	first := unixMinute(now) - backends.RecentMinutes + 1
	start := time.Unix(first*60, 0)
	if from.After(start) {
		start = from
	}
	return r.since(first), max(now.Sub(start), time.Millisecond)
}
