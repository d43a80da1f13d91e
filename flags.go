package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/publish"
)

// Flags more than one command takes, declared once.

const (
	defaultGrace = 10 * time.Second
	// defaultReduceLease is how long a finisher holds the right to publish
	// the reduce. If it dies in that time, a later delivery of any part of
	// the job sends the reduce once the lease has run out.
	defaultReduceLease = 2 * time.Minute
)

// progressFlag is --progress; its usage names the store this machine would
// use without it, and why.
func progressFlag() cli.Flag {
	usage := "progress store URL (redis://, rediss://, sqlite://, dynamodb://); default: dynamodb://TABLE from ProgressTable, else the SQLite file $XDG_STATE_HOME/wp/progress.db"
	if u := os.Getenv("WP_PROGRESS"); u != "" {
		usage += fmt.Sprintf(" (here, from WP_PROGRESS: %s)", backends.Redact(u))
	} else if u, src, err := defaultStoreURL(); err == nil {
		usage += fmt.Sprintf(" (here, from %s: %s)", src, backends.Redact(u))
	}
	return &cli.StringFlag{Name: "progress", Usage: usage, EnvVars: []string{"WP_PROGRESS"}}
}

func topicFlag() cli.Flag {
	return &cli.StringFlag{Name: "topic", Usage: "SNS topic ARN to publish to", EnvVars: []string{"WorkTopic"}}
}

func failJobOnFlag() cli.Flag {
	return &cli.StringFlag{Name: "fail-job-on", Usage: "exit codes of CMD that fail the whole job, e.g. 3,10-20", EnvVars: []string{"WP_FAIL_JOB_ON"}}
}

func graceFlag(env ...string) cli.Flag {
	return &cli.DurationFlag{Name: "grace", Value: defaultGrace, Usage: "after forwarding a signal, how long CMD has to exit before SIGKILL", EnvVars: env}
}

func jobIDFlag() cli.Flag {
	return &cli.StringFlag{Name: "jobid", Usage: "job id (default: a new UUID); 1 to 128 letters, digits, '.', '_', '-', starting with a letter or digit"}
}

func metadataFlag() cli.Flag {
	return &cli.StringFlag{Name: "metadata", Value: "{}", Usage: "job metadata, a JSON object: stored with the job and given to the reduce"}
}

func tolerateFlag() cli.Flag {
	return &cli.StringFlag{Name: "tolerate", Value: "0", Usage: "how many parts may be given up (N, or P% of the parts) before the job fails; within it the job still reduces"}
}

func reduceOnFailureFlag() cli.Flag {
	return &cli.BoolFlag{Name: "reduce-on-failure", Usage: "send the reduce for a failed job too (with \"state\": \"failed\"; the command sees WP_JOB_STATE=failed)"}
}

func batchFlag() cli.Flag {
	return &cli.IntFlag{Name: "batch", Value: 1, Usage: "parts a map message carries, at most (consecutive parts; a worker runs the command once per part and records them in one write)"}
}

func batchBytesFlag() cli.Flag {
	return &cli.IntFlag{Name: "batch-bytes", Value: publish.MaxMessageBytes, Usage: "with --batch: bytes a map message holds, at most (at most 262144, SNS's limit)"}
}

func expireAfterFlag() cli.Flag {
	return &cli.StringFlag{Name: "expire-after", Value: "30d", Usage: "how long the job is kept in the store from its creation: a duration such as 30d, 12h or 1w2d; 0 keeps it for ever", EnvVars: []string{"WP_EXPIRE_AFTER"}}
}

// parseBatch reads --batch and --batch-bytes: batch 0 for one part a
// message.
func parseBatch(c *cli.Context) (batch, bytes int, err error) {
	batch, bytes = c.Int("batch"), c.Int("batch-bytes")
	switch {
	case batch < 1:
		return 0, 0, usageError("--batch %d: want a whole number of parts of at least 1 (1: one part a message)", batch)
	case batch > backends.MaxBatch:
		return 0, 0, usageError("--batch %d: at most %d parts a message", batch, backends.MaxBatch)
	case bytes > publish.MaxMessageBytes:
		return 0, 0, usageError("--batch-bytes %d: SNS takes messages of at most %d bytes", bytes, publish.MaxMessageBytes)
	case bytes < 1:
		return 0, 0, usageError("--batch-bytes %d: want a positive number of bytes", bytes)
	case batch == 1 && c.IsSet("batch-bytes"):
		return 0, 0, usageError("--batch-bytes goes with --batch K (K of at least 2)")
	case batch == 1:
		return 0, 0, nil
	}
	return batch, bytes, nil
}

// parseExpireAfter reads --expire-after (or WP_EXPIRE_AFTER).
func parseExpireAfter(c *cli.Context) (time.Duration, error) {
	d, err := parseAge(c.String("expire-after"))
	if err != nil {
		src := "--expire-after"
		if !c.IsSet("expire-after") || os.Getenv("WP_EXPIRE_AFTER") == c.String("expire-after") && os.Getenv("WP_EXPIRE_AFTER") != "" {
			src = "WP_EXPIRE_AFTER"
		}
		return 0, usageError("%s %q: %v", src, c.String("expire-after"), err)
	}
	return d, nil
}

// parseAge reads a length of time: 0, a Go duration (36h, 90m), or one
// with days and weeks as well (30d, 1w2d, 1d12h). Negative ones are refused.
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("want a duration such as 30d, 12h or 1w2d (0: never)")
	}
	if s == "0" {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("a duration must not be negative")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || (rest[i] != 'd' && rest[i] != 'w') {
			break
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 100000 {
			return 0, errors.New("want a duration such as 30d, 12h or 1w2d (0: never)")
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, errors.New("want a duration such as 30d, 12h or 1w2d (0: never)")
		}
		total += d
	}
	return total, nil
}
