package pgtest

import "syscall"

// sysProcAttr: Windows has neither a parent-death signal nor root, so the
// child runs as the caller.
func sysProcAttr(*account) *syscall.SysProcAttr { return nil }
