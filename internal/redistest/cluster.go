package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Cluster is three masters with one replica each, created the way an
// operator creates one (redis-cli --cluster create), with a node timeout of
// one second so that a killed master is replaced in seconds, not the
// default fifteen.

const (
	clusterSize        = 6 // three masters, one replica each
	clusterSlots       = 16384
	clusterNodeTimeout = 1000 * time.Millisecond // --cluster-node-timeout
	clusterTimeout     = 30 * time.Second        // creation and convergence; a few seconds in practice
	failoverTimeout    = 30 * time.Second        // a failover takes 2-5s with a 1s node timeout
	clusterPoll        = 50 * time.Millisecond
)

const cliNotInstalledMsg = "redis-cli not found in PATH: install it (Debian/Ubuntu: apt-get install redis-server, or redis-tools; macOS: brew install redis) — the Redis Cluster tests create their cluster with redis-cli --cluster create"

// ErrCLINotInstalled is the failure of StartCluster when redis-cli is not in
// PATH.
var ErrCLINotInstalled = errors.New(cliNotInstalledMsg)

// Cluster is a Redis Cluster of six redis-server processes on free loopback
// ports: three masters, each with one replica. Its methods are safe for
// concurrent use.
type Cluster struct {
	nodes []*Server // in start order; a killed node stays, not running

	mu         sync.Mutex
	killedID   string   // cluster node id of the master killed last
	heirs      []string // ids of its replicas then
	killedAddr string
	killedAt   time.Time
	closed     bool
}

// StartCluster starts six servers in cluster mode, joins them with
// redis-cli --cluster create (--cluster-replicas 1) and returns once every
// node reports cluster_state:ok with all 16384 slots served and every
// replica in sync with its master. Args of opts are passed to every node.
// tb.Cleanup kills the nodes. When redis-server or redis-cli is missing the
// test fails (never skips).
func StartCluster(tb testing.TB, opts ...Options) *Cluster {
	tb.Helper()
	return startOwned(tb, "cluster state and logs", opts, startCluster)
}

// StartClusterE is StartCluster without testing.TB, for a cluster that
// several tests share (one per test binary, closed by TestMain). The caller
// must Close it. When redis-server or redis-cli is missing the error says
// how to install it (ErrNotInstalled, ErrCLINotInstalled).
func StartClusterE(opts Options) (*Cluster, error) {
	return startCluster(opts)
}

// group is a set of processes a test owns: a cluster or a sentinel setup.
type group interface {
	Close() error
	dump() string
}

// startOwned starts a group with the merged Args of opts, fails the test
// (with the install command when a binary is missing) if it cannot, and
// closes it in tb.Cleanup, logging its state first if the test failed.
func startOwned[G group](tb testing.TB, what string, opts []Options, start func(Options) (G, error)) G {
	tb.Helper()
	var o Options
	for _, opt := range opts {
		o.Args = append(o.Args, opt.Args...)
	}
	g, err := start(o)
	switch {
	case errors.Is(err, ErrNotInstalled):
		tb.Fatalf("%s", notInstalledMsg)
	case errors.Is(err, ErrCLINotInstalled):
		tb.Fatalf("%s", cliNotInstalledMsg)
	case err != nil:
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("redistest: %s:\n%s", what, g.dump())
		}
		if err := g.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return g
}

func startCluster(o Options) (*Cluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, ErrCLINotInstalled
	}
	c := &Cluster{nodes: make([]*Server, clusterSize)}
	errs := make([]error, clusterSize)
	var wg sync.WaitGroup
	for i := range c.nodes {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startClusterNode(o.Args)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := pollUntil(ctx, c.converged); err != nil {
		err = fmt.Errorf("redistest: cluster did not converge within %v: %w\n%s", clusterTimeout, err, c.dump())
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// startClusterNode starts one cluster-mode server. The cluster bus port is
// chosen free like the client port (the default, port+10000, may be taken
// or past 65535); when it is the port that turns out busy, a new one is
// tried.
func startClusterNode(extra []string) (*Server, error) {
	var err error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		var bus int
		if bus, err = freePort(); err != nil {
			return nil, err
		}
		args := []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // relative to the node's own --dir
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
			"--cluster-port", strconv.Itoa(bus),
			// Let a replica take over however long ago it last heard its
			// master: tests kill masters at any moment.
			"--cluster-replica-validity-factor", "0",
			// A replica's first sync starts at once, not after the
			// default 5s wait for more replicas to share it.
			"--repl-diskless-sync-delay", "0",
		}
		var s *Server
		s, err = StartE(Options{Args: append(args, extra...)})
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, err
}

// Addrs returns the addresses of all six nodes, killed ones included, in
// start order: the seed list for a cluster client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		if n != nil {
			addrs[i] = n.Addr
		}
	}
	return addrs
}

