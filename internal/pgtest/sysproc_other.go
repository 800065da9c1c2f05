//go:build unix && !linux

package pgtest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a test binary that
// dies without its cleanups leaves its postgres running there. The child
// runs as u when it is not nil.
func sysProcAttr(u *account) *syscall.SysProcAttr {
	if u == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
}
