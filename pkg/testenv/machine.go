package testenv

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// CPUTime is the CPU time (user and system) this process used so far, so a
// benchmark's figures can be read apart from other load on a shared
// machine; 0 where the system does not say.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAvg is the machine's one-minute load average, printed beside
// benchmark figures; "unknown" where /proc/loadavg is missing.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
