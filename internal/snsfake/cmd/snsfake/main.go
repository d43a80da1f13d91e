// Command snsfake runs wp's fake SNS endpoint on its own, for measuring wp
// by hand against a local "SNS": go run ./internal/snsfake/cmd/snsfake serve
// ADDRFILE LOGFILE (see snsfake serve's usage).
package main

import (
	"os"

	"github.com/wp-tools/wp/internal/snsfake"
)

func main() { os.Exit(snsfake.Main()) }
