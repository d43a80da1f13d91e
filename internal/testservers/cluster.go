package testservers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of redis-server processes on loopback.
type Cluster struct {
	// URL is a redis:// URL naming the first node (a master).
	URL string
	// Addrs are every node's host:port, in creation order: masters first,
	// then replicas (redis-cli --cluster create assigns them so).
	Addrs []string

	mu    sync.Mutex
	nodes map[string]*clusterNode
	dir   string
	opt   ClusterOptions
	tls   *tls.Config // how the harness itself reaches TLS nodes
}

// ClusterOptions say what cluster StartRedisClusterWith starts.
type ClusterOptions struct {
	Masters, Replicas int // replicas of each master
	// Password: every node requires it (requirepass, and masterauth for
	// its replicas); URL holds it.
	Password string
	// TLSCert, TLSKey, TLSCA: the nodes serve only TLS, with this
	// certificate (for 127.0.0.1, valid for server and client auth: the
	// cluster bus is mutual TLS), to clients and to each other
	// (tls-cluster, tls-replication), and URL is rediss://.
	TLSCert, TLSKey, TLSCA string
}

type clusterNode struct {
	addr   string
	opt    *ClusterOptions
	tls    *tls.Config
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// clusterNodeTimeout is --cluster-node-timeout: how long a master may be
// silent before its replica is promoted (about 2.5x this on 2 cores).
const clusterNodeTimeout = "1500"

// StartRedisCluster starts masters redis-servers in cluster mode on free
// loopback ports (each with its cluster bus port, port+10000, free too), and
// replicas replicas of each master; creates the cluster with redis-cli
// --cluster create; and waits until every node says cluster_state:ok and
// every replica has finished its first sync (master_link_status:up), so a
// replica can be promoted at once. No persistence; Stop kills every node and
// removes their files.
func StartRedisCluster(masters, replicas int) (*Cluster, error) {
	return StartRedisClusterWith(ClusterOptions{Masters: masters, Replicas: replicas})
}

// StartRedisClusterWith is StartRedisCluster with a password or TLS.
func StartRedisClusterWith(o ClusterOptions) (*Cluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %s", redisInstall)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli not found: %s (it comes with redis-server, or apt-get install -y redis-tools)", redisInstall)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := startCluster(bin, cli, o)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// StartRedisClusterT starts a cluster for a test, fails the test with what
// to install when that is impossible, and stops the cluster when the test
// ends.
func StartRedisClusterT(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	c, err := StartRedisCluster(masters, replicas)
	if err != nil {
		t.Fatalf("start a redis cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func startCluster(bin, cli string, o ClusterOptions) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "wp-redis-cluster-")
	if err != nil {
		return nil, fmt.Errorf("make cluster directory: %w", err)
	}
	c := &Cluster{nodes: map[string]*clusterNode{}, dir: dir, opt: o}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	for i := 0; i < o.Masters*(1+o.Replicas); i++ {
		port, err := clusterPort()
		if err != nil {
			return nil, err
		}
		n := &clusterNode{
			addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			opt:  &c.opt,
			tls:  c.tls,
			port: port,
			dir:  filepath.Join(dir, strconv.Itoa(port)),
		}
		if err := os.Mkdir(n.dir, 0o700); err != nil {
			return nil, err
		}
		if err := n.start(bin); err != nil {
			return nil, err
		}
		c.nodes[n.addr] = n
		c.Addrs = append(c.Addrs, n.addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	if o.Password != "" {
		args = append(args, "-a", o.Password, "--no-auth-warning")
	}
	if o.TLSCA != "" {
		args = append(args, "--tls", "--cacert", o.TLSCA)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// redis-cli waits for the nodes to join for as long as it takes
	// (forever when their cluster bus cannot connect): bound it.
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, lastLines(out, 5))
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, err
	}
	scheme, auth := "redis://", ""
	if o.TLSCA != "" {
		scheme = "rediss://"
	}
	if o.Password != "" {
		auth = ":" + url.QueryEscape(o.Password) + "@"
	}
	c.URL = scheme + auth + c.Addrs[0] + "/0"
	ok = true
	return c, nil
}

// clusterPort finds a free loopback port whose cluster bus port
// (port+10000) is free too.
func clusterPort() (int, error) {
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port with a free port+10000 for the cluster bus")
}

// start starts (or restarts, after Kill) the node's redis-server; its
// nodes.conf in dir keeps its cluster identity.
func (n *clusterNode) start(bin string) error {
	logFile, err := os.OpenFile(filepath.Join(n.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", n.dir,
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", clusterNodeTimeout,
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
	}
	if n.opt.Password != "" {
		args = append(args, "--requirepass", n.opt.Password, "--masterauth", n.opt.Password)
	}
	if n.opt.TLSCA != "" {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(n.port),
			"--tls-cert-file", n.opt.TLSCert, "--tls-key-file", n.opt.TLSKey, "--tls-ca-cert-file", n.opt.TLSCA,
			"--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes")
	} else {
		args = append(args, "--port", strconv.Itoa(n.port))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
	wait := waitRedis
	if n.tls != nil {
		wait = n.waitTLS
	}
	if err := wait(n.addr, exited, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
		n.kill()
		return fmt.Errorf("redis-server (cluster node) on %s: %w; its log ends: %s", n.addr, err, lastLine(log))
	}
	return nil
}

// waitTLS waits until a TLS node answers PING (waitRedis speaks plain
// TCP).
func (n *clusterNode) waitTLS(addr string, exited <-chan struct{}, timeout time.Duration) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: n.opt.Password, TLSConfig: n.tls, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("redis-server exited before it answered (port taken, or a bad argument)")
		default:
		}
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING over TLS within %v: %w", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *clusterNode) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.exited
	}
}

// Stop kills every node and removes their files. Safe to call twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.kill()
	}
	c.nodes = map[string]*clusterNode{}
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// Kill SIGKILLs the node at addr (a crash: nothing is flushed or handed
// over).
func (c *Cluster) Kill(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[addr]
	if !ok {
		return fmt.Errorf("no cluster node %s", addr)
	}
	n.kill()
	return nil
}

// Restart starts the node at addr again after Kill, with its cluster
// identity and no data: it rejoins (a killed master comes back as a replica
// of the replica that took its place).
func (c *Cluster) Restart(addr string) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[addr]
	if !ok {
		return fmt.Errorf("no cluster node %s", addr)
	}
	return n.start(bin)
}

