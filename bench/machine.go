package bench

import (
	"fmt"
	"runtime"
	"strings"
)

// Machine describes the machine a run measured.
type Machine struct {
	CPU        string   `json:"cpu"`        // CPU model name
	CPUFlags   []string `json:"cpu_flags"`  // crypto-relevant CPU features present
	CPUs       int      `json:"cpus"`       // runtime.NumCPU
	GOMAXPROCS int      `json:"gomaxprocs"` //
	OS         string   `json:"os"`         // GOOS/GOARCH
	Kernel     string   `json:"kernel"`     // uname: system, release and version
	Go         string   `json:"go"`         // runtime.Version
	LoadAvg    string   `json:"load_avg"`   // 1, 5 and 15 minute load averages at the start, if known
	CPUTime    bool     `json:"cpu_time"`   // whether process CPU time could be measured
}

// cryptoFlags are the /proc/cpuinfo flags that matter for the datapath's
// ciphers.
var cryptoFlags = []string{"aes", "pclmulqdq", "avx", "avx2", "avx512f", "vaes", "vpclmulqdq", "sha_ni", "sha2", "pmull"}

// DescribeMachine returns the description of this machine.
func DescribeMachine() Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Go:         runtime.Version(),
		CPU:        "unknown",
		Kernel:     "unknown",
	}
	describeOS(&m)
	var c cpuClock
	_, m.CPUTime = c.now()
	return m
}

// String is a one-line description.
func (m Machine) String() string {
	flags := ""
	if len(m.CPUFlags) > 0 {
		flags = " [" + strings.Join(m.CPUFlags, " ") + "]"
	}
	load := ""
	if m.LoadAvg != "" {
		load = ", load " + m.LoadAvg
	}
	return fmt.Sprintf("%s%s, %d CPUs, GOMAXPROCS %d, %s, %s, %s%s", m.CPU, flags, m.CPUs, m.GOMAXPROCS, m.Kernel, m.OS, m.Go, load)
}