// Node returns the server listening on addr, or nil. Its KillClients,
// ClientList and ConfigSet act on that node only.
func (c *Cluster) Node(addr string) *Server {
	for _, n := range c.nodes {
		if n != nil && n.Addr == addr {
			return n
		}
	}
	return nil
}

// ClusterOptions returns options for a cluster client that surfaces faults
// quickly: the timeouts of RedisOptions (dial 1s, read/write 2s), one dial
// attempt, and go-redis's defaults otherwise: MaxRedirects 3 (also its
// retries on another node after a network error) and the periodic reload
// of the slot map (ClusterStateReloadInterval), which is, with MOVED
// replies, the only way go-redis v9.18 learns of a failover: until then it
// keeps dialling a killed master (go-redis issue #3979). Tests see what
// users' clients do.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	o := clientOptions(c.Addrs()...)
	o.MaxRetries = 0 // go-redis's default (not -1): the retries described above
	return o.Cluster()
}

// Client returns a new cluster client (see ClusterOptions), closed in
// tb.Cleanup.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(c.ClusterOptions())
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Masters returns the addresses of the masters that serve slots, sorted,
// as a running node sees them.
func (c *Cluster) Masters(tb testing.TB) []string {
	tb.Helper()
	view, err := c.view()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	var out []string
	for _, n := range view {
		if n.master() && !n.failed() && len(n.slots) > 0 {
			out = append(out, n.addr)
		}
	}
	sort.Strings(out)
	return out
}

// NodeForSlot returns the address of the master serving slot (0-16383).
// Compute a key's slot with CLUSTER KEYSLOT or keys.Slot.
func (c *Cluster) NodeForSlot(tb testing.TB, slot int) string {
	tb.Helper()
	view, err := c.view()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	for _, n := range view {
		if !n.master() || n.failed() {
			continue
		}
		for _, r := range n.slots {
			if r[0] <= slot && slot <= r[1] {
				return n.addr
			}
		}
	}
	tb.Fatalf("redistest: no master serves slot %d", slot)
	return ""
}

// KillClients runs CLIENT KILL with filter on every running node (see
// Server.KillClients) and returns how many connections were killed in all.
func (c *Cluster) KillClients(tb testing.TB, filter ...string) int {
	tb.Helper()
	n := 0
	for _, s := range c.running() {
		n += s.KillClients(tb, filter...)
	}
	return n
}

// KillMaster sends SIGKILL to the master at addr, a crash, and waits for
// the process to exit. WaitFailover then waits for its replica to take
// over.
func (c *Cluster) KillMaster(tb testing.TB, addr string) {
	tb.Helper()
	view, err := c.view()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	var victim *clusterNode
	for i := range view {
		if view[i].addr == addr {
			victim = &view[i]
		}
	}
	s := c.Node(addr)
	if victim == nil || s == nil || !victim.master() || victim.failed() || len(victim.slots) == 0 {
		tb.Fatalf("redistest: kill master %s: not a serving master of this cluster", addr)
	}
	var heirs []string
	for _, n := range view {
		if n.was == victim.id {
			heirs = append(heirs, n.id)
		}
	}
	if len(heirs) == 0 {
		tb.Fatalf("redistest: kill master %s: it has no replica to take over", addr)
	}
	s.Kill(tb)
	c.mu.Lock()
	c.killedID, c.heirs, c.killedAddr, c.killedAt = victim.id, heirs, addr, time.Now()
	c.mu.Unlock()
}