// MasterFor is the address of the master that serves key now, as the live
// nodes see it.
func (c *Cluster) MasterFor(ctx context.Context, key string) (string, error) {
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.liveAddrs(), Password: c.opt.Password, TLSConfig: c.tls})
	defer cc.Close()
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return "", err
	}
	return m.Options().Addr, nil
}

func (c *Cluster) liveAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a []string
	for _, addr := range c.Addrs {
		n := c.nodes[addr]
		if n == nil {
			continue
		}
		select {
		case <-n.exited:
		default:
			a = append(a, addr)
		}
	}
	return a
}

// WaitHealthy waits until every live node says cluster_state:ok, every
// slot is served, and every replica's link to its master is up (its first
// sync done).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last string
	for {
		last = c.unhealthy(ctx)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not healthy: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unhealthy says what is not yet right, or "".
func (c *Cluster) unhealthy(ctx context.Context) string {
	for _, addr := range c.liveAddrs() {
		cl := goredis.NewClient(&goredis.Options{Addr: addr, Password: c.opt.Password, TLSConfig: c.tls, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			cl.Close()
			return fmt.Sprintf("%s: CLUSTER INFO: %v", addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			cl.Close()
			return fmt.Sprintf("%s: %s", addr, firstLines(info, 3))
		}
		repl, err := cl.Info(ctx, "replication").Result()
		if err != nil {
			cl.Close()
			return fmt.Sprintf("%s: INFO replication: %v", addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			cl.Close()
			return fmt.Sprintf("%s: replica not synced yet", addr)
		}
		if why := replicasNotAcking(ctx, cl, repl); why != "" {
			cl.Close()
			return fmt.Sprintf("%s: %s", addr, why)
		}
		cl.Close()
	}
	return ""
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "; ")
}

// WaitLinkUp waits until the replica at addr has finished its first sync
// with its master (INFO replication: master_link_status:up) and has acked
// a write made on its master since (see replicasNotAcking).
func WaitLinkUp(ctx context.Context, addr string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	var last string
	for {
		last = replicaNotReady(ctx, c)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %s did not sync: %s", addr, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// replicaNotReady says why the replica c is not yet in sync and acking
// its master's writes, or "".
func replicaNotReady(ctx context.Context, c *goredis.Client) string {
	info, err := c.InfoMap(ctx, "replication").Result()
	if err != nil {
		return err.Error()
	}
	r := info["Replication"]
	if r["master_link_status"] != "up" {
		return "master_link_status:" + r["master_link_status"]
	}
	master := net.JoinHostPort(r["master_host"], r["master_port"])
	m := goredis.NewClient(&goredis.Options{Addr: master, MaxRetries: -1})
	defer m.Close()
	repl, err := m.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Sprintf("master %s: %v", master, err)
	}
	return replicasNotAcking(ctx, m, repl)
}

// replicasNotAcking says why a write on the master c (whose INFO
// replication is repl) is not yet acknowledged by all its connected
// replicas, or "". A replica whose link is up, and which its master lists
// as online, may still not ack for up to a second: after a diskless sync
// the master starts the replica's command stream only on its first
// REPLCONF ACK, sent once a second. Until then WAIT does not count it, and
// a test's write waited for with ?min_replicas fails (seen: WAIT 1 200 -> 0
// right after the cluster said every replica's link was up). So probe as
// the store will: write a key this master owns, WAIT for every replica.
func replicasNotAcking(ctx context.Context, c *goredis.Client, repl string) string {
	if !strings.Contains(repl, "role:master") {
		return ""
	}
	want := 0
	for _, line := range strings.Split(repl, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			want, _ = strconv.Atoi(n)
		}
	}
	if want == 0 {
		return ""
	}
	// A key whose slot this master serves: others answer MOVED. A
	// standalone server takes the first.
	for i := 0; i < 1000; i++ {
		key := "wp-harness-probe-" + strconv.Itoa(i)
		err := c.Set(ctx, key, "1", time.Minute).Err()
		if err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			continue
		}
		if err != nil {
			return "probe write: " + err.Error()
		}
		got, err := c.Do(ctx, "WAIT", want, 100).Int()
		c.Del(ctx, key) // tests may count keys
		if err != nil {
			return "WAIT: " + err.Error()
		}
		if got < want {
			return fmt.Sprintf("%d of %d replicas acked a write within 100ms", got, want)
		}
		return ""
	}
	return "found no key this master serves"
}

// lastLines is the last n lines of out.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
