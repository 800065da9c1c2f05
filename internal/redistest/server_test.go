package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: the waiter
// of a killed redis-server, or a go-redis client that was not closed. No
// go-redis goroutine needs ignoring: every client here is closed in
// tb.Cleanup, and a closed go-redis client stops its goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartSetGet(t *testing.T) {
	s := Start(t)
	if s.Addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) {
		t.Fatalf("Addr %q does not match Port %d", s.Addr, s.Port)
	}
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want \"v\", nil", got, err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share %s", a.Addr)
	}
	ctx := ctxT(t)
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET on b = %v; want redis.Nil", err)
	}
}

func TestKillRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	s.Kill(t)
	s.Kill(t) // idempotent
	if err := c.Get(ctx, "k").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Kill = %v; want a connection error", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		t.Fatalf("%s still accepts connections after Kill", s.Addr)
	}

	addr := s.Addr
	s.Restart(t)
	if s.Addr != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr)
	}
	fresh := s.Client(t)
	if err := fresh.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Restart = %v; want redis.Nil (data gone)", err)
	}
	if err := fresh.Set(ctx, "k", "w", 0).Err(); err != nil {
		t.Fatalf("SET after Restart: %v", err)
	}
	// The old client's pooled connection died with the first server; it
	// must reach the new one on the same Addr without being rebuilt.
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "w" {
		t.Fatalf("old client GET after Restart = %q, %v; want \"w\", nil", got, err)
	}
}

func TestRestartWhileRunning(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Restart(t) // kills first
	if err := s.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Restart = %v; want redis.Nil", err)
	}
}

func TestPause(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Ping(ctx).Err(); err != nil { // connect before the pause
		t.Fatalf("PING: %v", err)
	}
	const pause = 300 * time.Millisecond
	s.Pause(t, pause)
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET during pause = %v; want redis.Nil once the pause ends", err)
	}
	if elapsed := time.Since(start); elapsed < pause*8/10 {
		t.Fatalf("GET during a %v pause took %v; want >= %v", pause, elapsed, pause*8/10)
	}
}

func TestKillClients(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	before, err := c.ClientID(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT ID: %v", err)
	}

	if n := s.KillClients(t, "TYPE", "normal"); n < 1 {
		t.Fatalf("KillClients(TYPE normal) = %d; want >= 1", n)
	}
	for _, e := range s.ClientList(t) {
		if e["id"] == strconv.FormatInt(before, 10) {
			t.Fatalf("killed connection %d still listed: %v", before, e)
		}
	}
	// The client's next command either fails on the dead connection or
	// transparently dials a new one; either way the old one must be gone.
	after, err := c.ClientID(ctx).Result()
	if err != nil {
		after, err = c.ClientID(ctx).Result()
	}
	if err != nil {
		t.Fatalf("CLIENT ID after kill: %v", err)
	}
	if after == before {
		t.Fatalf("client still on connection %d after KillClients", before)
	}

	if n := s.KillClients(t, "ID", strconv.FormatInt(after, 10)); n != 1 {
		t.Fatalf("KillClients(ID %d) = %d; want 1", after, n)
	}
}

func TestClientList(t *testing.T) {
	s := Start(t)
	opts := s.RedisOptions()
	opts.ClientName = "lister"
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx := ctxT(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	var found map[string]string
	for _, e := range s.ClientList(t) {
		if e["name"] == "lister" {
			found = e
		}
	}
	if found == nil {
		t.Fatalf("no client named lister in %v", s.ClientList(t))
	}
	for _, k := range []string{"id", "addr", "flags", "cmd", "sub", "omem"} {
		if _, ok := found[k]; !ok {
			t.Errorf("entry lacks %q: %v", k, found)
		}
	}
	if found["cmd"] != "ping" {
		t.Errorf("cmd = %q; want ping", found["cmd"])
	}
}

func TestConfigSet(t *testing.T) {
	s := Start(t)
	s.ConfigSet(t, "maxmemory-policy", "allkeys-lru")
	got, err := s.Client(t).ConfigGet(ctxT(t), "maxmemory-policy").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if got["maxmemory-policy"] != "allkeys-lru" {
		t.Fatalf("maxmemory-policy = %q; want allkeys-lru", got["maxmemory-policy"])
	}
}

func TestOptionsArgsSurviveRestart(t *testing.T) {
	s := Start(t, Options{Args: []string{"--client-output-buffer-limit", "pubsub 1kb 1kb 0"}})
	check := func(when string) {
		t.Helper()
		got, err := s.Client(t).ConfigGet(ctxT(t), "client-output-buffer-limit").Result()
		if err != nil {
			t.Fatalf("%s: CONFIG GET: %v", when, err)
		}
		if v := got["client-output-buffer-limit"]; !strings.Contains(v, "pubsub 1024 1024 0") {
			t.Fatalf("%s: client-output-buffer-limit = %q; want pubsub 1024 1024 0", when, v)
		}
	}
	check("after Start")
	s.Restart(t)
	check("after Restart")
}

func TestStartEBadArgsShowsLog(t *testing.T) {
	s, err := StartE(Options{Args: []string{"--no-such-directive", "1"}})
	if err == nil {
		s.Close()
		t.Fatal("StartE with a bad directive succeeded")
	}
	if !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("error lacks redis-server's complaint: %v", err)
	}
}

func TestStartEClose(t *testing.T) {
	s, err := StartE(Options{})
	if err != nil {
		t.Fatalf("StartE: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir %s survives Close: %v", s.dir, err)
	}
	if err := s.restart(); !errors.Is(err, ErrClosed) {
		t.Fatalf("restart after Close = %v; want ErrClosed", err)
	}
}

// A port taken between freePort and redis-server's bind must be reported as
// errAddrInUse (which StartE retries with a new port), never mistaken for a
// ready server.
func TestLaunchOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := StartE(Options{})
	if err != nil {
		t.Fatalf("StartE: %v", err)
	}
	defer s.Close()
	s.Port = l.Addr().(*net.TCPAddr).Port
	s.Addr = l.Addr().String()
	s.mu.Lock()
	s.killLocked()
	err = s.launch()
	s.mu.Unlock()
	if !errors.Is(err, errAddrInUse) {
		t.Fatalf("launch on a busy port = %v; want errAddrInUse", err)
	}
}

func TestStartWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := StartE(Options{}); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("StartE without redis-server = %v; want ErrNotInstalled", err)
	}
}

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartFailsWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(tb)
		t.Error("Start returned without redis-server")
	}()
	<-done
	if tb.msg != notInstalledMsg {
		t.Fatalf("Fatalf message = %q; want %q", tb.msg, notInstalledMsg)
	}
}

func TestRestartFromSnapshot(t *testing.T) {
	s := Start(t, Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	c := s.Client(t)
	ctx := context.Background()
	set := func(v string) {
		t.Helper()
		if err := c.Set(ctx, "k", v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	get := func() string {
		t.Helper()
		v, err := c.Get(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	set("saved")
	s.Save(t)
	set("after the save")
	s.RestartFromSnapshot(t)
	if v := get(); v != "saved" {
		t.Fatalf("after RestartFromSnapshot k = %q, want the saved value", v)
	}
	set("appended")
	s.Restart(t) // the append-only file is on again
	if v := get(); v != "appended" {
		t.Fatalf("after a plain restart k = %q, want what the AOF held", v)
	}
}
