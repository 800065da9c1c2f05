package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 30 * time.Second      // initdb plus startup; a fresh server is ready in about a second
	stopTimeout  = 10 * time.Second      // immediate shutdown, before SIGKILL
	pollInterval = 10 * time.Millisecond // readiness poll
	portAttempts = 5                     // fresh ports tried when another process wins the race for one

	dataDir   = "data"       // PGDATA inside the server's directory
	logFile   = "server.log" // postgres's stderr: its whole log
	tailLines = 30
)

// Settings every server gets: what logical replication tests need, and
// nothing that would make a test depend on the disk being durable.
var baseSettings = map[string]string{
	"listen_addresses":      "127.0.0.1",
	"wal_level":             "logical",
	"fsync":                 "off",
	"full_page_writes":      "off",
	"synchronous_commit":    "on",
	"max_replication_slots": "32",
	"max_wal_senders":       "32",
	"max_connections":       "100",
	"wal_sender_timeout":    "60s",
	"log_min_messages":      "warning",
	"log_line_prefix":       "%m [%p] ",
}

var (
	// ErrClosed is returned when a closed Server is asked to restart.
	ErrClosed = errors.New("pgtest: server closed")

	errAddrInUse = errors.New("address already in use")
)

// Server is a PostgreSQL server (its postmaster a child process) on a free
// 127.0.0.1 port, owned by one test or a TestMain. Its superuser is
// "postgres", authenticated by trust; Addr and Port never change, across
// Restart too. Its methods are safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:<Port>".
	Addr string
	// Port is the TCP port the server listens on.
	Port int

	bins     binaries
	owner    *account // runs the server when the test runs as root; nil: the test's own user
	dir      string   // the server's directory: data/, the log, the unix socket
	settings map[string]string

	mu     sync.Mutex // serialises Stop, Restart and Close
	proc   *process   // nil while not running
	closed bool
}

// Options configures a Server.
type Options struct {
	// Settings are extra server settings (postgres -c name=value), applied
	// after and over this package's own, e.g. {"wal_level": "replica"}.
	Settings map[string]string
}

// process is one run of the postmaster.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result; read only after exited is closed
}

// stop asks for an immediate shutdown (SIGQUIT: the postmaster ends every
// backend and exits; the next start runs crash recovery), falls back to
// SIGKILL, and returns once the process has been reaped.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Start initialises and starts a server and registers tb.Cleanup to stop it
// and remove its directory. Settings of several Options are merged. When the
// binaries are missing the test fails (never skips) with the install command.
func Start(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	o := Options{Settings: map[string]string{}}
	for _, opt := range opts {
		for k, v := range opt.Settings {
			o.Settings[k] = v
		}
	}
	s, err := StartE(o)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pgtest: log of postgres %s:\n%s", s.Addr, s.logTail())
		}
		if err := s.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return s
}

// StartE is Start without testing.TB, for TestMain and helper processes. The
// caller must Close the server. A missing installation is ErrNotInstalled.
func StartE(opts Options) (*Server, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempParent(owner), "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: start: %w", err)
	}
	s := &Server{bins: bins, owner: owner, dir: dir, settings: map[string]string{}}
	for k, v := range baseSettings {
		s.settings[k] = v
	}
	for k, v := range opts.Settings {
		s.settings[k] = v
	}
	s.settings["unix_socket_directories"] = dir // never the system's socket directory
	if err := s.initdb(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		// The port is free now but not reserved: another process may take
		// it before postgres binds, hence the retries with a new one.
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

// initdb creates the cluster in dir/data, owned by s.owner.
func (s *Server) initdb() error {
	if s.owner != nil {
		if err := os.Chown(s.dir, int(s.owner.uid), int(s.owner.gid)); err != nil {
			return fmt.Errorf("pgtest: hand %s to user %s: %w", s.dir, s.owner.name, err)
		}
	}
	cmd := exec.Command(s.bins.initdb, "-D", filepath.Join(s.dir, dataDir), "-U", "postgres",
		"--auth=trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(s.owner)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb in %s: %v\n%s", s.dir, err, out)
	}
	return nil
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago. It is
// never 5432: the machine's own PostgreSQL may listen there.
func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pgtest: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != 5432 {
			return port, nil
		}
	}
}

// launch starts postgres on s.Port and waits until it accepts connections.
// s.mu must be held (or s not yet shared).
func (s *Server) launch() error {
	log, err := os.OpenFile(filepath.Join(s.dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: start postgres on %s: %w", s.Addr, err)
	}
	defer log.Close() // the child holds its own descriptor
	args := []string{"-D", filepath.Join(s.dir, dataDir), "-p", strconv.Itoa(s.Port)}
	names := make([]string, 0, len(s.settings))
	for k := range s.settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+s.settings[k])
	}
	cmd := exec.Command(s.bins.postgres, args...)
	cmd.Dir = s.dir
	// Stdout stays nil (/dev/null) and stderr goes to a file, not a pipe:
	// no copying goroutine, and `go test` never waits on our child's output.
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr(s.owner)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres on %s: %w", s.Addr, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := s.waitReady(p); err != nil {
		p.stop()
		return err
	}
	s.proc = p
	return nil
}

// ConnString returns a URL for the superuser "postgres" on database db
// ("postgres" when empty), with TLS off.
func (s *Server) ConnString(db string) string {
	return s.ConnStringAs("postgres", db)
}

// ConnStringAs is ConnString for another role (authenticated by trust).
func (s *Server) ConnStringAs(role, db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", role, s.Addr, db)
}

// Stop shuts the server down at once (immediate shutdown: a crash as far as
// its clients and its WAL are concerned) and waits for it to exit. Its data
// stays for Restart. Stopping a server that is not running does nothing.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.must(tb, s.stop)
}

// Restart starts the server again on the same port with the same data,
// stopping it first if it is running, and returns once it is ready.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.must(tb, s.restart)
}

// must runs step under s.mu, failing the test on its error.
func (s *Server) must(tb testing.TB, step func() error) {
	tb.Helper()
	s.mu.Lock()
	err := step()
	s.mu.Unlock()
	if err != nil {
		tb.Fatalf("%v", err)
	}
}

// stop ends the running postmaster, if any. s.mu must be held.
func (s *Server) stop() error {
	if s.proc != nil {
		s.proc.stop()
		s.proc = nil
	}
	return nil
}

// restart stops and launches the server. s.mu must be held. postgres binds
// with SO_REUSEADDR, so the port it just left is free for it again at once
// (unless another process took it meanwhile: then the error says so).
func (s *Server) restart() error {
	if s.closed {
		return fmt.Errorf("pgtest: restart %s: %w", s.Addr, ErrClosed)
	}
	_ = s.stop()
	return s.launch()
}

// Close stops the server and removes its directory. It is for StartE users
// (Start's cleanup calls it) and may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_ = s.stop()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("pgtest: close %s: %w", s.Addr, err)
	}
	return nil
}
