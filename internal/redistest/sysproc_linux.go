package redistest

import "syscall"

// sysProcAttr asks the kernel to SIGKILL redis-server when the test binary
// dies without running its cleanups. Strictly the signal follows the death of
// the OS thread that started the child; Go only ends threads whose goroutine
// exits while locked to them (runtime.LockOSThread), which tests do not do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
