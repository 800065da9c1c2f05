package pgtest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const psqlTimeout = 30 * time.Second

// Psql runs sql on database db ("postgres" when empty) as the superuser
// through psql, stopping at the first error, and returns what it printed:
// rows unaligned, one per line, fields separated by '|', no headers. It is
// for setup and checks in tests that do not link a driver; a failure fails
// the test.
func (s *Server) Psql(tb testing.TB, db, sql string) string {
	tb.Helper()
	out, err := s.PsqlE(db, sql)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return out
}

// PsqlE is Psql returning the error instead of failing a test.
func (s *Server) PsqlE(db, sql string) (string, error) {
	bin := s.bins.psql
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("psql"); err != nil {
			return "", fmt.Errorf("pgtest: psql not found (%s installs it)", InstallHint)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), psqlTimeout)
	defer cancel()
	// The client connects over TCP as the role "postgres", so it needs no
	// OS user of that name and runs as the test's own user.
	cmd := exec.CommandContext(ctx, bin, "--no-psqlrc", "-q", "-At", "-v", "ON_ERROR_STOP=1",
		"-d", s.ConnString(db), "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgtest: psql on %s: %q: %v\n%s", s.Addr, sql, err, out)
	}
	return strings.TrimRight(string(out), "\n"), nil
}
