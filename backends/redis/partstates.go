package redis

import (
	"context"
	"errors"

	"github.com/wp-tools/wp/backends"
)

// PartStates implements backends.Driver: not yet for this store (the
// conformance suite fails on it until it is).
func (st *Store) PartStates(ctx context.Context, jobID string, parts []int64) ([]backends.PartState, error) {
	return nil, errors.New("PartStates: not implemented by this store yet")
}
