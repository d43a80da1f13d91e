package publish

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/wp-tools/wp/internal/awslog"
)

// TestNewFromEnv_SDKLogger: the SNS client logs through wp's logger
// (internal/awslog), not the SDK's own "SDK ... WARN" lines on stderr.
func TestNewFromEnv_SDKLogger(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	p, err := NewFromEnv(context.Background(), "arn:aws:sns:us-east-1:123456789012:t")
	if err != nil {
		t.Fatal(err)
	}
	got := p.client.(*sns.Client).Options().Logger
	if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", awslog.Logger()) {
		t.Errorf("SNS client logger is %T, want awslog's", got)
	}
}
