//go:build unix

package admission

import "syscall"

// DefaultMaxConns is MAX_CONNS' default: 90% of the process's open-file
// soft limit, leaving the rest for Redis, the order API, the listener and
// logs. (The Go runtime raises the soft limit to the hard limit at start-up
// on Linux, so this is 90% of what the process can really open.) 0 when the
// limit cannot be read or is unlimited: no cap.
func DefaultMaxConns() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == 0 || l.Cur > 1<<40 {
		return 0
	}
	return int(l.Cur * 9 / 10)
}
