package awslog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/aws/smithy-go/logging"
)

// TestLogger: an SDK warning becomes a debug line of wp's logger, in its
// format (JSON here), not a "SDK ... WARN" line on stderr.
func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	defer slog.SetDefault(old)
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))

	Logger().Logf(logging.Warn, "failed to discard remaining HTTP response body, this may affect connection reuse")
	var line struct {
		Level, Msg string
		SDKLevel   string `json:"sdk_level"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if got, want := line.Msg, "aws sdk: failed to discard remaining HTTP response body, this may affect connection reuse"; got != want {
		t.Errorf("msg = %q, want %q", got, want)
	}
	if line.Level != "DEBUG" || line.SDKLevel != "WARN" {
		t.Errorf("level %q, sdk_level %q; want DEBUG, WARN", line.Level, line.SDKLevel)
	}

	buf.Reset()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil))) // info: wp without -v
	Logger().Logf(logging.Warn, "noise")
	if buf.Len() != 0 {
		t.Errorf("without -v the SDK's line shows: %q", buf.String())
	}
}
