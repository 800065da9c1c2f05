package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name under which a Sentinel setup's sentinels monitor
// its master (redis.FailoverOptions.MasterName).
const MasterName = "mymaster"

const (
	sentinels        = 3
	sentinelQuorum   = 2
	sentinelDownMs   = 1000 // down-after-milliseconds: a dead master is noticed in a second
	sentinelFailMs   = 5000 // failover-timeout
	sentinelConfFile = "sentinel.conf"
	sentinelTimeout  = 30 * time.Second // start-up: sentinels find each other within a few seconds
)

// Sentinel is a master, one replica of it and three sentinels monitoring it
// (quorum 2), all on free loopback ports. Its methods are safe for
// concurrent use.
type Sentinel struct {
	data      []*Server // the first master and its replica; roles change on failover
	sentinels []*Server

	mu         sync.Mutex
	killedAddr string
	killedAt   time.Time
	closed     bool
}

// StartSentinel starts the master, its replica (--replicaof) and three
// sentinels (down-after-milliseconds 1000, failover-timeout 5000), and
// returns once the replica is in sync and every sentinel knows the replica
// and the two other sentinels, so that a failover can be authorised. Args
// of opts are passed to the master and the replica. tb.Cleanup kills every
// process.
func StartSentinel(tb testing.TB, opts ...Options) *Sentinel {
	tb.Helper()
	return startOwned(tb, "sentinel setup logs", opts, startSentinel)
}

