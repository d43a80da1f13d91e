// Package awslog routes the AWS SDK's own log lines through wp's logger.
// Left alone, the SDK writes lines such as "SDK 2026/11/29 08:00:00 WARN
// failed to discard remaining HTTP response body" straight to stderr, in
// neither of wp's formats. wp reports every SNS and DynamoDB failure that
// matters itself, so the SDK's lines (about connection reuse, retries,
// checksums) go to slog.Default (which wp sets to its own logger) at debug
// level: `wp -v` shows them, in wp's text or JSON format.
package awslog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"
)

// Logger is the logging.Logger to give the SDK (config.WithLogger).
func Logger() logging.Logger { return sdkLogger{} }

type sdkLogger struct{}

func (sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	slog.Default().Log(context.Background(), slog.LevelDebug, "aws sdk: "+fmt.Sprintf(format, v...), "sdk_level", string(c))
}
