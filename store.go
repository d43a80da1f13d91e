package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/dynamodb"
	_ "github.com/wp-tools/wp/backends/redis"
	"github.com/wp-tools/wp/backends/sqlite"
)

// defaultStoreTimeout bounds each store call so an unreachable store makes wp
// give up instead of hanging. WP_STORE_TIMEOUT overrides it.
const defaultStoreTimeout = 30 * time.Second

// storeURL says which store to use and why: --progress / WP_PROGRESS, else
// watchbot's ProgressTable (DynamoDB), else the embedded SQLite file.
func storeURL(c *cli.Context) (string, string, error) {
	if u := c.String("progress"); u != "" {
		src := "--progress"
		if !c.IsSet("progress") || os.Getenv("WP_PROGRESS") == u {
			src = "WP_PROGRESS"
		}
		return u, src, nil
	}
	return defaultStoreURL()
}

// defaultStoreURL is the store used without --progress and WP_PROGRESS.
func defaultStoreURL() (string, string, error) {
	if t := os.Getenv("ProgressTable"); t != "" {
		name, err := dynamodb.TableFromARN(t)
		if err != nil {
			return "", "", fmt.Errorf("ProgressTable: %w", err)
		}
		return "dynamodb://" + name, "ProgressTable", nil
	}
	u, err := sqlite.DefaultURL()
	if err != nil {
		return "", "", fmt.Errorf("default progress store: %w (set --progress or WP_PROGRESS)", err)
	}
	return u, "the default", nil
}

// parseStoreTimeout reads WP_STORE_TIMEOUT; the app does it once, at start.
func parseStoreTimeout() (time.Duration, error) {
	s := os.Getenv("WP_STORE_TIMEOUT")
	if s == "" {
		return defaultStoreTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("WP_STORE_TIMEOUT=%q: want a positive duration such as 30s", s)
	}
	return d, nil
}

// openStore opens the chosen store; every call on it is bounded by
// WP_STORE_TIMEOUT. A bad WP_STORE_TIMEOUT is a usage error.
func (a *appState) openStore(c *cli.Context) (*backends.Store, error) {
	if a.storeTimeoutErr != nil {
		return nil, withCode(exitUsage, a.storeTimeoutErr)
	}
	u, src, err := storeURL(c)
	if err != nil {
		return nil, err
	}
	a.logger().Debug("progress store", "url", backends.Redact(u), "from", src)
	return backends.Open(c.Context, u, a.storeTimeout)
}

// withJob opens the store, runs fn with the job id argument, and turns
// ErrNotFound into "no such job: ID": what the one-job commands share.
func (a *appState) withJob(c *cli.Context, fn func(st *backends.Store, id string) error) error {
	id, err := jobIDArg(c)
	if err != nil {
		return err
	}
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	return notFound(id, fn(st, id))
}
