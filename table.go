package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/wp-tools/wp/backends/dynamodb"
)

func tableCommand() *cli.Command {
	return &cli.Command{
		Name:  "table",
		Usage: "manage DynamoDB progress tables",
		Subcommands: []*cli.Command{{
			Name:      "create",
			Usage:     "create a DynamoDB table wp (and watchbot-progress) can use",
			ArgsUsage: "NAME",
			Description: `Creates a table with hash key id (type S) and on-demand billing, and waits
until it is active. It is the layout watchbot's reduce mode and the
watchbot-progress libraries use, so the same table serves them all. Region,
credentials and endpoint come from the AWS SDK's standard chain
(AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, ...).

Exit codes: 0 created; 1 the table exists or AWS refused; 2 wrong command line.`,
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageError("table create needs exactly one NAME argument")
				}
				name, err := dynamodb.TableFromARN(c.Args().First())
				if err != nil {
					return withCode(exitUsage, err)
				}
				cfg, err := dynamodb.LoadConfig(c.Context)
				if err != nil {
					return err
				}
				ctx, cancel := storeCtx(c.Context)
				defer cancel()
				if err := dynamodb.CreateTable(ctx, cfg, name); err != nil {
					return err
				}
				logger(c).Info("table created", "table", name)
				fmt.Fprintf(c.App.Writer, "dynamodb://%s\n", name)
				return nil
			},
		}},
	}
}