func startSentinel(o Options) (*Sentinel, error) {
	s := &Sentinel{}
	fail := func(err error) (*Sentinel, error) {
		if s.data != nil {
			err = fmt.Errorf("%w\n%s", err, s.dump())
		}
		_ = s.Close()
		return nil, err
	}
	// A replica's first sync starts at once, not after the default 5s wait
	// for more replicas to share it.
	o.Args = append([]string{"--repl-diskless-sync-delay", "0"}, o.Args...)
	master, err := StartE(o)
	if err != nil {
		return nil, err
	}
	s.data = append(s.data, master)
	replica, err := StartE(Options{Args: append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, o.Args...)})
	if err != nil {
		return fail(err)
	}
	s.data = append(s.data, replica)
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	// In sync before the sentinels start: their first INFO of the master
	// then lists the replica at once (the next one comes 10s later).
	err = pollUntil(ctx, func() error {
		repl, err := infoOf(replica.Addr, "info", "replication")
		if err == nil && repl["master_link_status"] != "up" {
			err = fmt.Errorf("replica %s: master link %s", replica.Addr, repl["master_link_status"])
		}
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("redistest: replica not in sync within %v: %w", sentinelTimeout, err))
	}
	errs := make([]error, sentinels)
	s.sentinels = make([]*Server, sentinels)
	var wg sync.WaitGroup
	for i := range s.sentinels {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sentinels[i], errs[i] = startSentinelNode(master.Port)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	err = pollUntil(ctx, func() error {
		for _, sn := range s.sentinels {
			m, err := sentinelMaster(sn.Addr)
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinels-1) || m["flags"] != "master" {
				return fmt.Errorf("sentinel %s: flags %s, %s replicas, %s other sentinels", sn.Addr, m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("redistest: sentinels not ready within %v: %w", sentinelTimeout, err))
	}
	return s, nil
}

// startSentinelNode starts redis-server in sentinel mode, which needs a
// config file of its own (it rewrites it) as its first argument.
func startSentinelNode(masterPort int) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		return nil, fmt.Errorf("redistest: start sentinel: %w", err)
	}
	s := &Server{bin: bin, dir: dir}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(); err == nil {
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
			if err = s.launchSentinel(masterPort); err == nil {
				return s, nil
			}
		}
		if !errors.Is(err, errAddrInUse) || attempt == portAttempts {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// launchSentinel is launch for a sentinel. s.mu must be held.
func (s *Server) launchSentinel(masterPort int) error {
	_ = os.Remove(filepath.Join(s.dir, logFile))
	conf := filepath.Join(s.dir, sentinelConfFile)
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %q
logfile %q
sentinel monitor %s 127.0.0.1 %d %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
`, s.Port, s.dir, filepath.Join(s.dir, logFile), MasterName, masterPort, sentinelQuorum,
		MasterName, sentinelDownMs, MasterName, sentinelFailMs)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return fmt.Errorf("redistest: start sentinel on %s: %w", s.Addr, err)
	}
	stderr, err := os.Create(filepath.Join(s.dir, stderrFile))
	if err != nil {
		return fmt.Errorf("redistest: start sentinel on %s: %w", s.Addr, err)
	}
	defer stderr.Close()
	return s.run("sentinel", []string{conf, "--sentinel"}, stderr)
}

// SentinelAddrs returns the sentinels' addresses
// (redis.FailoverOptions.SentinelAddrs).
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// Node returns the data server (master or replica, as started) listening on
// addr, or nil.
func (s *Sentinel) Node(addr string) *Server {
	for _, n := range s.data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// MasterAddr returns the master's address as the sentinels report it.
func (s *Sentinel) MasterAddr(tb testing.TB) string {
	tb.Helper()
	var errs []error
	for _, sn := range s.sentinels {
		addr, err := masterAddrOf(sn.Addr)
		if err == nil {
			return addr
		}
		errs = append(errs, err)
	}
	tb.Fatalf("redistest: no sentinel names the master: %v", errors.Join(errs...))
	return ""
}

// FailoverOptions returns options for a failover client of MasterName with
// the timeouts of RedisOptions (dial 1s, read/write 2s) and no retries.
func (s *Sentinel) FailoverOptions() *redis.FailoverOptions {
	o := clientOptions(s.SentinelAddrs()...)
	o.MasterName = MasterName
	return o.Failover()
}

// FailoverClient returns redis.NewFailoverClient(FailoverOptions()), closed
// in tb.Cleanup.
func (s *Sentinel) FailoverClient(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(s.FailoverOptions())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// KillMaster sends SIGKILL to the current master, a crash, and returns its
// address. WaitFailover then waits for the sentinels to promote the
// replica.
func (s *Sentinel) KillMaster(tb testing.TB) string {
	tb.Helper()
	addr := s.MasterAddr(tb)
	n := s.Node(addr)
	if n == nil {
		tb.Fatalf("redistest: the sentinels name %s, which is not a server of this setup", addr)
	}
	n.Kill(tb)
	s.mu.Lock()
	s.killedAddr, s.killedAt = addr, time.Now()
	s.mu.Unlock()
	return addr
}

// WaitFailover waits until every sentinel names a new master (SENTINEL
// get-master-addr-by-name) and that server answers ROLE as a master. It
// returns the time since KillMaster.
func (s *Sentinel) WaitFailover(tb testing.TB) time.Duration {
	tb.Helper()
	s.mu.Lock()
	old, at := s.killedAddr, s.killedAt
	s.mu.Unlock()
	if old == "" {
		tb.Fatalf("redistest: WaitFailover without KillMaster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	err := pollUntil(ctx, func() error {
		var now string
		for _, sn := range s.sentinels {
			addr, err := masterAddrOf(sn.Addr)
			if err != nil {
				return err
			}
			if addr == old || (now != "" && addr != now) {
				return fmt.Errorf("sentinel %s names %s", sn.Addr, addr)
			}
			now = addr
		}
		role, err := adminDo(now, "role")
		if err != nil {
			return err
		}
		if r, ok := role.([]any); !ok || len(r) == 0 || r[0] != "master" {
			return fmt.Errorf("%s answers ROLE %v", now, role)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: no sentinel failover from %s within %v: %v", old, failoverTimeout, err)
	}
	return time.Since(at)
}

// Close kills every process and removes their directories. It may be called
// more than once.
func (s *Sentinel) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return closeAll(s.sentinels, s.data)
}

func (s *Sentinel) dump() string {
	var b strings.Builder
	for _, n := range s.data {
		if n != nil {
			fmt.Fprintf(&b, "=== data node %s\n%s", n.Addr, n.logTail())
		}
	}
	for _, n := range s.sentinels {
		if n != nil {
			fmt.Fprintf(&b, "=== sentinel %s\n%s", n.Addr, n.logTail())
		}
	}
	return b.String()
}

// masterAddrOf asks the sentinel at addr for the master's address.
func masterAddrOf(addr string) (string, error) {
	out, err := adminDo(addr, "sentinel", "get-master-addr-by-name", MasterName)
	if err != nil {
		return "", err
	}
	r, ok := out.([]any)
	if !ok || len(r) != 2 {
		return "", fmt.Errorf("redistest: sentinel %s: get-master-addr-by-name replied %v", addr, out)
	}
	return net.JoinHostPort(fmt.Sprint(r[0]), fmt.Sprint(r[1])), nil
}

// sentinelMaster returns SENTINEL MASTER as a map, whichever protocol
// version the reply came in (a map in RESP3, a flat list in RESP2).
func sentinelMaster(addr string) (map[string]string, error) {
	out, err := adminDo(addr, "sentinel", "master", MasterName)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	switch r := out.(type) {
	case map[any]any:
		for k, v := range r {
			m[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			m[fmt.Sprint(r[i])] = fmt.Sprint(r[i+1])
		}
	default:
		return nil, fmt.Errorf("redistest: sentinel %s: SENTINEL MASTER replied %T", addr, out)
	}
	return m, nil
}
