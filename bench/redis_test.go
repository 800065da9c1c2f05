package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisAddr is the address of the redis-server that TestMain starts for the
// whole run.
var redisAddr string

func TestMain(m *testing.M) {
	srv, err := startRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	redisAddr = srv.addr
	code := m.Run()
	closeFixtures()
	srv.stop()
	os.Exit(code)
}

// redisServer is a redis-server child process without persistence.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

// startRedis starts redis-server on a free 127.0.0.1 port and waits until it
// answers PING. A missing binary is an error, never a skip: a benchmark run
// that silently drops its Redis scenarios would publish half a table.
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: apt-get install redis-server")
	}
	// The port is free now but not reserved; another process could take it
	// before redis-server binds, in which case the PING wait fails loudly.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "tiercache-bench-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", dir+"/redis.log")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir}
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(dir + "/redis.log")
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING: %v\n%s", s.addr, err, log)
		}
		time.Sleep(10 * time.Millisecond) // polling a child process, not synchronising goroutines
	}
}

func (s *redisServer) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// newRedis returns a go-redis client of its own (its own connection pool),
// closed with the fixtures. Every client honours context deadlines
// (ContextTimeoutEnabled), as tiercache's README recommends: without it,
// tiercache runs each Redis call on an extra goroutine to enforce its
// timeouts. The peers get the same option, so every row uses the same client.
func newRedis() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	onClose(func() { c.Close() })
	return c
}
