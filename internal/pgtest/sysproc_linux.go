package pgtest

import "syscall"

// sysProcAttr asks the kernel to send SIGQUIT (PostgreSQL's immediate
// shutdown: the postmaster ends its backends and exits) to postgres when the
// test binary dies without running its cleanups, and runs the child as u
// when it is not nil. Go sets the parent-death signal after switching
// credentials, so the two combine.
func sysProcAttr(u *account) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT, Credential: credential(u)}
}

func credential(u *account) *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.uid, Gid: u.gid}
}
