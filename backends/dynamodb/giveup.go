package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/wp-tools/wp/backends"
)

// errGiveUpUnsupported: this store does not record given-up parts yet.
var errGiveUpUnsupported = fmt.Errorf("this progress store does not record given-up parts yet (%w)", errors.ErrUnsupported)

// GiveUp implements backends.Driver.
func (st *Store) GiveUp(ctx context.Context, jobID string, part int64, info backends.GiveUpInfo) (backends.Completion, error) {
	return backends.Completion{}, errGiveUpUnsupported
}

// GivenUp implements backends.Driver.
func (st *Store) GivenUp(ctx context.Context, jobID string, fn func(backends.GivenUpPart) error) error {
	return errGiveUpUnsupported
}

// Retry implements backends.Driver.
func (st *Store) Retry(ctx context.Context, jobID string, parts []int64) ([]int64, error) {
	return nil, errGiveUpUnsupported
}
