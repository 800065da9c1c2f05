package pgtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitReady polls until postmaster.pid names process p as ready on our port
// and the port accepts a connection. Checking the pid, not merely the port,
// matters: another test's server may have won the race for the port.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if s.readyAs(p.cmd.Process.Pid) {
			return nil
		}
		select {
		case <-p.exited:
			tail := s.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("pgtest: start postgres on %s: %w", s.Addr, errAddrInUse)
			}
			return fmt.Errorf("pgtest: postgres on %s exited during startup (%v); log:\n%s", s.Addr, p.err, tail)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres on %s was not ready within %v; log:\n%s", s.Addr, startTimeout, s.logTail())
		}
	}
}

// readyAs reports whether postmaster.pid says pid is ready on s.Port (its
// lines: pid, data dir, start time, port, socket dir, listen address, shared
// memory key, status) and the port accepts connections.
func (s *Server) readyAs(pid int) bool {
	b, err := os.ReadFile(filepath.Join(s.dir, dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(pid) ||
		strings.TrimSpace(lines[3]) != strconv.Itoa(s.Port) || strings.TrimSpace(lines[7]) != "ready" {
		return false
	}
	c, err := net.DialTimeout("tcp", s.Addr, 250*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// logTail returns the last lines of the server's log.
func (s *Server) logTail() string {
	data, err := os.ReadFile(filepath.Join(s.dir, logFile))
	if err != nil || len(data) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return strings.Join(lines, "\n")
}
