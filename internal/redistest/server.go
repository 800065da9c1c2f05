package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

const (
	startTimeout   = 10 * time.Second      // a fresh redis-server answers in milliseconds; CI can be slow
	pollInterval   = 10 * time.Millisecond // readiness poll
	portAttempts   = 5                     // fresh ports tried when another process wins the race for one
	restartTimeout = 5 * time.Second       // Restart keeps its port, so it retries while the port is busy
	restartBackoff = 50 * time.Millisecond
	adminTimeout   = 5 * time.Second // bound on every command this package sends

	logFile    = "redis.log"  // redis-server's own log (--logfile)
	stderrFile = "stderr.log" // what it prints before the log is open, e.g. config errors
	tailLines  = 20
)

const notInstalledMsg = "redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) — tiercache tests need a real Redis"

var (
	// ErrNotInstalled is returned by StartE when redis-server is not in PATH.
	ErrNotInstalled = errors.New(notInstalledMsg)
	// ErrClosed is returned when a closed Server is asked to restart.
	ErrClosed = errors.New("redistest: server closed")

	// errAddrInUse means another process holds the port redis-server wanted.
	errAddrInUse = errors.New("address already in use")
)

// Server is a redis-server child process on a free 127.0.0.1 port, owned by
// one test (or a TestMain). Addr and Port never change, across Restart too.
// Its methods are safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:<Port>", ready for redis.Options.Addr.
	Addr string
	// Port is the TCP port the server listens on.
	Port int

	bin  string   // redis-server path
	dir  string   // temp dir: --dir and the logs
	args []string // Options.Args

	mu     sync.Mutex // serialises Kill, Restart and Close
	proc   *process   // nil while not running
	closed bool
}

// Options configures a Server.
type Options struct {
	// Args are extra redis-server arguments appended after this package's
	// own, e.g. "--client-output-buffer-limit", "pubsub 1kb 1kb 0". They are
	// kept for Restart.
	Args []string
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result; read only after exited is closed
}

// kill sends SIGKILL and returns once the process has been reaped, so that
// neither the process nor the goroutine waiting for it outlives the call.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only if it already exited, which is fine
	<-p.exited
}

// Start starts a server and registers tb.Cleanup to kill it and remove its
// directory. Args of several Options are concatenated. When redis-server is
// not in PATH the test fails (never skips): tiercache tests need a real Redis.
func Start(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	var o Options
	for _, opt := range opts {
		o.Args = append(o.Args, opt.Args...)
	}
	s, err := StartE(o)
	if errors.Is(err, ErrNotInstalled) {
		tb.Fatalf("%s", notInstalledMsg)
	}
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("redistest: log of redis-server %s:\n%s", s.Addr, s.logTail())
		}
		if err := s.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return s
}

// StartE is Start without testing.TB, for TestMain and helper processes. The
// caller must Close the server.
func StartE(opts Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: start: %w", err)
	}
	s := &Server{bin: bin, dir: dir, args: append([]string(nil), opts.Args...)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		// The port is free now but not reserved: another process may take
		// it before redis-server binds, hence the retries with a new one.
		if s.Port, err = freePort(); err == nil {
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
			if err = s.launch(); err == nil {
				return s, nil
			}
		}
		if !errors.Is(err, errAddrInUse) || attempt == portAttempts {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts redis-server on s.Port and waits until it answers. s.mu must
// be held (or s not yet shared).
func (s *Server) launch(extra ...string) error {
	// Fresh logs, so that the tail shown on failure, and the check for a
	// busy port, see this run only.
	_ = os.Remove(filepath.Join(s.dir, logFile))
	stderr, err := os.Create(filepath.Join(s.dir, stderrFile))
	if err != nil {
		return fmt.Errorf("redistest: start redis-server on %s: %w", s.Addr, err)
	}
	defer stderr.Close() // the child holds its own descriptor
	args := append([]string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, logFile),
		"--protected-mode", "no",
	}, s.args...)
	return s.run("redis-server", append(args, extra...), stderr)
}

// run starts s.bin with args in s.dir, its stderr going to stderr, waits
// until it answers as this process and makes it s's process. s.mu must be
// held (or s not yet shared).
func (s *Server) run(what string, args []string, stderr *os.File) error {
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	// Stdout stays nil (/dev/null) and stderr goes to a file, not a pipe:
	// no copying goroutine, and `go test` never waits on our child's output.
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s on %s: %w", what, s.Addr, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := s.waitReady(p); err != nil {
		p.kill()
		return err
	}
	s.proc = p
	return nil
}

// waitReady polls until the server answers as process p. Checking the pid,
// not merely a PONG, matters: if another test's server won the race for the
// port, it would answer while ours is failing to bind.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if pid, err := serverPID(s.Addr); err == nil && pid == p.cmd.Process.Pid {
			return nil
		}
		select {
		case <-p.exited:
			tail := s.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("redistest: start redis-server on %s: %w", s.Addr, errAddrInUse)
			}
			return fmt.Errorf("redistest: redis-server on %s exited during startup (%v); log:\n%s", s.Addr, p.err, tail)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer within %v; log:\n%s", s.Addr, startTimeout, s.logTail())
		}
	}
}

// serverPID asks the server at addr for its process id (INFO server), over a
// raw connection so that readiness polls leave no client state behind.
func serverPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, "INFO server\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(head, "$") { // e.g. -LOADING, or not Redis at all
		return 0, fmt.Errorf("unexpected INFO reply %q", head)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("unexpected INFO reply %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("no process_id in INFO server")
}

