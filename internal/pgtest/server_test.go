package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives the tests, such as the
// waiter of a postmaster that was never reaped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartForLogicalReplication(t *testing.T) {
	s := Start(t)
	if s.Addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) {
		t.Fatalf("Addr %q does not match Port %d", s.Addr, s.Port)
	}
	if s.Port == 5432 {
		t.Fatal("the test server took the standard port 5432")
	}
	got := s.Psql(t, "", "SELECT current_setting('wal_level'), current_setting('fsync'), "+
		"current_setting('max_replication_slots'), current_setting('max_wal_senders'), inet_server_port()")
	if want := fmt.Sprintf("logical|off|32|32|%d", s.Port); got != want {
		t.Fatalf("settings = %q, want %q", got, want)
	}
	if got := s.Psql(t, "", "SELECT rolsuper AND rolreplication FROM pg_roles WHERE rolname = current_user"); got != "t" {
		t.Fatalf("the superuser postgres lacks superuser or replication rights: %q", got)
	}
	// A logical slot can be created and decodes a change: the point of the
	// package.
	s.Psql(t, "", "CREATE TABLE t(id int PRIMARY KEY)")
	s.Psql(t, "", "SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
	s.Psql(t, "", "INSERT INTO t VALUES (7)")
	if got := s.Psql(t, "", "SELECT data FROM pg_logical_slot_get_changes('s', NULL, NULL) WHERE data LIKE 'table%'"); !strings.Contains(got, "id[integer]:7") {
		t.Fatalf("decoded changes = %q, want the insert of 7", got)
	}
	s.Psql(t, "", "SELECT pg_drop_replication_slot('s')")
}

func TestRunsAsPostgresUnderRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: the server runs as the test's own user")
	}
	s := Start(t)
	pid := s.proc.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the postmaster's status: %v", err)
	}
	want := strconv.Itoa(os.Geteuid())
	if s.owner != nil {
		want = strconv.Itoa(int(s.owner.uid))
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "Uid:" {
			if f[2] != want || f[2] == "0" {
				t.Fatalf("postmaster runs with euid %s, want %s and never root", f[2], want)
			}
			return
		}
	}
	t.Fatal("no Uid line in /proc status")
}

func TestServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share %s", a.Addr)
	}
	a.Psql(t, "", "CREATE TABLE only_in_a(id int)")
	if got := b.Psql(t, "", "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"); got != "0" {
		t.Fatalf("a table made on a is visible on b: %q", got)
	}
}

func TestStopRestartKeepsData(t *testing.T) {
	s := Start(t)
	s.Psql(t, "", "CREATE TABLE t(v text); INSERT INTO t VALUES ('kept')")
	addr := s.Addr
	s.Stop(t)
	s.Stop(t) // idempotent
	if _, err := s.PsqlE("", "SELECT 1"); err == nil {
		t.Fatal("psql succeeded against a stopped server")
	}
	if _, err := net.Dial("tcp", s.Addr); err == nil {
		t.Fatalf("%s still accepts connections after Stop", s.Addr)
	}
	s.Restart(t)
	if s.Addr != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr)
	}
	if got := s.Psql(t, "", "SELECT v FROM t"); got != "kept" {
		t.Fatalf("after Restart, t holds %q, want \"kept\"", got)
	}
}

func TestSettingsOverride(t *testing.T) {
	s := Start(t, Options{Settings: map[string]string{"wal_level": "replica"}})
	if got := s.Psql(t, "", "SHOW wal_level"); got != "replica" {
		t.Fatalf("wal_level = %q, want the override replica", got)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	s, err := StartE(Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after Close: %v", dir, err)
	}
	s.mu.Lock()
	err = s.restart()
	s.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("restart after Close = %v, want ErrClosed", err)
	}
}

func TestMissingBinariesSayHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinariesIn(filepath.Join(t.TempDir(), "*", "bin"))
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("findBinaries with nothing installed = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Fatalf("the error does not give the install command: %v", err)
	}
}

func TestNewestVersionFirst(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9", "15", "13"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "postgres"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := findBinariesIn(filepath.Join(root, "*", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "15", "bin", "initdb"); b.initdb != want {
		t.Fatalf("initdb = %s, want the newest version's %s", b.initdb, want)
	}
}
