//go:build !linux

package redistest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a test binary that
// dies without its cleanups leaves its redis-server running there.
func sysProcAttr() *syscall.SysProcAttr { return nil }
