package memstore

import (
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/backendtest"
)

// TestConformance: the test store behaves as the contract says, so that the
// tests that use it in place of a real store mean what they say.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) *backends.Store { return backends.New(New(), time.Minute) })
}
