package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/backends/dynamodb"
	"github.com/wp-tools/wp/internal/display"
)

// The operator's commands: wp fail, wp rm, wp table create.

func failCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "fail",
		Usage:     "fail a job by hand: its remaining parts are skipped and no reduce is sent",
		ArgsUsage: "JOBID",
		Description: `Marks the job failed with the reason given (at most 1024 bytes). A failed job
stays failed; failing it again keeps the first reason.

Exit codes: 0 failed; 1 no such job or store error; 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Value: "failed by hand (wp fail)", Usage: "why the job was stopped"},
			progressFlag(),
		},
		Action: func(c *cli.Context) error {
			if strings.TrimSpace(c.String("reason")) == "" {
				return usageError("--reason must not be empty")
			}
			if n := len(c.String("reason")); n > backends.MaxReason {
				return usageError("--reason is %d bytes: at most %d", n, backends.MaxReason)
			}
			return a.withJob(c, func(st *backends.Store, id string) error {
				if err := st.Fail(c.Context, id, c.String("reason")); err != nil {
					return err
				}
				a.logger().Info("job failed", "jobid", id, "reason", c.String("reason"))
				return nil
			})
		},
	}
}

func expireCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "expire",
		Usage:     "change when a job expires (is removed from the store)",
		ArgsUsage: "JOBID DURATION",
		Description: `Makes the job expire DURATION from now (30d, 12h, 1w2d), or never (0). An
expired job is gone: every command then says "no such job", and the store
removes it (Redis at once; SQLite when a wp opens the store or a job ends;
DynamoDB through the table's time to live, within days). On DynamoDB this
writes every item of the job: one write unit per 256 parts, about.

Exit codes: 0 changed; 1 no such job or store error; 2 wrong command line.`,
		Flags:  []cli.Flag{progressFlag()},
		Action: a.expireAction,
	}
}

func (a *appState) expireAction(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError("expire needs a JOBID and a DURATION (30d, 12h; 0: never)")
	}
	id, arg := c.Args().Get(0), c.Args().Get(1)
	d, err := parseAge(arg)
	if err != nil {
		return usageError("expire %s %q: %v", id, arg, err)
	}
	if err := backends.ValidateJobID(id); err != nil {
		return withCode(exitError, err)
	}
	st, err := a.openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	var at time.Time
	if d > 0 {
		at = backends.ExpirySecond(time.Now().Add(d))
	}
	if err := st.SetExpiry(c.Context, id, at); err != nil {
		return notFound(id, err)
	}
	if at.IsZero() {
		a.logger().Info("job expiry changed: it never expires", "jobid", id)
		fmt.Fprintln(c.App.Writer, "never")
		return nil
	}
	a.logger().Info("job expiry changed", "jobid", id, "expires", at.UTC().Format(time.RFC3339))
	fmt.Fprintln(c.App.Writer, at.UTC().Format(time.RFC3339))
	return nil
}

func rmCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete a job's state from the store",
		ArgsUsage: "JOBID",
		Description: `Deletes every trace of the job from the progress store. Map messages still in
the queue for it are then dropped by wp run (exit 3, no such job). Asks for
confirmation on a terminal unless --yes is given; without a terminal, --yes is
required.

Exit codes: 0 deleted; 1 no such job, not confirmed, or store error; 2 wrong command line.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
			progressFlag(),
		},
		Action: func(c *cli.Context) error {
			return a.withJob(c, func(st *backends.Store, id string) error {
				s, err := st.Status(c.Context, id)
				if err != nil {
					return err
				}
				if !c.Bool("yes") {
					if !display.IsTerminal(c.App.Reader) {
						return fmt.Errorf("refusing to delete job %s without confirmation: pass --yes", id)
					}
					fmt.Fprintf(c.App.ErrWriter, "delete job %s (%s, %d/%d parts complete)? [y/N] ", id, s.State(), s.Total-s.Remaining, s.Total)
					line, _ := bufio.NewReader(c.App.Reader).ReadString('\n')
					if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
						return errors.New("not deleted")
					}
				}
				if err := st.Delete(c.Context, id); err != nil {
					return err
				}
				a.logger().Info("job deleted", "jobid", id)
				return nil
			})
		},
	}
}

func tableCommand(a *appState) *cli.Command {
	return &cli.Command{
		Name:  "table",
		Usage: "manage DynamoDB progress tables",
		Subcommands: []*cli.Command{{
			Name:      "create",
			Usage:     "create a DynamoDB table wp (and watchbot-progress) can use",
			ArgsUsage: "NAME",
			Description: `Creates a table with hash key id (type S), on-demand billing and wp's index of
jobs (a global secondary index, wp-jobs, that lets wp ls read in proportion to
the jobs it lists), waits until it is active, and turns on its time to live
(attribute wpExpires), so that expired jobs are removed. It is the layout
watchbot's reduce mode and the watchbot-progress libraries use, so the same
table serves them all. Region, credentials and endpoint come from the AWS
SDK's standard chain (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, ...).

Exit codes: 0 created; 1 the table exists or AWS refused; 2 wrong command line.`,
			Action: func(c *cli.Context) error {
				return a.tableAction(c, "create", dynamodb.CreateTable, "table created")
			},
		}, {
			Name:      "upgrade",
			Usage:     "add wp's index of jobs and the time to live to an existing table",
			ArgsUsage: "NAME",
			Description: `Adds to an existing table (the one watchbot's stack made, say) what wp table
create makes: the global secondary index wp-jobs (on a provisioned table with
5 read and 5 write units of its own), and the time to live on wpExpires; then
writes the index's keys on every job item already in the table (one small
write per job; jobs of the libraries included). Safe to run again. Until the
index is ACTIVE (minutes, on a large table), wp ls scans and says so.

AWS permissions: dynamodb:UpdateTable, DescribeTable, UpdateTimeToLive,
DescribeTimeToLive, Scan and UpdateItem on the table.

Exit codes: 0 upgraded (or already so); 1 AWS refused (no such table, TTL on
another attribute); 2 wrong command line.`,
			Action: func(c *cli.Context) error {
				return a.tableAction(c, "upgrade", dynamodb.UpgradeTable, "table upgraded")
			},
		}},
	}
}

// tableAction runs a table operation on the NAME argument.
func (a *appState) tableAction(c *cli.Context, what string, op func(context.Context, aws.Config, string) error, done string) error {
	if c.NArg() != 1 {
		return usageError("table %s needs exactly one NAME argument", what)
	}
	name, err := dynamodb.TableFromARN(c.Args().First())
	if err != nil {
		return withCode(exitUsage, err)
	}
	cfg, err := dynamodb.LoadConfig(c.Context)
	if err != nil {
		return err
	}
	if a.storeTimeoutErr != nil {
		return withCode(exitUsage, a.storeTimeoutErr)
	}
	// A table's index and backfill take longer than one store call.
	ctx, cancel := context.WithTimeout(c.Context, max(a.storeTimeout, 10*time.Minute))
	defer cancel()
	if err := op(ctx, cfg, name); err != nil {
		return err
	}
	a.logger().Info(done, "table", name)
	fmt.Fprintf(c.App.Writer, "dynamodb://%s\n", name)
	return nil
}
