package sqlite

import (
	"context"
	"database/sql"
	"math"
	"time"

	"github.com/wp-tools/wp/backends"
)

// listKey is where a page of List ends: jobs come by created_at descending,
// then id ascending, as the index jobs_newest holds them.
type listKey struct {
	created int64
	id      string
}

// List implements backends.Driver: the jobs newest first, read from the
// index jobs_newest in keyset pages of about opt.Limit jobs (listPage to
// maxListPage), opt.Since and the expiry in the WHERE clause. Every job is
// in the index, so opt.Scan changes nothing, and each Status is exact.
func (s *Store) List(ctx context.Context, opt backends.ListOptions, fn func(backends.Status) error) error {
	size := min(max(opt.Limit, listPage), maxListPage)
	since := int64(math.MinInt64)
	if !opt.Since.IsZero() {
		since = unixNanoClamped(opt.Since)
	}
	return pages(ctx, size, listKey{created: math.MaxInt64}, func(st backends.Status) listKey {
		return listKey{st.CreatedAt.UnixNano(), st.ID}
	}, func(after listKey) (*sql.Rows, error) {
		// created_at <= ? is the range on the index; the OR only
		// skips the jobs of the page's last creation time already
		// given.
		return s.db.QueryContext(ctx, `SELECT `+statusColumns+` FROM jobs
			WHERE created_at >= ? AND created_at <= ? AND (created_at < ? OR id > ?) AND `+liveClause+`
			ORDER BY created_at DESC, id LIMIT ?`,
			since, after.created, after.created, after.id, time.Now().Unix(), size)
	}, func(r *sql.Rows) (backends.Status, error) { return scanStatus(r, time.Now()) }, fn)
}

// unixNanoClamped is t in Unix nanoseconds, clamped to what an int64 holds
// (time.UnixNano is undefined outside 1678 to 2262).
func unixNanoClamped(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
