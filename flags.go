package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
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
