package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/wp-tools/wp/backends"
)

// The methods the store contract gained for batches, expiry and the
// newest-first listing, until this store implements them (the
// conformance suite fails on them until then).

var errUnimplemented = errors.New("not implemented by this store yet")

// CompleteParts implements backends.Driver.
func (st *Store) CompleteParts(ctx context.Context, jobID string, parts []int64) (backends.Completion, error) {
	return backends.Completion{}, errUnimplemented
}

// ShardSize implements backends.Driver.
func (st *Store) ShardSize() int64 { return 0 }

// SetExpiry implements backends.Driver.
func (st *Store) SetExpiry(ctx context.Context, jobID string, at time.Time) error {
	return errUnimplemented
}
