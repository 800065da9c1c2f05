package bench

import "syscall"

// sysProcAttr kills redis-server when the benchmark binary dies without
// running TestMain's cleanup (a -timeout panic, a ^C).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
