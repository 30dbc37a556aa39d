//go:build unix && !linux

package launch

import "syscall"

// sysProcAttr puts the child in its own process group; elsewhere than Linux
// there is no parent-death signal, so callers must stop their children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
