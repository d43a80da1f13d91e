package main

import (
	"context"
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

func progressFlag() cli.Flag {
	usage := "progress store URL (redis://, rediss://, sqlite://, dynamodb://); default: dynamodb://TABLE from ProgressTable, else the SQLite file $XDG_STATE_HOME/wp/progress.db"
	if u, src, err := defaultStoreURL(); err == nil {
		usage += fmt.Sprintf(" (here, from %s: %s)", src, backends.Redact(u))
	}
	return &cli.StringFlag{
		Name:    "progress",
		Usage:   usage,
		EnvVars: []string{"WP_PROGRESS"},
	}
}

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

func storeTimeout() (time.Duration, error) {
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

// openStore opens the chosen store within the store timeout.
func openStore(c *cli.Context) (*backends.Store, error) {
	u, src, err := storeURL(c)
	if err != nil {
		return nil, err
	}
	to, err := storeTimeout()
	if err != nil {
		return nil, err
	}
	logger(c).Debug("progress store", "url", backends.Redact(u), "from", src)
	return backends.Open(c.Context, u, to)
}

// storeCtx bounds one store call.
func storeCtx(parent context.Context) (context.Context, context.CancelFunc) {
	to, err := storeTimeout()
	if err != nil {
		to = defaultStoreTimeout
	}
	return context.WithTimeout(parent, to)
}
