package dynamodb

import (
	"fmt"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/wp-tools/wp/internal/testservers"
)

// Tests that count requests and capacity go through the metering proxy in
// front of dynalite (internal/testservers/ddbproxy.go).

// startProxy starts a proxy in front of the package's dynalite.
func startProxy(t testing.TB, opt testservers.ProxyOptions) *testservers.DynamoProxy {
	t.Helper()
	needDynalite(t)
	return testservers.StartDynamoProxyT(t, dynalite.URL, opt)
}

// proxyConfig is wp's AWS configuration with the proxy as the endpoint.
// (The SDK prefers AWS_ENDPOINT_URL_DYNAMODB, which the tests set to
// dynalite, to BaseEndpoint unless the configuration has no sources.)
func proxyConfig(t testing.TB, p *testservers.DynamoProxy) aws.Config {
	t.Helper()
	cfg, err := LoadConfig(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BaseEndpoint = aws.String(p.URL)
	cfg.ConfigSources = nil
	return cfg
}

// viaProxy is st with a client that goes through p.
func viaProxy(t testing.TB, st *Store, p *testservers.DynamoProxy) *Store {
	t.Helper()
	s := New(proxyConfig(t, p), st.table)
	s.now, s.repairAfter = st.now, st.repairAfter
	return s
}

// proxiedTable creates a table with CreateTable through a fresh proxy
// (whose emulation of the time to live then holds its setting) and returns
// a store that goes through it.
func proxiedTable(t testing.TB, opt testservers.ProxyOptions) (*Store, *testservers.DynamoProxy) {
	t.Helper()
	p := startProxy(t, opt)
	name := fmt.Sprintf("wp-ptest-%d-%d", os.Getpid(), tableSeq.Add(1))
	cfg := proxyConfig(t, p)
	if err := CreateTable(testCtx(t), cfg, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ddb.NewFromConfig(cfg).DeleteTable(testCtx(t), &ddb.DeleteTableInput{TableName: aws.String(name)})
	})
	s := New(cfg, name)
	p.Reset()
	return s, p
}

// opUnits is the units the proxy counted for op since its last Reset.
func opUnits(p *testservers.DynamoProxy, op string) (requests int, read, write float64) {
	o := p.Stats().Ops[op]
	return o.Requests, o.ReadUnits, o.WriteUnits
}
