package dynamodb

import (
	"context"
	"fmt"
	"testing"

	"github.com/wp-tools/wp/internal/awslog"
)

// TestLoadConfig_SDKLogger: the DynamoDB client logs through wp's logger
// (internal/awslog), not the SDK's own "SDK ... WARN" lines on stderr.
func TestLoadConfig_SDKLogger(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	cfg, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%T", cfg.Logger) != fmt.Sprintf("%T", awslog.Logger()) {
		t.Errorf("DynamoDB config logger is %T, want awslog's", cfg.Logger)
	}
}
