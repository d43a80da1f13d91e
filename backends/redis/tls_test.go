package redis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wp-tools/wp/backends"
	"github.com/wp-tools/wp/internal/testservers"
)

// testPKI writes a CA and a server certificate for 127.0.0.1 signed by it
// into dir, and returns the paths of the CA, the server cert and its key.
func testPKI(t *testing.T, dir, name string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client auth too: cluster nodes present it to each other on
		// the TLS cluster bus, which requires client certificates.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// trustedPKI is the CA (and a server certificate from it) that
// TestTLSPassword makes the process trust: made once per process, since Go
// reads SSL_CERT_FILE once per process, so that the test passes again
// with -count=2. TestMain removes its directory.
var trustedPKI struct {
	once          sync.Once
	dir           string
	ca, cert, key string
}

func trusted(t *testing.T) (dir, ca, cert, key string) {
	t.Helper()
	trustedPKI.once.Do(func() {
		d, err := os.MkdirTemp("", "wp-redis-tls-")
		if err != nil {
			t.Fatal(err)
		}
		trustedPKI.dir = d
		trustedPKI.ca, trustedPKI.cert, trustedPKI.key = testPKI(t, d, "trusted")
	})
	if trustedPKI.dir == "" {
		t.Fatal("no trusted test PKI")
	}
	return trustedPKI.dir, trustedPKI.ca, trustedPKI.cert, trustedPKI.key
}

// startTLSRedis starts a redis-server that requires pw and serves TLS on
// its own port with a certificate for 127.0.0.1 from a new CA. It returns
// the TLS address and the CA's path. (Its plain port stays on, as
// testservers waits for a PING there.)
func startTLSRedis(t *testing.T, dir, name, pw string) (addr, ca string) {
	t.Helper()
	ca, cert, key := testPKI(t, dir, name)
	return startTLSRedisWith(t, ca, cert, key, pw), ca
}

// startTLSRedisWith is startTLSRedis with a given CA and certificate.
func startTLSRedisWith(t *testing.T, ca, cert, key, pw string) (addr string) {
	t.Helper()
	port, err := testservers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	testservers.StartRedisT(t,
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
		"--tls-auth-clients", "no", "--requirepass", pw)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := testservers.WaitDial(addr, 10*time.Second); err != nil {
		t.Fatalf("redis-server --tls-port: %v (redis-server must be built with TLS support; Debian's is)", err)
	}
	return addr
}

// TestTLSPassword: against real redis-servers that serve TLS and require a
// password, rediss:// with the password works when the client trusts the
// server's CA; an untrusted CA, a wrong password and plain redis:// to the
// TLS port are errors that do not hold the password.
//
// wp trusts the system's CA pool, which Go reads from SSL_CERT_FILE when it
// is set: that is how an operator (and this test) adds a private CA. The
// pool is loaded once per process, at the first verification, so the test
// sets SSL_CERT_FILE to the first server's CA before anything verifies, and
// gives the second server a certificate from another CA.
func TestTLSPassword(t *testing.T) {
	const pw = "Tls-Pw-4471-secret"
	dir, ca, cert, key := trusted(t)
	addr := startTLSRedisWith(t, ca, cert, key, pw)
	otherAddr, _ := startTLSRedis(t, t.TempDir(), "untrusted", pw)
	t.Setenv("SSL_CERT_FILE", ca)
	ctx := testCtx(t, 2*time.Minute)

	u := "rediss://:" + pw + "@" + addr + "/0"
	st, err := backends.Open(ctx, u, 0)
	if err != nil {
		t.Fatalf("open %s: %v", backends.Redact(u), err)
	}
	defer st.Close()
	if err := st.CreateJob(ctx, backends.Job{ID: "tls-job", Total: 2, Metadata: []byte(`{"tls":true}`)}); err != nil {
		t.Fatal(err)
	}
	for p := int64(0); p < 2; p++ {
		c, err := st.Complete(ctx, "tls-job", p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Finisher != (p == 1) {
			t.Fatalf("Complete(%d) = %+v", p, c)
		}
	}
	s, err := st.Status(ctx, "tls-job")
	if err != nil || s.Remaining != 0 || string(s.Metadata) != `{"tls":true}` {
		t.Fatalf("Status = %+v, %v", s, err)
	}

	bad := []struct{ name, url, want string }{
		{"untrusted CA", "rediss://:" + pw + "@" + otherAddr + "/0", "certificate"},
		{"wrong password", "rediss://:Wrong-" + pw[4:] + "x@" + addr + "/0", "WRONGPASS"},
		{"plain redis:// to the TLS port", "redis://:" + pw + "@" + addr + "/0", addr},
	}
	for _, b := range bad {
		_, err := backends.Open(ctx, b.url, 0)
		if err == nil {
			t.Errorf("%s: Open succeeded", b.name)
			continue
		}
		if strings.Contains(err.Error(), pw[4:]) {
			t.Errorf("%s: error %q holds the password", b.name, err)
		}
		if !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %q does not say %q", b.name, err, b.want)
		}
		t.Logf("%s: %v", b.name, err)
	}

	// A cluster whose nodes serve only TLS (to each other too) and
	// require the password, with a certificate from the trusted CA: the
	// cluster client carries the URL's TLS settings and password to
	// every node.
	t.Run("Cluster", func(t *testing.T) {
		c, err := testservers.StartRedisClusterWith(testservers.ClusterOptions{
			Masters: 3, Password: pw,
			TLSCert: filepath.Join(dir, "trusted-cert.pem"), TLSKey: filepath.Join(dir, "trusted-key.pem"), TLSCA: ca,
		})
		if err != nil {
			t.Fatalf("start a TLS redis cluster: %v", err)
		}
		t.Cleanup(c.Stop)
		if !strings.HasPrefix(c.URL, "rediss://") {
			t.Fatalf("cluster URL %s is not rediss://", backends.Redact(c.URL))
		}
		st := openURL(t, c.URL)
		if !st.Cluster() {
			t.Fatal("not a cluster client")
		}
		batchAcrossSlots(t, st)
	})

	// skip_verify=true (go-redis's option) connects without trusting the CA.
	u = "rediss://:" + pw + "@" + otherAddr + "/0?skip_verify=true"
	st2, err := backends.Open(ctx, u, 0)
	if err != nil {
		t.Fatalf("open %s: %v", backends.Redact(u), err)
	}
	st2.Close()
}