// logTail returns the last lines of the current run's stderr and log file.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{stderrFile, logFile} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// clientOptions are what every go-redis client of this package's servers
// starts from, whatever its kind: timeouts that surface faults instead of
// hiding them (dial 1s, read/write 2s), one dial attempt, and no retries
// (go-redis spells "none" MaxRetries: -1, since 0 means 3).
func clientOptions(addrs ...string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:              addrs,
		DialTimeout:        time.Second,
		ReadTimeout:        2 * time.Second,
		WriteTimeout:       2 * time.Second,
		MaxRetries:         -1,
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
	}
}

// RedisOptions returns options for a client of this server that surfaces
// faults instead of hiding them: short timeouts (dial 1s, read/write 2s) and
// no retries (go-redis spells "none" MaxRetries: -1, since 0 means 3; one
// dial attempt). Note that after PoolSize failed dials in a row go-redis
// fails fast and probes the server only once a second.
func (s *Server) RedisOptions() *redis.Options {
	return clientOptions(s.Addr).Simple()
}

// Client returns a new client for the server (see RedisOptions), closed in
// tb.Cleanup.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.RedisOptions())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL to the server, a crash, and waits for the process to
// exit. Killing a server that is not running does nothing.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Restart starts the server again on the same port, killing it first if it
// is running, and returns once it answers. Its data is gone: there is no
// persistence.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.restart(); err != nil {
		tb.Fatalf("%v", err)
	}
}

func (s *Server) restart(extra ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("redistest: restart %s: %w", s.Addr, ErrClosed)
	}
	s.killLocked()
	if len(extra) > 0 { // from the snapshot: the append-only files go
		_ = os.RemoveAll(filepath.Join(s.dir, "appendonlydir"))
		_ = os.Remove(filepath.Join(s.dir, "appendonly.aof"))
	}
	// The port is fixed now; the kernel, or a client's reconnect racing
	// with us, may hold it for a moment.
	deadline := time.Now().Add(restartTimeout)
	for {
		err := s.launch(extra...)
		if err == nil || !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(restartBackoff)
	}
}

// Save runs SAVE: the server's data, as of now, goes to its snapshot file.
func (s *Server) Save(tb testing.TB) {
	tb.Helper()
	s.admin(tb, "save")
}

// RestartFromSnapshot kills the server and starts it again from the last
// Save, as a server restored from an older RDB snapshot (or backup) comes
// back: every write since that Save is lost, whatever the append-only file
// held. A server started with --appendonly yes has it on again afterwards.
func (s *Server) RestartFromSnapshot(tb testing.TB) {
	tb.Helper()
	if err := s.restart("--appendonly", "no"); err != nil {
		tb.Fatalf("%v", err)
	}
	for i, a := range s.args {
		if a == "--appendonly" && i+1 < len(s.args) && s.args[i+1] == "yes" {
			s.ConfigSet(tb, "appendonly", "yes")
			s.waitAOF(tb)
		}
	}
}

// waitAOF waits until the append-only file that CONFIG SET appendonly yes
// starts is written, so that a crash right after loses nothing acknowledged.
func (s *Server) waitAOF(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := s.admin(tb, "info", "persistence").(string)
		if strings.Contains(info, "aof_enabled:1") && strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: the append-only file of %s was not written in time:\n%s", s.Addr, info)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close kills the server and removes its directory. It is for StartE users
// (Start's cleanup calls it) and may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.killLocked()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("redistest: close %s: %w", s.Addr, err)
	}
	return nil
}

// Pause runs CLIENT PAUSE <d in ms> ALL: connections stay open and every
// command stalls until the pause ends.
func (s *Server) Pause(tb testing.TB, d time.Duration) {
	tb.Helper()
	if d < 0 {
		tb.Fatalf("redistest: pause %s: negative duration %v", s.Addr, d)
	}
	s.admin(tb, "client", "pause", d.Milliseconds(), "all")
}

// KillClients runs CLIENT KILL with the filter, e.g. ("TYPE", "pubsub") or
// ("ID", "12"), and returns how many connections were killed. The
// connection that sends the command is never among them (SKIPME yes).
func (s *Server) KillClients(tb testing.TB, filter ...string) int {
	tb.Helper()
	if len(filter) == 0 {
		tb.Fatalf("redistest: kill clients on %s: empty filter", s.Addr)
	}
	args := []any{"client", "kill"}
	for _, f := range filter {
		args = append(args, f)
	}
	switch v := s.admin(tb, args...).(type) {
	case int64:
		return int(v)
	case string: // the legacy form, CLIENT KILL <addr>, answers OK
		return 1
	default:
		tb.Fatalf("redistest: kill clients on %s: unexpected reply %T %v", s.Addr, v, v)
		return 0
	}
}

// ClientList returns CLIENT LIST, one map per connection, keyed by the
// reply's field names (id, name, addr, flags, cmd, sub, omem, ...). It
// includes the connection that asked, named "redistest-admin".
func (s *Server) ClientList(tb testing.TB) []map[string]string {
	tb.Helper()
	reply, ok := s.admin(tb, "client", "list").(string)
	if !ok {
		tb.Fatalf("redistest: client list on %s: reply is not a string", s.Addr)
	}
	var list []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(reply), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		entry := make(map[string]string, len(fields))
		for _, f := range fields { // Redis forbids spaces in client names
			k, v, _ := strings.Cut(f, "=")
			entry[k] = v
		}
		list = append(list, entry)
	}
	return list
}

// ConfigSet runs CONFIG SET key value.
func (s *Server) ConfigSet(tb testing.TB, key, value string) {
	tb.Helper()
	s.admin(tb, "config", "set", key, value)
}

// admin sends one command on a short-lived connection of its own, so that
// it neither depends on nor disturbs the test's clients.
func (s *Server) admin(tb testing.TB, args ...any) any {
	tb.Helper()
	v, err := adminDo(s.Addr, args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return v
}
