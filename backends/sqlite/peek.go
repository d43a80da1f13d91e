package sqlite

import (
	"context"

	"github.com/wp-tools/wp/backends"
)

// Peek is Status: one row, exact whatever the job's size.
func (s *Store) Peek(ctx context.Context, jobID string) (backends.Status, error) {
	return s.Status(ctx, jobID)
}