// WaitFailover waits until every running node reports cluster_state:ok,
// flags the master killed last as failed, and sees one of its former
// replicas serving its slots as a master. It returns the time since
// KillMaster.
func (c *Cluster) WaitFailover(tb testing.TB) time.Duration {
	tb.Helper()
	c.mu.Lock()
	id, heirs, addr, at := c.killedID, c.heirs, c.killedAddr, c.killedAt
	c.mu.Unlock()
	if id == "" {
		tb.Fatalf("redistest: WaitFailover without KillMaster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	err := pollUntil(ctx, func() error {
		if err := c.allOK(); err != nil {
			return err
		}
		for _, s := range c.running() {
			view, err := nodesOf(s.Addr)
			if err != nil {
				return err
			}
			promoted := false
			for _, n := range view {
				if n.id == id && !n.failed() {
					return fmt.Errorf("%s does not see %s as failed yet", s.Addr, addr)
				}
				promoted = promoted || (n.master() && !n.failed() && len(n.slots) > 0 && slices.Contains(heirs, n.id))
			}
			if !promoted {
				return fmt.Errorf("%s sees no replica of %s promoted", s.Addr, addr)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: no failover of %s within %v: %v", addr, failoverTimeout, err)
	}
	return time.Since(at)
}

// Close kills every node and removes their directories. It may be called
// more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return closeAll(c.nodes)
}

// closeAll closes every server of ns that is not nil.
func closeAll(ns ...[]*Server) error {
	var errs []error
	for _, group := range ns {
		for _, n := range group {
			if n != nil {
				errs = append(errs, n.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// running returns the nodes whose process is alive.
func (c *Cluster) running() []*Server {
	var out []*Server
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		n.mu.Lock()
		up := n.proc != nil
		n.mu.Unlock()
		if up {
			out = append(out, n)
		}
	}
	return out
}

// converged reports nil once the cluster is usable and ready to fail over:
// every node is ok, knows all six, and every replica's link is up.
func (c *Cluster) converged() error {
	if err := c.allOK(); err != nil {
		return err
	}
	for _, s := range c.nodes {
		info, err := infoOf(s.Addr, "cluster", "info")
		if err != nil {
			return err
		}
		if info["cluster_known_nodes"] != strconv.Itoa(clusterSize) {
			return fmt.Errorf("%s knows %s nodes", s.Addr, info["cluster_known_nodes"])
		}
		repl, err := infoOf(s.Addr, "info", "replication")
		if err != nil {
			return err
		}
		if repl["role"] == "slave" && repl["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: master link %s", s.Addr, repl["master_link_status"])
		}
	}
	view, err := c.view()
	if err != nil {
		return err
	}
	masters, replicas := 0, 0
	for _, n := range view {
		switch {
		case n.master() && len(n.slots) > 0:
			masters++
		case !n.master() && n.was != "":
			replicas++
		}
	}
	if masters != clusterSize/2 || replicas != clusterSize/2 {
		return fmt.Errorf("%d masters and %d replicas", masters, replicas)
	}
	return nil
}

// allOK reports nil when every running node says cluster_state:ok with
// every slot served.
func (c *Cluster) allOK() error {
	for _, s := range c.running() {
		info, err := infoOf(s.Addr, "cluster", "info")
		if err != nil {
			return err
		}
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != strconv.Itoa(clusterSlots) {
			return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", s.Addr, info["cluster_state"], info["cluster_slots_ok"])
		}
	}
	return nil
}

// pollUntil calls cond until it returns nil or ctx ends, and returns its
// last error then.
func pollUntil(ctx context.Context, cond func() error) error {
	tick := time.NewTicker(clusterPoll)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// view returns CLUSTER NODES as the first running node that answers sees it.
func (c *Cluster) view() ([]clusterNode, error) {
	var errs []error
	for _, s := range c.running() {
		v, err := nodesOf(s.Addr)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("redistest: no cluster node answers: %w", errors.Join(errs...))
}

// dump describes every node's view and log, for a failing test.
func (c *Cluster) dump() string {
	var b strings.Builder
	for _, s := range c.nodes {
		if s == nil {
			continue
		}
		fmt.Fprintf(&b, "=== node %s\n", s.Addr)
		if out, err := adminDo(s.Addr, "cluster", "nodes"); err == nil {
			fmt.Fprintf(&b, "%v", out)
		} else {
			fmt.Fprintf(&b, "(cluster nodes: %v)\n", err)
		}
		b.WriteString(s.logTail())
	}
	return b.String()
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id    string
	addr  string // host:port, without the bus port
	flags string
	was   string   // the master's id, for a replica ("-" for a master becomes "")
	slots [][2]int // served slot ranges
}

func (n clusterNode) master() bool { return n.hasFlag("master") }
func (n clusterNode) failed() bool { return n.hasFlag("fail") || n.hasFlag("noaddr") }

func (n clusterNode) hasFlag(f string) bool {
	for _, x := range strings.Split(n.flags, ",") {
		if x == f {
			return true
		}
	}
	return false
}

// nodesOf parses CLUSTER NODES of the node at addr:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
func nodesOf(addr string) ([]clusterNode, error) {
	out, err := adminDo(addr, "cluster", "nodes")
	if err != nil {
		return nil, err
	}
	text, ok := out.(string)
	if !ok {
		return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: reply %T", addr, out)
	}
	var view []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{id: f[0], flags: f[2]}
		n.addr, _, _ = strings.Cut(f[1], "@")
		if f[3] != "-" {
			n.was = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: bad slot range %q", addr, s)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		view = append(view, n)
	}
	return view, nil
}

// infoOf runs an INFO-style command (CLUSTER INFO, INFO replication) and
// returns its key:value lines.
func infoOf(addr string, args ...any) (map[string]string, error) {
	out, err := adminDo(addr, args...)
	if err != nil {
		return nil, err
	}
	text, ok := out.(string)
	if !ok {
		return nil, fmt.Errorf("redistest: %v on %s: reply %T", args, addr, out)
	}
	m := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m, nil
}

// adminDo sends one command to addr on a connection of its own, bounded by
// short timeouts, and reports failure as an error (for polling loops).
func adminDo(addr string, args ...any) (any, error) {
	o := clientOptions(addr).Simple()
	o.ClientName = "redistest-admin"
	o.PoolSize = 1
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("redistest: %v on %s: %w", args, addr, err)
	}
	return v, nil
}
